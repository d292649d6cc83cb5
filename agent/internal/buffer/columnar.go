package buffer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"slices"

	"github.com/citysense/citysense/protocols"
)

// The columnar layout of a batch, which is what the buffer stores (then
// compressed with zstd or s2). Line protocol puts the readings of one
// series a whole tick apart, where a compressor cannot use that they
// differ little from one reading to the next; here the readings are
// grouped into blocks, one per series and field set, and each block's
// timestamps and fields are stored as columns of small deltas:
//
//	version  byte (colVersion)
//	strings  uvarint n, then n strings (uvarint length + bytes): the
//	         batch's distinct measurements, tag keys and values, field keys
//	blocks   uvarint n, then per block, strings as indexes into the table:
//	         measurement, tag count, tags (key, value), field count,
//	         fields (key, kind byte), row count
//	times    per block: first time − the previous block's first time,
//	         first interval − the previous block's first interval,
//	         then the change of interval (delta of delta) per further row;
//	         all zigzag varints
//	columns  per block, per field, rows in order:
//	         float   a mode byte: 0…maxDecimals decimals d: the values are
//	                 integers m with v = m / 10^d, stored as zigzag varint
//	                 deltas, except values listed as exceptions (count, then
//	                 row gap and 8 bytes of IEEE bits each) that m cannot
//	                 carry bit for bit (-0, 1e300, NaN); modeRaw: 8 bytes
//	                 of IEEE bits per value
//	         int     zigzag varint deltas
//	         uint    zigzag varint of the wrapping difference
//	         bool    one byte per value, 0 or 1
//	         string  uvarint length + bytes per value
//
// A row is one point: decoding yields every point with its measurement,
// tags, fields in their order and time, exactly as appended. Points of
// different series come out grouped by series (block) instead of in their
// original interleaving; within a series their order is kept.
const (
	colVersion  = 1
	maxDecimals = 18 // 10^18 and below are exact in float64; m fits int64
	modeRaw     = 0xff
	// maxExact bounds the scaled integers: up to 2^53 an integer is exact
	// in float64, so m / 10^d computed in float64 is the correctly rounded
	// value of the decimal number, which is also what parsing its text
	// gives. That lets the uplink write the number as text directly.
	maxExact = 1 << 53
	// maxColumnarPoints bounds what one body may claim to hold, so that a
	// damaged body cannot make the decoder allocate without end.
	maxColumnarPoints = 1 << 24
)

// Format is the layout of a stored batch before compression. It is kept
// in the batch's index entry beside the codec, so that a buffer holds
// batches of both layouts after an upgrade and reads each as it was
// written.
type Format uint8

// The formats.
const (
	LineProtocol Format = 0 // line protocol, ns precision: what earlier versions stored
	Columnar     Format = 1 // see columnar.go
)

func (f Format) String() string {
	switch f {
	case LineProtocol:
		return "line-protocol"
	case Columnar:
		return "columnar"
	}
	return fmt.Sprintf("format(%d)", uint8(f))
}

func (f Format) valid() bool { return f == LineProtocol || f == Columnar }

// errColumnar marks a body that does not decode as columnar.
var errColumnar = fmt.Errorf("%w: bad columnar batch", ErrCorrupt)

func colErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errColumnar, fmt.Sprintf(format, args...))
}

