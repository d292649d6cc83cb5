package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/citysense/citysense/protocols"
)

// Bucket aggregates the numeric samples of one series in
// [Start, Start+resolution). Booleans count as 0 and 1; strings are not
// aggregated.
type Bucket struct {
	Start     int64 // ns, a multiple of the resolution
	Count     int64
	Sum       float64
	Min, Max  float64
	First     float64 // value of the earliest sample
	Last      float64 // value of the latest sample
	FirstTime int64   // ns of the earliest sample
	LastTime  int64   // ns of the latest sample
}

// Merge folds o, a bucket of the same series or of another one, into b, as
// when hours are combined into days or stations into districts. Of samples
// at the same time in two series, First takes b's and Last takes o's.
func (b *Bucket) Merge(o Bucket) {
	if o.Count == 0 {
		return
	}
	if b.Count == 0 {
		start := b.Start
		*b = o
		b.Start = start
		return
	}
	b.Count += o.Count
	b.Sum += o.Sum
	b.Min = math.Min(b.Min, o.Min)
	b.Max = math.Max(b.Max, o.Max)
	if o.FirstTime < b.FirstTime {
		b.First, b.FirstTime = o.First, o.FirstTime
	}
	if o.LastTime >= b.LastTime {
		b.Last, b.LastTime = o.Last, o.LastTime
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// floorTo rounds t down to a multiple of d, also for t before 1970.
func floorTo(t, d int64) int64 { return floorDiv(t, d) * d }

// appendBuckets aggregates the normalized column c into buckets of res
// and appends them to dst. Decimal floats and integers are summed as
// integers, so that a sum is exact and encodes as compactly as the values.
func appendBuckets(dst []Bucket, c *column, res int64) []Bucket {
	if c.len() == 0 || c.kind == protocols.KindString {
		return dst
	}
	if c.kind == kindMixed {
		return appendMixedBuckets(dst, c, res)
	}
	scale, exact := 0, false
	switch c.kind {
	case protocols.KindFloat:
		if c.dec != 0 {
			scale, exact = int(c.dec)-1, true
		} else {
			scale, exact = floatsScale(c.bits)
		}
	case protocols.KindInt, protocols.KindBool:
		exact = true
	case protocols.KindUint:
		exact = true
		for _, b := range c.bits {
			if b >= 1<<63 {
				exact = false
				break
			}
		}
	}
	p := pow10[scale]
	var cur Bucket
	var isum, m int64
	iexact := exact
	end := int64(minTime)
	for i, t := range c.ts {
		b := c.bits[i]
		var v float64
		switch c.kind {
		case protocols.KindFloat:
			v = math.Float64frombits(b)
			if iexact {
				m = int64(math.Round(v * p))
			}
		case protocols.KindInt:
			v, m = float64(int64(b)), int64(b)
		default: // uint, bool
			v, m = float64(b), int64(b)
		}
		if t >= end || cur.Count == 0 {
			if cur.Count > 0 {
				if iexact {
					cur.Sum = float64(isum) / p
				}
				dst = append(dst, cur)
			}
			start := floorTo(t, res)
			end = start + res
			cur = Bucket{Start: start, Min: v, Max: v, First: v, FirstTime: t}
			isum, iexact = 0, exact
		}
		cur.Count++
		cur.Sum += v
		if v < cur.Min {
			cur.Min = v
		}
		if v > cur.Max {
			cur.Max = v
		}
		cur.Last, cur.LastTime = v, t
		if iexact {
			s := isum + m
			// Signed overflow: both operands share a sign the sum lacks.
			if (isum >= 0) == (m >= 0) && (s >= 0) != (isum >= 0) {
				iexact = false
			}
			isum = s
		}
	}
	if iexact {
		cur.Sum = float64(isum) / p
	}
	return append(dst, cur)
}

// appendMixedBuckets aggregates a column of mixed kinds in floats, leaving
// out strings.
func appendMixedBuckets(dst []Bucket, c *column, res int64) []Bucket {
	var cur Bucket
	for i, t := range c.ts {
		v, ok := c.vals[i].AsFloat()
		if !ok {
			continue
		}
		start := floorTo(t, res)
		if cur.Count == 0 || start != cur.Start {
			if cur.Count > 0 {
				dst = append(dst, cur)
			}
			cur = Bucket{Start: start, Min: v, Max: v, First: v, FirstTime: t}
		}
		cur.Count++
		cur.Sum += v
		cur.Min = math.Min(cur.Min, v)
		cur.Max = math.Max(cur.Max, v)
		cur.Last, cur.LastTime = v, t
	}
	if cur.Count > 0 {
		dst = append(dst, cur)
	}
	return dst
}

// A rollup chunk is the buckets of one series in one day, as ten streams
// stored column-wise in a block like raw chunks:
//
//	meta:   enc 1 byte (0 = decimal: values as integers ×10^scale, 1 = XOR),
//	        scale 1 byte, timeExp 1 byte (first/last times are multiples
//	        of 10^timeExp ns), n uvarint
//	index:  bucket index in the day, first absolute, then gaps
//	count:  zigzag deltas
//	sum, min, max, first, last
//	first time offset from the bucket start, last time minus first time
//
// Decimal sums are zigzag deltas; min, max, first and last are stored as
// their distance from the integer mean, which is 0 for a bucket of one
// sample and small otherwise.

const rollupStreams = 10

// encodeRollupChunk encodes bs (sorted, non-empty, all within the day at
// base).
func encodeRollupChunk(bs []Bucket, base, res int64) [][]byte {
	vals := make([]uint64, 0, 5*len(bs))
	for _, b := range bs {
		vals = append(vals, math.Float64bits(b.Sum), math.Float64bits(b.Min), math.Float64bits(b.Max),
			math.Float64bits(b.First), math.Float64bits(b.Last))
	}
	scale, decimal := floatsScale(vals)
	ts := make([]int64, 0, 2*len(bs))
	for _, b := range bs {
		ts = append(ts, b.FirstTime-b.Start, b.LastTime-b.Start)
	}
	e := timeExp(ts, 0)
	unit := pow10i[e]
	enc := byte(0)
	if !decimal {
		enc = 1
	}
	out := make([][]byte, rollupStreams)
	out[0] = append(make([]byte, 0, 8), enc, byte(scale), byte(e))
	out[0] = binary.AppendUvarint(out[0], uint64(len(bs)))
	prevIdx := int64(-1)
	var prevCount int64
	for _, b := range bs {
		idx := (b.Start - base) / res
		out[1] = binary.AppendUvarint(out[1], uint64(idx-prevIdx-1))
		prevIdx = idx
		out[2] = binary.AppendVarint(out[2], b.Count-prevCount)
		prevCount = b.Count
		out[8] = binary.AppendUvarint(out[8], uint64((b.FirstTime-b.Start)/unit))
		out[9] = binary.AppendUvarint(out[9], uint64((b.LastTime-b.FirstTime)/unit))
	}
	if decimal {
		p := pow10[scale]
		var prevSum int64
		for _, b := range bs {
			sum := int64(math.Round(b.Sum * p))
			out[3] = binary.AppendVarint(out[3], sum-prevSum)
			prevSum = sum
			mean := sum / b.Count
			for f, x := range [4]float64{b.Min, b.Max, b.First, b.Last} {
				out[4+f] = binary.AppendVarint(out[4+f], int64(math.Round(x*p))-mean)
			}
		}
	} else {
		col := make([]uint64, len(bs))
		for f := range 5 {
			for i := range bs {
				col[i] = vals[5*i+f]
			}
			out[3+f] = appendXOR(nil, col)
		}
	}
	return out
}

func decodeRollupChunk(streams [][]byte, base, res int64, dst []Bucket) ([]Bucket, error) {
	if len(streams) != rollupStreams {
		return dst, fmt.Errorf("%w: %d rollup streams", errCorrupt, len(streams))
	}
	m := reader{b: streams[0]}
	enc, scale, e := m.byte(), int(m.byte()), int(m.byte())
	n := int(m.uvarint())
	if m.err != nil || len(m.b) != 0 || enc > 1 || scale > maxScale || e > 9 || n == 0 || n > len(streams[1]) {
		return dst, errCorrupt
	}
	unit := pow10i[e]
	at := len(dst)
	dst = slices.Grow(dst, n)[:at+n]
	out := dst[at:]
	// One cursor per stream; a negative one means the stream ran short.
	var pos [rollupStreams]int
	next := func(j int) uint64 {
		v, i := uvarintAt(streams[j], pos[j])
		pos[j] = i
		return v
	}
	idx := int64(-1)
	var count int64
	for i := range out {
		idx += int64(next(1)) + 1
		count += unzigzag(next(2))
		b := &out[i]
		*b = Bucket{Start: base + idx*res, Count: count}
		b.FirstTime = b.Start + int64(next(8))*unit
		b.LastTime = b.FirstTime + int64(next(9))*unit
		if count <= 0 {
			return dst[:at], errCorrupt
		}
	}
	if enc == 0 {
		p := pow10[scale]
		var sum int64
		for i := range out {
			b := &out[i]
			sum += unzigzag(next(3))
			b.Sum = float64(sum) / p
			mean := sum / b.Count
			b.Min = float64(unzigzag(next(4))+mean) / p
			b.Max = float64(unzigzag(next(5))+mean) / p
			b.First = float64(unzigzag(next(6))+mean) / p
			b.Last = float64(unzigzag(next(7))+mean) / p
		}
	} else {
		col := make([]uint64, 0, n)
		for f := range 5 {
			r := reader{b: streams[3+f]}
			col = r.xor(col[:0], n)
			if r.err != nil || len(col) != n || len(r.b) != 0 {
				return dst[:at], errCorrupt
			}
			pos[3+f] = len(streams[3+f])
			for i := range out {
				x := math.Float64frombits(col[i])
				switch f {
				case 0:
					out[i].Sum = x
				case 1:
					out[i].Min = x
				case 2:
					out[i].Max = x
				case 3:
					out[i].First = x
				case 4:
					out[i].Last = x
				}
			}
		}
	}
	for j := 1; j < rollupStreams; j++ {
		if pos[j] != len(streams[j]) {
			return dst[:at], errCorrupt
		}
	}
	return dst, nil
}

// replaceBuckets returns old with every bucket in [from, to) replaced by
// the buckets of upd (all of which lie in that range).
func replaceBuckets(old, upd []Bucket, from, to int64) []Bucket {
	out := make([]Bucket, 0, len(old)+len(upd))
	i := 0
	for i < len(old) && old[i].Start < from {
		out = append(out, old[i])
		i++
	}
	out = append(out, upd...)
	for i < len(old) && old[i].Start < to {
		i++
	}
	return append(out, old[i:]...)
}
