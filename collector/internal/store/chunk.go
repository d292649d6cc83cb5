package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/citysense/citysense/protocols"
)

// A chunk is the encoded samples of one series in one window, as three
// streams that a block stores column-wise (all chunks' first streams, then
// all second streams, ...), so that zstd sees like next to like:
//
//	meta:   enc      1 byte: value kind (low 4 bits, 0xf = mixed); bit 4 set = floats as XOR
//	        timeExp  1 byte: every time minus the window start is a multiple of 10^timeExp ns
//	        scale    1 byte: decimal floats are stored as value×10^scale integers
//	        n        uvarint
//	        t0       uvarint (t0 - window start) / 10^timeExp
//	times:  d1       uvarint (t1 - t0) / 10^timeExp, when n > 1
//	        dod      zigzag varint per further sample: delta of delta
//	values: by kind, see appendValues
//
// Decimal floats are stored as differences from a prediction: the value
// before (plain delta), or the mean of the three before when that is closer
// over the chunk (bit 5 of enc). Sensor noise makes consecutive deltas
// anti-correlated (each reading's noise appears in two deltas with opposite
// signs); predicting from a short mean halves that and saves 4% of the
// bytes on the simulated city.
//
// Sensor readings are short decimals (12.3, 48.21375): as float64 their bits
// look random and Gorilla's XOR scheme needs about 5 bytes a sample, while
// the same numbers as integers of tenths differ from one minute to the next
// by a few units — one varint byte before zstd, half a byte after. Floats
// that are not exact short decimals keep their bits (XOR with the previous
// one, zero bytes trimmed), so nothing is ever rounded.

const (
	encXOR     = 1 << 4
	encSmooth  = 1 << 5 // decimal floats predicted by the mean of the three before
	encKindMsk = 0x0f
	encMixed   = 0x0f

	// maxScale bounds the decimal digits tried; beyond it (or past 2^53)
	// a chunk falls back to XOR.
	maxScale = 12
)

var errCorrupt = errors.New("corrupt chunk")

var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

var pow10i = [...]int64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

// decimalScale returns the fewest decimal digits k with which f is exactly
// m/10^k for an integer m below 2^53, the form in which the float was most
// likely written. Negative zero has no such form (m would be +0).
func decimalScale(f float64) (int, bool) {
	if f == 0 {
		return 0, !math.Signbit(f)
	}
	for k := 0; k <= maxScale; k++ {
		m := math.Round(f * pow10[k])
		if math.Abs(m) >= 1<<53 {
			return 0, false
		}
		if m/pow10[k] == f {
			return k, true
		}
	}
	return 0, false
}

// floatsScale returns the scale at which every value of bs (float bits) is
// an exact decimal, or false.
func floatsScale(bs []uint64) (int, bool) {
	_, scale, ok := decimals(bs, false)
	return scale, ok
}

// decimals finds the fewest decimal digits at which every value of bs
// (float bits) is an exact decimal and, when ints is set, returns the
// scaled integers. Readings of one series mostly share their digits, so the
// scale found so far is tried first and raised only when a value needs it.
func decimals(bs []uint64, ints bool) ([]int64, int, bool) {
	scale := 0
	for _, b := range bs {
		f := math.Float64frombits(b)
		p := pow10[scale]
		if m := math.Round(f * p); math.Abs(m) < 1<<53 && m/p == f && (f != 0 || !math.Signbit(f)) {
			continue
		}
		k, ok := decimalScale(f)
		if !ok {
			return nil, 0, false
		}
		scale = max(scale, k)
	}
	// Verify at the common scale: a value exact at fewer digits is exact at
	// more in exact arithmetic, and the check keeps rounding honest.
	p := pow10[scale]
	var out []int64
	if ints {
		out = make([]int64, len(bs))
	}
	for i, b := range bs {
		f := math.Float64frombits(b)
		m := math.Round(f * p)
		if math.Abs(m) >= 1<<53 || m/p != f {
			return nil, 0, false
		}
		if ints {
			out[i] = int64(m)
		}
	}
	return out, scale, true
}