// pow10 holds 10^0 … 10^maxDecimals, each exact in float64.
var pow10 = func() (p [maxDecimals + 1]float64) {
	p[0] = 1
	for i := 1; i <= maxDecimals; i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

var ipow10 = func() (p [maxDecimals + 1]int64) {
	p[0] = 1
	for i := 1; i <= maxDecimals; i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// decimalOf finds the fewest decimals d with which v is an integer m over
// 10^d, |m| ≤ 2^53, exactly: float64(m)/10^d, which is what the decoder
// computes, has v's bits. ok is false when there is none (−0, NaN, ±Inf,
// 1e300, 5e-324, many results of arithmetic).
func decimalOf(v float64) (m int64, d int, ok bool) {
	bits := math.Float64bits(v)
	for d = 0; d <= maxDecimals; d++ {
		r := math.Round(v * pow10[d])
		if !(math.Abs(r) <= maxExact) { // also false for NaN
			return 0, 0, false
		}
		m = int64(r)
		if math.Float64bits(float64(m)/pow10[d]) == bits {
			return m, d, true
		}
	}
	return 0, 0, false
}

// colBlock is one series and field set of a batch being encoded.
type colBlock struct {
	rows []*protocols.Point
	key  [2]int // the block key in colEncoder.keys
	next int    // the next block whose key has the same hash; -1: none
}

// colEncoder encodes batches; pooled, it keeps its maps and slices.
type colEncoder struct {
	index  map[uint64]int // hash of a block key → its last block with that hash
	seed   maphash.Seed
	keys   []byte            // the blocks' keys, back to back
	strs   map[string]uint32 // the batch's string table: names, tag values
	list   []string
	blocks []colBlock
	key    []byte
	memo   [32]strMemo
	hdr    []byte
	ms     []int64
	ds     []int8
	exc    []int32
}

var colEncoders = newFreeList(func() *colEncoder {
	return &colEncoder{index: map[uint64]int{}, seed: maphash.MakeSeed(), strs: map[string]uint32{}}
})

// strAt is str with a memo per position in the header (measurement, tag
// i's key or value, field i's key): consecutive blocks mostly repeat the
// names and often the tag values, and comparing with the last string at
// that position is much cheaper than a map lookup.
func (e *colEncoder) strAt(slot int, s string) uint64 {
	if slot < len(e.memo) {
		if m := &e.memo[slot]; m.ok && m.s == s {
			return uint64(m.i)
		}
	}
	i := e.str(s)
	if slot < len(e.memo) {
		e.memo[slot] = strMemo{s: s, i: uint32(i), ok: true}
	}
	return i
}

type strMemo struct {
	s  string
	i  uint32
	ok bool
}

// str returns the index of s in the string table, adding it.
func (e *colEncoder) str(s string) uint64 {
	i, ok := e.strs[s]
	if !ok {
		i = uint32(len(e.list))
		e.strs[s] = i
		e.list = append(e.list, s)
	}
	return uint64(i)
}

// blockKey identifies a point's block: measurement, tags, field keys and
// kinds, each length-prefixed so that no two sets share a key.
func (e *colEncoder) blockKey(p *protocols.Point) []byte {
	k := e.key[:0]
	k = binary.AppendUvarint(k, uint64(len(p.Measurement)))
	k = append(k, p.Measurement...)
	k = binary.AppendUvarint(k, uint64(len(p.Tags)))
	for _, t := range p.Tags {
		k = binary.AppendUvarint(k, uint64(len(t.Key)))
		k = append(k, t.Key...)
		k = binary.AppendUvarint(k, uint64(len(t.Value)))
		k = append(k, t.Value...)
	}
	for _, f := range p.Fields {
		k = binary.AppendUvarint(k, uint64(len(f.Key)))
		k = append(k, f.Key...)
		k = append(k, byte(f.Value.Kind()))
	}
	e.key = k
	return k
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeColumnar appends the columnar form of the points of spans to dst.
// The points must be valid (protocols.Point.Validate).
func encodeColumnar(dst []byte, spans [][]protocols.Point) []byte {
	e := colEncoders.get()
	defer func() {
		clear(e.index)
		e.keys = e.keys[:0]
		clear(e.strs)
		clear(e.list)
		clear(e.memo[:])
		e.list = e.list[:0]
		for i := range e.blocks {
			clear(e.blocks[i].rows)
			e.blocks[i].rows = e.blocks[i].rows[:0]
		}
		e.blocks = e.blocks[:0]
		colEncoders.put(e)
	}()
	for _, pts := range spans {
		for i := range pts {
			p := &pts[i]
			// A map keyed by the key's hash, with the keys kept in one
			// slice, instead of a map[string]: that allocated a string for
			// every new block, a third of the garbage a commit made.
			k := e.blockKey(p)
			h := maphash.Bytes(e.seed, k)
			bi, ok := e.index[h]
			for ok && !bytes.Equal(e.keys[e.blocks[bi].key[0]:e.blocks[bi].key[1]], k) {
				bi = e.blocks[bi].next
				ok = bi >= 0
			}
			if !ok {
				next, chained := e.index[h]
				if !chained {
					next = -1
				}
				bi = len(e.blocks)
				e.index[h] = bi
				if bi < cap(e.blocks) {
					e.blocks = e.blocks[:bi+1]
				} else {
					e.blocks = append(e.blocks, colBlock{})
				}
				start := len(e.keys)
				e.keys = append(e.keys, k...)
				e.blocks[bi].key, e.blocks[bi].next = [2]int{start, len(e.keys)}, next
			}
			e.blocks[bi].rows = append(e.blocks[bi].rows, p)
		}
	}

	// Block headers refer to a table of the batch's distinct strings: a
	// station's id appears in several blocks, "air" in hundreds.
	hdr := e.hdr[:0]
	for _, bl := range e.blocks {
		p := bl.rows[0]
		hdr = binary.AppendUvarint(hdr, e.strAt(0, p.Measurement))
		hdr = binary.AppendUvarint(hdr, uint64(len(p.Tags)))
		for i, t := range p.Tags {
			hdr = binary.AppendUvarint(hdr, e.strAt(1+2*i, t.Key))
			hdr = binary.AppendUvarint(hdr, e.strAt(2+2*i, t.Value))
		}
		hdr = binary.AppendUvarint(hdr, uint64(len(p.Fields)))
		for i, f := range p.Fields {
			hdr = binary.AppendUvarint(hdr, e.strAt(16+i, f.Key))
			hdr = append(hdr, byte(f.Value.Kind()))
		}
		hdr = binary.AppendUvarint(hdr, uint64(len(bl.rows)))
	}
	e.hdr = hdr
	b := append(dst, colVersion)
	b = binary.AppendUvarint(b, uint64(len(e.list)))
	for _, s := range e.list {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(e.blocks)))
	b = append(b, hdr...)

	// Times: blocks of one tick start together and step alike, so each
	// block's start and first step are coded against the previous block's.
	var prevT0, prevD1 int64
	for _, bl := range e.blocks {
		t0 := bl.rows[0].Time
		b = binary.AppendVarint(b, t0-prevT0)
		prevT0 = t0
		if len(bl.rows) < 2 {
			continue
		}
		d := bl.rows[1].Time - t0
		b = binary.AppendVarint(b, d-prevD1)
		prevD1 = d
		for j := 2; j < len(bl.rows); j++ {
			nd := bl.rows[j].Time - bl.rows[j-1].Time
			b = binary.AppendVarint(b, nd-d)
			d = nd
		}
	}

	for _, bl := range e.blocks {
		for fi := range bl.rows[0].Fields {
			switch bl.rows[0].Fields[fi].Value.Kind() {
			case protocols.KindFloat:
				b = e.appendFloats(b, bl.rows, fi)
			case protocols.KindInt:
				var prev int64
				for _, r := range bl.rows {
					v := r.Fields[fi].Value.IntV()
					b = binary.AppendVarint(b, v-prev)
					prev = v
				}
			case protocols.KindUint:
				var prev uint64
				for _, r := range bl.rows {
					v := r.Fields[fi].Value.UintV()
					b = binary.AppendVarint(b, int64(v-prev))
					prev = v
				}
			case protocols.KindBool:
				for _, r := range bl.rows {
					if r.Fields[fi].Value.BoolV() {
						b = append(b, 1)
					} else {
						b = append(b, 0)
					}
				}
			case protocols.KindString:
				for _, r := range bl.rows {
					b = appendString(b, r.Fields[fi].Value.StringV())
				}
			}
		}
	}
	return b
}

// appendFloats writes field fi of rows as one float column.
func (e *colEncoder) appendFloats(b []byte, rows []*protocols.Point, fi int) []byte {
	e.ms, e.ds, e.exc = e.ms[:0], e.ds[:0], e.exc[:0]
	maxD := 0
	for _, r := range rows {
		m, d, ok := decimalOf(r.Fields[fi].Value.FloatV())
		if !ok {
			d = -1
		}
		e.ms, e.ds = append(e.ms, m), append(e.ds, int8(d))
		maxD = max(maxD, d)
	}
	// Scale every value to the column's decimals; one that does not come
	// back exactly at that scale (or overflows) becomes an exception.
	for j, r := range rows {
		d := int(e.ds[j])
		if d < 0 {
			e.exc = append(e.exc, int32(j))
			continue
		}
		m := e.ms[j]
		if s := ipow10[maxD-d]; s > 1 {
			if m > math.MaxInt64/s || m < math.MinInt64/s {
				e.exc = append(e.exc, int32(j))
				e.ds[j] = -1
				continue
			}
			m *= s
		}
		if m > maxExact || m < -maxExact {
			e.exc = append(e.exc, int32(j))
			e.ds[j] = -1
			continue
		}
		if math.Float64bits(float64(m)/pow10[maxD]) != math.Float64bits(r.Fields[fi].Value.FloatV()) {
			e.exc = append(e.exc, int32(j))
			e.ds[j] = -1
			continue
		}
		e.ms[j] = m
	}
	if 2*len(e.exc) > len(rows) {
		b = append(b, modeRaw)
		for _, r := range rows {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.Fields[fi].Value.FloatV()))
		}
		return b
	}
	b = append(b, byte(maxD))
	b = binary.AppendUvarint(b, uint64(len(e.exc)))
	last := int32(-1)
	for _, j := range e.exc {
		b = binary.AppendUvarint(b, uint64(j-last-1))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(rows[j].Fields[fi].Value.FloatV()))
		last = j
	}
	var prev int64
	for j := range rows {
		if e.ds[j] < 0 {
			continue
		}
		b = binary.AppendVarint(b, e.ms[j]-prev)
		prev = e.ms[j]
	}
	return b
}

