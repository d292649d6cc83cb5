package store

import (
	"math"
	"slices"

	"github.com/citysense/citysense/protocols"
)

// kindMixed marks a column whose values do not all have one kind (a field
// written as a float by one device and as an integer by another).
const kindMixed protocols.Kind = 0xff

// column holds the samples of one series in one window, in memory. A column
// of one kind keeps 16 bytes per sample (time and value bits); strings and
// mixed kinds fall back to wider slices. The head appends in arrival order;
// normalize sorts and removes duplicate times before anything is encoded or
// returned.
type column struct {
	kind protocols.Kind // KindInvalid while empty
	ts   []int64
	bits []uint64          // float bits, int, uint or bool 0/1
	strs []string          // KindString only
	vals []protocols.Value // kindMixed only

	// sorted is true while every time is greater than the one before it,
	// so that the common in-order case skips the sort.
	sorted bool
	// dec is, for floats decoded from a decimal chunk, its scale + 1, so
	// that aggregating it need not find the scale again; 0 = unknown.
	dec uint8
}

func (c *column) len() int { return len(c.ts) }

func (c *column) reset() {
	c.kind = protocols.KindInvalid
	c.ts, c.bits, c.strs, c.vals = c.ts[:0], c.bits[:0], c.strs[:0], c.vals[:0]
	c.sorted, c.dec = true, 0
}

// valueBits returns the bits a value of a fixed-width kind is kept as.
func valueBits(v protocols.Value) uint64 {
	switch v.Kind() {
	case protocols.KindFloat:
		return math.Float64bits(v.FloatV())
	case protocols.KindInt:
		return uint64(v.IntV())
	case protocols.KindUint:
		return v.UintV()
	case protocols.KindBool:
		if v.BoolV() {
			return 1
		}
	}
	return 0
}

func bitsValue(k protocols.Kind, b uint64) protocols.Value {
	switch k {
	case protocols.KindFloat:
		return protocols.Float(math.Float64frombits(b))
	case protocols.KindInt:
		return protocols.Int(int64(b))
	case protocols.KindUint:
		return protocols.Uint(b)
	case protocols.KindBool:
		return protocols.Bool(b != 0)
	}
	return protocols.Value{}
}

func (c *column) append(t int64, v protocols.Value) {
	c.dec = 0
	if len(c.ts) == 0 {
		c.sorted = true
		c.kind = v.Kind()
	} else if t <= c.ts[len(c.ts)-1] {
		c.sorted = false
	}
	if c.kind != v.Kind() && c.kind != kindMixed {
		c.toMixed()
	}
	c.ts = append(c.ts, t)
	switch c.kind {
	case kindMixed:
		c.vals = append(c.vals, v)
	case protocols.KindString:
		c.strs = append(c.strs, v.StringV())
	default:
		c.bits = append(c.bits, valueBits(v))
	}
}

func (c *column) toMixed() {
	vals := make([]protocols.Value, len(c.ts), cap(c.ts))
	for i := range c.ts {
		vals[i] = c.value(i)
	}
	c.kind, c.vals, c.bits, c.strs = kindMixed, vals, nil, nil
}

func (c *column) value(i int) protocols.Value {
	switch c.kind {
	case kindMixed:
		return c.vals[i]
	case protocols.KindString:
		return protocols.String(c.strs[i])
	default:
		return bitsValue(c.kind, c.bits[i])
	}
}

// appendFrom appends sample i of o.
func (c *column) appendFrom(o *column, i int) {
	if o.kind == c.kind && len(c.ts) > 0 {
		if o.ts[i] <= c.ts[len(c.ts)-1] {
			c.sorted = false
		}
		if c.dec != 0 && o.dec != 0 {
			c.dec = max(c.dec, o.dec) // exact at fewer digits is exact at more
		} else {
			c.dec = 0
		}
		c.ts = append(c.ts, o.ts[i])
		switch c.kind {
		case kindMixed:
			c.vals = append(c.vals, o.vals[i])
		case protocols.KindString:
			c.strs = append(c.strs, o.strs[i])
		default:
			c.bits = append(c.bits, o.bits[i])
		}
		return
	}
	c.append(o.ts[i], o.value(i))
}

// appendAll appends every sample of o.
func (c *column) appendAll(o *column) {
	if o.len() == 0 {
		return
	}
	if c.len() == 0 || c.kind != o.kind {
		if c.len() == 0 {
			c.kind, c.sorted = o.kind, true
		}
		if c.kind != o.kind {
			for i := range o.len() {
				c.appendFrom(o, i)
			}
			return
		}
	}
	if c.len() > 0 && o.ts[0] <= c.ts[c.len()-1] || !o.sorted {
		c.sorted = false
	}
	switch {
	case c.len() == 0:
		c.dec = o.dec
	case c.dec != 0 && o.dec != 0:
		c.dec = max(c.dec, o.dec) // exact at fewer digits is exact at more
	default:
		c.dec = 0
	}
	c.ts = append(c.ts, o.ts...)
	c.bits = append(c.bits, o.bits...)
	c.strs = append(c.strs, o.strs...)
	c.vals = append(c.vals, o.vals...)
}

