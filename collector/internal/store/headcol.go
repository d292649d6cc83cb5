package store

import (
	"encoding/binary"
	"math"

	"github.com/citysense/citysense/protocols"
)

// headCol is a column of the head packed as its samples arrive: each
// sample is its time's delta-of-delta and its value's delta from the one
// before, zigzag varints, with floats kept as integers of their decimal
// scale (as chunks keep them). Readings a minute apart with one decimal
// take 2–3 bytes a sample instead of the 16 of a column, and the head is
// most of what the collector holds in memory during ingest.
//
// Samples keep their arrival order, so out-of-order and duplicate times
// cost nothing here; column() unpacks them and normalize sorts them.
// Strings, a field whose kind changes, and floats that are no short
// decimal (or negative zero) make the column fall back to a plain column
// for good.
type headCol struct {
	b      []byte
	n      int32
	kind   protocols.Kind // KindInvalid while empty
	scale  int8           // floats: the decimal digits of the packed integers
	sorted bool           // every time above the one before
	lastT  int64
	lastD  int64
	lastV  int64 // scaled float, int, uint bits or bool 0/1
	plain  *column
}

func (h *headCol) len() int {
	if h.plain != nil {
		return h.plain.len()
	}
	return int(h.n)
}

// packedValue returns v as the integer packed at scale, or false when it
// is none exactly.
func packedValue(v protocols.Value, scale int8) (int64, bool) {
	switch v.Kind() {
	case protocols.KindFloat:
		f := v.FloatV()
		p := pow10[scale]
		m := math.Round(f * p)
		if math.Abs(m) >= 1<<53 || m/p != f || (f == 0 && math.Signbit(f)) {
			return 0, false
		}
		return int64(m), true
	case protocols.KindInt:
		return v.IntV(), true
	case protocols.KindUint:
		return int64(v.UintV()), true
	case protocols.KindBool:
		if v.BoolV() {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func (h *headCol) append(t int64, v protocols.Value) {
	if h.plain != nil {
		h.plain.append(t, v)
		return
	}
	k := v.Kind()
	if h.n == 0 {
		h.kind, h.scale, h.sorted = k, 0, true
		if k == protocols.KindFloat {
			s, ok := decimalScale(v.FloatV())
			if !ok {
				h.toPlain()
				h.plain.append(t, v)
				return
			}
			h.scale = int8(s)
		}
	}
	if k != h.kind {
		h.toPlain()
		h.plain.append(t, v)
		return
	}
	x, ok := packedValue(v, h.scale)
	if !ok {
		// A float with more digits than the column had so far: repack at
		// its scale, or give up on packing.
		if s, ok := decimalScale(v.FloatV()); !ok || int8(s) <= h.scale || !h.rescale(int8(s)) {
			h.toPlain()
			h.plain.append(t, v)
			return
		}
		if x, ok = packedValue(v, h.scale); !ok {
			h.toPlain()
			h.plain.append(t, v)
			return
		}
	}
	h.put(t, x)
}

// put appends one packed sample.
func (h *headCol) put(t, x int64) {
	if h.n == 0 {
		h.b = binary.AppendUvarint(h.b, zigzag(t))
		h.lastD = 0
	} else {
		if t <= h.lastT {
			h.sorted = false
		}
		d := t - h.lastT
		h.b = binary.AppendUvarint(h.b, zigzag(d-h.lastD))
		h.lastD = d
	}
	h.b = binary.AppendUvarint(h.b, zigzag(x-h.lastV))
	h.lastT, h.lastV = t, x
	h.n++
}

// rescale repacks every float at scale s, false (and h unchanged) when one
// of them is not exact there.
func (h *headCol) rescale(s int8) bool {
	var c column
	h.unpack(&c)
	nh := headCol{kind: h.kind, scale: s, sorted: true, b: make([]byte, 0, cap(h.b)+cap(h.b)/2)}
	for i := range c.ts {
		x, ok := packedValue(protocols.Float(math.Float64frombits(c.bits[i])), s)
		if !ok {
			return false
		}
		nh.put(c.ts[i], x)
	}
	*h = nh
	return true
}

// toPlain unpacks h into a plain column for the rest of its life.
func (h *headCol) toPlain() {
	c := &column{}
	c.sorted = true
	if h.n > 0 {
		h.unpack(c)
	}
	*h = headCol{plain: c}
}

// unpack appends h's samples, in arrival order, to c, which must be empty
// or of h's kind.
func (h *headCol) unpack(c *column) {
	if h.n == 0 {
		return
	}
	if len(c.ts) == 0 {
		c.kind, c.sorted, c.dec = h.kind, h.sorted, 0
		if h.kind == protocols.KindFloat {
			c.dec = uint8(h.scale) + 1
		}
	} else if !h.sorted || h.firstTime() <= c.ts[len(c.ts)-1] {
		c.sorted = false
	}
	c.ts = growTo(c.ts, len(c.ts)+int(h.n))
	c.bits = growTo(c.bits, len(c.bits)+int(h.n))
	p := pow10[h.scale]
	var t, d, x int64
	b := h.b
	for i := int32(0); i < h.n; i++ {
		u, n := binary.Uvarint(b)
		b = b[n:]
		if i == 0 {
			t = unzigzag(u)
		} else {
			d += unzigzag(u)
			t += d
		}
		u, n = binary.Uvarint(b)
		b = b[n:]
		x += unzigzag(u)
		c.ts = append(c.ts, t)
		if h.kind == protocols.KindFloat {
			c.bits = append(c.bits, math.Float64bits(float64(x)/p))
		} else {
			c.bits = append(c.bits, uint64(x))
		}
	}
}

func (h *headCol) firstTime() int64 {
	u, _ := binary.Uvarint(h.b)
	return unzigzag(u)
}

// growTo returns s with room for n elements in all.
func growTo[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s
	}
	ns := make([]T, len(s), n)
	copy(ns, s)
	return ns
}

// column resets c and fills it with h's samples, in arrival order (c is
// normalized by the caller).
func (h *headCol) column(c *column) {
	c.reset()
	if h.plain != nil {
		c.appendAll(h.plain)
		return
	}
	h.unpack(c)
}

// appendAll appends every sample of o, in its order.
func (h *headCol) appendAll(o *headCol) {
	var c column
	o.column(&c)
	for i := range c.ts {
		h.append(c.ts[i], c.value(i))
	}
}