// colReader reads a columnar body; every read checks what is left, so
// that a damaged body gives an error, never a panic.
type colReader struct {
	b   []byte
	err error
}

func (r *colReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = colErr(format, args...)
	}
}

func (r *colReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *colReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("truncated or overlong number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *colReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("truncated or overlong number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *colReader) u64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// count reads a length that must not exceed what is left of the body
// divided by per (the fewest bytes each element takes).
func (r *colReader) count(per int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/per) {
		r.fail("count %d exceeds the body", n)
		return 0
	}
	return int(n)
}

func (r *colReader) string() string { return string(r.bytes()) }

// bytes reads a string as a view into the body.
func (r *colReader) bytes() []byte {
	n := r.count(1)
	if r.err != nil {
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

// colHeader is a decoded block header. Its strings are indexes into the
// string table; its tags and fields are ranges of the decoder's slices.
type colHeader struct {
	measurement int32
	tags, ntags int // tags[2*i], tags[2*i+1]: key and value of tag i in colDecoder.tagStrs
	keys, nkeys int // field keys in colDecoder.keyStrs, their kinds in colDecoder.kinds
	rows        int
	times       int // offset of the block's times in colDecoder.times
	values      int // offset of its values (field-major) in colDecoder.vals
}

// colDecoder holds a decode's scratch space; pooled.
type colDecoder struct {
	strs    [][]byte // the string table, views into the body
	tagStrs []int32
	keyStrs []int32
	kinds   []protocols.Kind
	blocks  []colHeader
	times   []int64
	vals    []protocols.Value
	// For float values stored as scaled integers, their decimals and
	// integer (vals[i] = ms[i] / 10^decs[i]), so that they can be written
	// as text without a float conversion; decs[i] < 0 for other values.
	decs   []int8
	ms     []int64
	fields []protocols.Field
}

func getColDecoder() *colDecoder { return colDecoders.get() }

func (d *colDecoder) release() {
	clear(d.blocks)
	clear(d.vals) // drop references to strings
	clear(d.fields)
	d.blocks, d.times, d.vals, d.fields = d.blocks[:0], d.times[:0], d.vals[:0], d.fields[:0]
	d.decs, d.ms = d.decs[:0], d.ms[:0]
	clear(d.strs)
	d.strs, d.tagStrs, d.keyStrs, d.kinds = d.strs[:0], d.tagStrs[:0], d.keyStrs[:0], d.kinds[:0]
	// A rare huge batch should not pin its memory in the pool.
	if cap(d.vals) > 1<<16 {
		d.vals, d.times, d.decs, d.ms = nil, nil, nil, nil
	}
	colDecoders.put(d)
}

var colDecoders = newFreeList(func() *colDecoder { return new(colDecoder) })

// freeList keeps a few objects with their grown slices and maps for reuse.
// Unlike a sync.Pool it keeps them across garbage collections: under load
// the agent collects about once per batch, so a pool was empty whenever a
// batch came and every batch grew its slices anew.
type freeList[T any] struct {
	free chan T
	make func() T
}

// freeListSize is about the encodes or decodes that run at once: one per
// CPU of a gateway in a commit, one per output.
const freeListSize = 4

func newFreeList[T any](fresh func() T) *freeList[T] {
	return &freeList[T]{free: make(chan T, freeListSize), make: fresh}
}

func (f *freeList[T]) get() T {
	select {
	case x := <-f.free:
		return x
	default:
		return f.make()
	}
}

func (f *freeList[T]) put(x T) {
	select {
	case f.free <- x:
	default:
	}
}

// decodeColumnar calls fn with every point of a columnar body, block by
// block. The point and its slices are reused: fn must copy what it keeps.
// A body that does not decode gives an error wrapping errColumnar before
// any call of fn, and never a panic.
func decodeColumnar(body []byte, fn func(p *protocols.Point) error) error {
	d := getColDecoder()
	defer d.release()
	if err := d.parse(body); err != nil {
		return err
	}
	var p protocols.Point
	for i := range d.blocks {
		h := &d.blocks[i]
		p.Measurement, p.Tags = string(d.strs[h.measurement]), nil
		if h.ntags > 0 {
			p.Tags = make([]protocols.Tag, h.ntags)
			for ti := range p.Tags {
				p.Tags[ti] = protocols.Tag{Key: string(d.strs[d.tagStrs[h.tags+2*ti]]), Value: string(d.strs[d.tagStrs[h.tags+2*ti+1]])}
			}
		}
		keys := make([]string, h.nkeys)
		for fi := range keys {
			keys[fi] = string(d.strs[d.keyStrs[h.keys+fi]])
		}
		d.fields = slices.Grow(d.fields[:0], h.nkeys)[:h.nkeys]
		p.Fields = d.fields
		for j := range h.rows {
			p.Time = d.times[h.times+j]
			for fi := range p.Fields {
				// Set in full for every row: fn may have changed them.
				p.Fields[fi] = protocols.Field{Key: keys[fi], Value: d.vals[h.values+fi*h.rows+j]}
			}
			if err := fn(&p); err != nil {
				return err
			}
		}
	}
	return nil
}

// parse reads a columnar body into d's blocks, times and values.
func (d *colDecoder) parse(body []byte) error {
	r := &colReader{b: body}
	if v := r.byte(); r.err == nil && v != colVersion {
		return colErr("version %d, want %d", v, colVersion)
	}
	nstrs := r.count(1)
	for range nstrs {
		d.strs = append(d.strs, r.bytes())
	}
	str := func() int32 {
		i := r.uvarint()
		if r.err == nil && i >= uint64(len(d.strs)) {
			r.fail("string %d of %d", i, len(d.strs))
			return 0
		}
		return int32(i)
	}
	nblocks := r.count(1)
	total, nvals := 0, 0
	for range nblocks {
		var h colHeader
		h.measurement = str()
		h.ntags = r.count(2)
		h.tags = len(d.tagStrs)
		for range h.ntags {
			d.tagStrs = append(d.tagStrs, str(), str())
		}
		h.nkeys = r.count(2)
		h.keys = len(d.keyStrs)
		for range h.nkeys {
			d.keyStrs = append(d.keyStrs, str())
			kind := protocols.Kind(r.byte())
			switch kind {
			case protocols.KindFloat, protocols.KindInt, protocols.KindUint, protocols.KindBool, protocols.KindString:
			default:
				r.fail("field of unknown kind %d", kind)
			}
			d.kinds = append(d.kinds, kind)
		}
		h.rows = int(r.count(1))
		if r.err != nil {
			return r.err
		}
		if h.rows == 0 || len(d.strs[h.measurement]) == 0 || h.nkeys == 0 {
			return colErr("empty block")
		}
		nf := h.nkeys
		// Every row takes at least one byte in the times and one per field
		// in the columns that follow.
		h.times, h.values = total, nvals
		total += h.rows
		nvals += h.rows * nf
		if nvals > len(body) || total > maxColumnarPoints {
			return colErr("blocks of %d values in a body of %d bytes", nvals, len(body))
		}
		d.blocks = append(d.blocks, h)
	}
	if r.err != nil {
		return r.err
	}
	d.times = slices.Grow(d.times[:0], total)[:total]
	d.vals = slices.Grow(d.vals[:0], nvals)[:nvals]
	d.decs = slices.Grow(d.decs[:0], nvals)[:nvals]
	d.ms = slices.Grow(d.ms[:0], nvals)[:nvals]

	var prevT0, prevD1 int64
	for i := range d.blocks {
		h := &d.blocks[i]
		times := d.times[h.times : h.times+h.rows]
		t0 := prevT0 + r.varint()
		prevT0 = t0
		times[0] = t0
		if h.rows < 2 {
			continue
		}
		dt := prevD1 + r.varint()
		prevD1 = dt
		times[1] = t0 + dt
		for j := 2; j < h.rows; j++ {
			dt += r.varint()
			times[j] = times[j-1] + dt
		}
		if r.err != nil {
			return r.err
		}
	}

	for i := range d.blocks {
		h := &d.blocks[i]
		for fi, kind := range d.kinds[h.keys : h.keys+h.nkeys] {
			lo, hi := h.values+fi*h.rows, h.values+(fi+1)*h.rows
			col, decs := d.vals[lo:hi], d.decs[lo:hi]
			for j := range decs {
				decs[j] = -1
			}
			switch kind {
			case protocols.KindFloat:
				readFloats(r, col, decs, d.ms[lo:hi])
			case protocols.KindInt:
				var v int64
				for j := range col {
					v += r.varint()
					col[j] = protocols.Int(v)
				}
			case protocols.KindUint:
				var v uint64
				for j := range col {
					v += uint64(r.varint())
					col[j] = protocols.Uint(v)
				}
			case protocols.KindBool:
				for j := range col {
					switch r.byte() {
					case 0:
						col[j] = protocols.Bool(false)
					case 1:
						col[j] = protocols.Bool(true)
					default:
						r.fail("bool that is neither 0 nor 1")
					}
				}
			case protocols.KindString:
				for j := range col {
					col[j] = protocols.String(r.string())
				}
			}
			if r.err != nil {
				return r.err
			}
		}
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return colErr("%d bytes after the last column", len(r.b))
	}
	return nil
}

// readFloats reads one float column into col, and the decimals and scaled
// integers of its decimal values into decs and ms.
func readFloats(r *colReader, col []protocols.Value, decs []int8, ms []int64) {
	mode := r.byte()
	if r.err != nil {
		return
	}
	if mode == modeRaw {
		for j := range col {
			col[j] = protocols.Float(math.Float64frombits(r.u64()))
		}
		return
	}
	if mode > maxDecimals {
		r.fail("float column with %d decimals", mode)
		return
	}
	// Exceptions first: they are marked in col as set, the rest filled in
	// from the scaled integers that follow.
	nexc := r.count(9)
	set := make([]bool, len(col))
	row := -1
	for range nexc {
		gap := r.uvarint()
		bits := r.u64()
		if r.err != nil {
			return
		}
		if gap >= uint64(len(col)-row-1) {
			r.fail("exception outside the column")
			return
		}
		row += int(gap) + 1
		col[row], set[row] = protocols.Float(math.Float64frombits(bits)), true
	}
	var m int64
	for j := range col {
		if set[j] {
			continue
		}
		m += r.varint()
		if m > maxExact || m < -maxExact {
			r.fail("scaled value out of range")
			return
		}
		col[j] = protocols.Float(float64(m) / pow10[mode])
		decs[j], ms[j] = int8(mode), m
	}
}