// normalize sorts by time and keeps, of samples with the same time, the one
// appended last: the last write wins.
func (c *column) normalize() {
	if c.sorted || len(c.ts) < 2 {
		c.sorted = true
		return
	}
	if c.kind != kindMixed && c.kind != protocols.KindString && c.sortNearly() {
		return
	}
	idx := make([]int32, len(c.ts))
	for i := range idx {
		idx[i] = int32(i)
	}
	// Stable, so that among equal times the order of arrival survives and
	// the last one can be picked below.
	slices.SortStableFunc(idx, func(a, b int32) int {
		ta, tb := c.ts[a], c.ts[b]
		switch {
		case ta < tb:
			return -1
		case ta > tb:
			return 1
		}
		return 0
	})
	keep := idx[:0]
	for i, j := range idx {
		if i+1 < len(idx) && c.ts[idx[i+1]] == c.ts[j] {
			continue
		}
		keep = append(keep, j)
	}
	var out column
	out.kind = c.kind
	out.ts = make([]int64, 0, len(keep))
	switch c.kind {
	case kindMixed:
		out.vals = make([]protocols.Value, 0, len(keep))
	case protocols.KindString:
		out.strs = make([]string, 0, len(keep))
	default:
		out.bits = make([]uint64, 0, len(keep))
	}
	for _, j := range keep {
		out.ts = append(out.ts, c.ts[j])
		switch c.kind {
		case kindMixed:
			out.vals = append(out.vals, c.vals[j])
		case protocols.KindString:
			out.strs = append(out.strs, c.strs[j])
		default:
			out.bits = append(out.bits, c.bits[j])
		}
	}
	out.sorted, out.dec = true, c.dec
	*c = out
}

// sortNearly normalizes a column of fixed-width values in place when its
// samples are only a little out of order (concurrent writers interleave
// their batches, so a series' samples arrive a few places off): an
// insertion sort that moves a sample only past greater times, so equal
// times keep their order of arrival, then a pass that keeps the last of
// each time. It gives up (false) after about 8 moves a sample; the column
// is then still a stable reordering of what it held, which normalize's
// general path sorts.
func (c *column) sortNearly() bool {
	ts, bits := c.ts, c.bits
	budget := 8 * len(ts)
	for i := 1; i < len(ts); i++ {
		t, b := ts[i], bits[i]
		j := i
		for j > 0 && ts[j-1] > t {
			ts[j], bits[j] = ts[j-1], bits[j-1]
			j--
		}
		ts[j], bits[j] = t, b
		if budget -= i - j; budget < 0 {
			return false
		}
	}
	n := 0
	for i := range ts {
		if i+1 < len(ts) && ts[i+1] == ts[i] {
			continue // the later sample of the same time wins
		}
		ts[n], bits[n] = ts[i], bits[i]
		n++
	}
	c.ts, c.bits, c.sorted = ts[:n], bits[:n], true
	return true
}

// mergeColumns returns old and new merged by time, both normalized; where
// both hold a time, new wins.
func mergeColumns(old, upd *column) *column {
	if old == nil || old.len() == 0 {
		return upd
	}
	if upd == nil || upd.len() == 0 {
		return old
	}
	out := &column{sorted: true}
	out.ts = make([]int64, 0, old.len()+upd.len())
	i, j := 0, 0
	for i < old.len() || j < upd.len() {
		switch {
		case j == upd.len() || (i < old.len() && old.ts[i] < upd.ts[j]):
			out.appendFrom(old, i)
			i++
		case i == old.len() || upd.ts[j] < old.ts[i]:
			out.appendFrom(upd, j)
			j++
		default: // same time: the newer write wins
			out.appendFrom(upd, j)
			i++
			j++
		}
	}
	out.sorted, out.dec = true, 0
	if old.dec != 0 && upd.dec != 0 {
		out.dec = max(old.dec, upd.dec)
	}
	return out
}

// slice returns the samples with from <= t <= to as a column sharing c's
// arrays. c must be normalized.
func (c *column) slice(from, to int64) column {
	lo, _ := slices.BinarySearch(c.ts, from)
	hi, found := slices.BinarySearch(c.ts, to)
	if found {
		hi++
	}
	if lo >= hi {
		return column{kind: c.kind, sorted: true}
	}
	out := column{kind: c.kind, ts: c.ts[lo:hi], sorted: true, dec: c.dec}
	switch c.kind {
	case kindMixed:
		out.vals = c.vals[lo:hi]
	case protocols.KindString:
		out.strs = c.strs[lo:hi]
	default:
		out.bits = c.bits[lo:hi]
	}
	return out
}