// timeExp returns the largest e <= 9 such that every t-base is a multiple
// of 10^e.
func timeExp(ts []int64, base int64) int {
	e := 9
	for _, t := range ts {
		d := t - base
		for e > 0 && d%pow10i[e] != 0 {
			e--
		}
		if e == 0 {
			break
		}
	}
	return e
}

func zigzag(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

// uvarintAt decodes the uvarint at b[i:] and returns the index after it, or
// -1 when b holds none. Most varints here are one byte: that case inlines.
func uvarintAt(b []byte, i int) (uint64, int) {
	if i >= 0 && i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1
	}
	if i < 0 || i >= len(b) {
		return 0, -1
	}
	v, n := binary.Uvarint(b[i:])
	if n <= 0 {
		return 0, -1
	}
	return v, i + n
}
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// rawStreams is the number of streams of a raw chunk.
const rawStreams = 3

// encodeChunk encodes the normalized, non-empty column c of a window that
// starts at base.
func encodeChunk(c *column, base int64) [][]byte {
	enc := byte(c.kind) & encKindMsk
	if c.kind == kindMixed {
		enc = encMixed
	}
	scale := 0
	var ints []int64
	if c.kind == protocols.KindFloat {
		var ok bool
		if ints, scale, ok = decimals(c.bits, true); ok {
			var dl1, sl1 uint64
			for i := 1; i < len(ints); i++ {
				dl1 += abs(ints[i] - ints[i-1])
				sl1 += abs(ints[i] - predict3(ints, i))
			}
			if sl1 < dl1 {
				enc |= encSmooth
			}
		} else {
			enc |= encXOR
		}
	}
	e := timeExp(c.ts, base)
	unit := pow10i[e]
	meta := make([]byte, 0, 16)
	meta = append(meta, enc, byte(e), byte(scale))
	meta = binary.AppendUvarint(meta, uint64(len(c.ts)))
	meta = binary.AppendUvarint(meta, uint64((c.ts[0]-base)/unit))
	times := appendTimes(make([]byte, 0, len(c.ts)+4), c.ts, unit)
	var vals []byte
	if ints != nil {
		vals = appendDecimals(make([]byte, 0, len(ints)+4), ints, enc&encSmooth != 0)
	} else {
		vals = appendValues(make([]byte, 0, 2*len(c.ts)+4), c, enc, scale)
	}
	return [][]byte{meta, times, vals}
}

func abs(v int64) uint64 {
	if v < 0 {
		return uint64(-v)
	}
	return uint64(v)
}

// predict3 predicts ints[i] from the (up to) three values before it. The
// values are below 2^53, so their sum cannot overflow.
func predict3(ints []int64, i int) int64 {
	switch i {
	case 0:
		return 0
	case 1:
		return ints[0]
	case 2:
		return floorDiv(ints[0]+ints[1]+1, 2)
	}
	return floorDiv(ints[i-1]+ints[i-2]+ints[i-3]+1, 3)
}

// appendDecimals writes each scaled decimal as a zigzag varint difference
// from its prediction.
func appendDecimals(dst []byte, ints []int64, smooth bool) []byte {
	for i, m := range ints {
		var pred int64
		switch {
		case smooth:
			pred = predict3(ints, i)
		case i > 0:
			pred = ints[i-1]
		}
		dst = binary.AppendUvarint(dst, zigzag(m-pred))
	}
	return dst
}

func appendTimes(dst []byte, ts []int64, unit int64) []byte {
	if len(ts) == 1 {
		return dst
	}
	d := (ts[1] - ts[0]) / unit
	dst = binary.AppendUvarint(dst, uint64(d))
	for i := 2; i < len(ts); i++ {
		nd := (ts[i] - ts[i-1]) / unit
		dst = binary.AppendUvarint(dst, zigzag(nd-d))
		d = nd
	}
	return dst
}

func appendValues(dst []byte, c *column, enc byte, scale int) []byte {
	switch {
	case enc == encMixed:
		for _, v := range c.vals {
			dst = appendMixed(dst, v)
		}
	case enc&encXOR != 0:
		dst = appendXOR(dst, c.bits)
	case c.kind == protocols.KindInt || c.kind == protocols.KindUint:
		// Wrapping subtraction: the deltas of any two int64 or uint64
		// values decode back exactly.
		var prev uint64
		for _, b := range c.bits {
			dst = binary.AppendUvarint(dst, zigzag(int64(b-prev)))
			prev = b
		}
	case c.kind == protocols.KindBool:
		for _, b := range c.bits {
			dst = append(dst, byte(b))
		}
	case c.kind == protocols.KindString:
		for _, s := range c.strs {
			dst = binary.AppendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		}
	}
	return dst
}

// appendXOR writes the first value's bits whole, then each value XOR the
// one before, as a control byte (leading zero bytes << 4 | trailing zero
// bytes) followed by the bytes in between; 0x80 stands for "unchanged".
func appendXOR(dst []byte, bs []uint64) []byte {
	var prev uint64
	for i, b := range bs {
		if i == 0 {
			dst = binary.BigEndian.AppendUint64(dst, b)
			prev = b
			continue
		}
		x := b ^ prev
		prev = b
		if x == 0 {
			dst = append(dst, 0x80)
			continue
		}
		lz, tz := bits.LeadingZeros64(x)/8, bits.TrailingZeros64(x)/8
		dst = append(dst, byte(lz<<4|tz))
		for k := 7 - lz; k >= tz; k-- {
			dst = append(dst, byte(x>>(8*k)))
		}
	}
	return dst
}

func appendMixed(dst []byte, v protocols.Value) []byte {
	dst = append(dst, byte(v.Kind()))
	switch v.Kind() {
	case protocols.KindFloat:
		return binary.BigEndian.AppendUint64(dst, math.Float64bits(v.FloatV()))
	case protocols.KindInt:
		return binary.AppendVarint(dst, v.IntV())
	case protocols.KindUint:
		return binary.AppendUvarint(dst, v.UintV())
	case protocols.KindBool:
		return append(dst, byte(valueBits(v)))
	case protocols.KindString:
		dst = binary.AppendUvarint(dst, uint64(len(v.StringV())))
		return append(dst, v.StringV()...)
	}
	return dst
}

// reader walks an encoded buffer; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errCorrupt
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil || uint64(len(r.b)) < n {
		r.err = errCorrupt
		return nil
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

// count reads a sample count, bounded by what the remaining bytes could
// possibly hold, so that a corrupt count cannot allocate without limit.
func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b))+1 {
		r.err = errCorrupt
		return 0
	}
	return int(n)
}

// decodeChunk decodes one chunk of a window starting at base into c,
// which it resets first.
func decodeChunk(streams [][]byte, base int64, c *column) error {
	if len(streams) != rawStreams {
		return fmt.Errorf("%w: %d streams", errCorrupt, len(streams))
	}
	m := reader{b: streams[0]}
	enc, e, scale := m.byte(), int(m.byte()), int(m.byte())
	n := int(m.uvarint())
	t0 := m.uvarint()
	if m.err != nil || len(m.b) != 0 || e > 9 || scale > maxScale || n == 0 || n > len(streams[1])+len(streams[2])+1 {
		return errCorrupt
	}
	unit := pow10i[e]
	c.reset()
	c.ts = grow(c.ts, n)
	t := base + int64(t0)*unit
	c.ts = append(c.ts, t)
	if n > 1 {
		b, i := streams[1], 0
		u, i := uvarintAt(b, i)
		d := int64(u)
		t += d * unit
		c.ts = append(c.ts, t)
		for k := 2; k < n && i >= 0; k++ {
			u, i = uvarintAt(b, i)
			d += unzigzag(u)
			t += d * unit
			c.ts = append(c.ts, t)
		}
		if i != len(b) {
			return errCorrupt
		}
	} else if len(streams[1]) != 0 {
		return errCorrupt
	}
	r := reader{b: streams[2]}
	kind := protocols.Kind(enc & encKindMsk)
	switch {
	case enc == encMixed:
		c.kind = kindMixed
		c.vals = grow(c.vals, n)
		for range n {
			c.vals = append(c.vals, r.mixed())
		}
	case enc&encXOR != 0:
		if kind != protocols.KindFloat {
			return errCorrupt
		}
		c.kind = kind
		c.bits = grow(c.bits, n)
		c.bits = r.xor(c.bits, n)
	case kind == protocols.KindFloat:
		c.kind = kind
		c.dec = uint8(scale) + 1
		c.bits = grow(c.bits, n)
		p := pow10[scale]
		b, i := r.b, 0
		if enc&encSmooth != 0 {
			ints := make([]int64, 0, n)
			for k := 0; k < n && i >= 0; k++ {
				var u uint64
				u, i = uvarintAt(b, i)
				m := predict3(ints, k) + unzigzag(u)
				ints = append(ints, m)
				c.bits = append(c.bits, math.Float64bits(float64(m)/p))
			}
		} else {
			var m int64
			for k := 0; k < n && i >= 0; k++ {
				var u uint64
				u, i = uvarintAt(b, i)
				m += unzigzag(u)
				c.bits = append(c.bits, math.Float64bits(float64(m)/p))
			}
		}
		if i != len(b) {
			return errCorrupt
		}
		r.b = nil
	case kind == protocols.KindInt || kind == protocols.KindUint:
		c.kind = kind
		c.bits = grow(c.bits, n)
		var v uint64
		b, i := r.b, 0
		for k := 0; k < n && i >= 0; k++ {
			var u uint64
			u, i = uvarintAt(b, i)
			v += uint64(unzigzag(u))
			c.bits = append(c.bits, v)
		}
		if i != len(b) {
			return errCorrupt
		}
		r.b = nil
	case kind == protocols.KindBool:
		c.kind = kind
		c.bits = grow(c.bits, n)
		for _, b := range r.bytes(uint64(n)) {
			c.bits = append(c.bits, uint64(b&1))
		}
	case kind == protocols.KindString:
		c.kind = kind
		c.strs = grow(c.strs, n)
		for range n {
			c.strs = append(c.strs, string(r.bytes(r.uvarint())))
		}
	default:
		return fmt.Errorf("%w: value kind %d", errCorrupt, kind)
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(r.b))
	}
	c.sorted = true
	return nil
}

func (r *reader) xor(dst []uint64, n int) []uint64 {
	first := r.bytes(8)
	if r.err != nil {
		return dst
	}
	prev := binary.BigEndian.Uint64(first)
	dst = append(dst, prev)
	for i := 1; i < n && r.err == nil; i++ {
		ctl := r.byte()
		if ctl == 0x80 {
			dst = append(dst, prev)
			continue
		}
		lz, tz := int(ctl>>4), int(ctl&0xf)
		if lz+tz > 7 {
			r.err = errCorrupt
			break
		}
		var x uint64
		for _, b := range r.bytes(uint64(8 - lz - tz)) {
			x = x<<8 | uint64(b)
		}
		prev ^= x << (8 * tz)
		dst = append(dst, prev)
	}
	return dst
}

func (r *reader) mixed() protocols.Value {
	switch k := protocols.Kind(r.byte()); k {
	case protocols.KindFloat:
		b := r.bytes(8)
		if r.err != nil {
			return protocols.Value{}
		}
		return protocols.Float(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case protocols.KindInt:
		return protocols.Int(r.varint())
	case protocols.KindUint:
		return protocols.Uint(r.uvarint())
	case protocols.KindBool:
		return protocols.Bool(r.byte() != 0)
	case protocols.KindString:
		return protocols.String(string(r.bytes(r.uvarint())))
	default:
		if r.err == nil {
			r.err = fmt.Errorf("%w: value kind %d", errCorrupt, k)
		}
		return protocols.Value{}
	}
}

// grow returns s emptied, with room for n elements.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, 0, n)
	}
	return s[:0]
}
