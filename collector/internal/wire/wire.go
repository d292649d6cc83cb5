// Package wire is the collector's internal binary encoding of point batches,
// used on the bus between its own stages: the write API publishes it to
// CS_RAW and the enrich stage to CS_SERIES. Line protocol stays the format
// agents and writers speak; between stages that already hold decoded,
// validated points, parsing floats and escapes again cost more CPU than the
// store itself (three line-protocol decodes and two encodes per point were
// about 70% of the collector's ingest profile).
//
// A message starts with Magic, which no line-protocol batch can start with
// (a NUL byte), so a consumer tells the formats apart without a header.
// Then:
//
//	uvarint points, uvarint tags (all points), uvarint fields (all points)
//	per point:
//	  str measurement
//	  uvarint tag count, then per tag: str key, str value
//	  uvarint field count, then per field: str key, kind byte, value
//	  varint time − previous point's time (zigzag)
//	str:   uvarint r; r = 0: a new string follows (uvarint length, bytes) and
//	       takes the next index of the message's string table; r > 0: the
//	       table's string r−1. Measurements, tag keys and values and field
//	       keys repeat across a batch, so each is sent and allocated once.
//	value: float 8 bytes little endian; int zigzag varint; uint uvarint;
//	       bool one byte 0/1; string uvarint length, bytes (not tabled).
//
// Decoding never trusts a count: every length is checked against the bytes
// left, so garbage yields an error and never a panic or a large allocation.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/citysense/citysense/protocols"
)

// Magic starts every message.
const Magic = "\x00CSW1"

// Is reports whether b is a wire message rather than line protocol.
func Is(b []byte) bool { return len(b) >= len(Magic) && string(b[:len(Magic)]) == Magic }

// Encoder appends points to a message. The zero value is ready; Reset
// starts the next message and keeps the buffers.
type Encoder struct {
	body   []byte
	strs   map[string]int
	points int
	tags   int
	fields int
	prevT  int64

	// seen caches string table indexes by the string's data pointer and
	// length. Decoded points share their strings (the decoders intern
	// them), so most lookups end here without hashing the bytes; an entry
	// is valid only for the message (gen) it was made in.
	seen [cacheSize]cacheEntry
	gen  uint32
}

const cacheSize = 1024

type cacheEntry struct {
	p   *byte
	n   int32
	gen uint32
	idx int32
}

// Reset empties the encoder for a new message.
func (e *Encoder) Reset() {
	e.body = e.body[:0]
	clear(e.strs)
	e.points, e.tags, e.fields, e.prevT = 0, 0, 0, 0
	e.gen++
	if e.gen == 0 { // wrapped: entries of 2^32 messages ago would look valid
		e.seen = [cacheSize]cacheEntry{}
		e.gen = 1
	}
}

// Len is the number of points encoded since the last Reset.
func (e *Encoder) Len() int { return e.points }

// Size is about the size of the message in bytes.
func (e *Encoder) Size() int { return len(e.body) + len(Magic) + 3*binary.MaxVarintLen64 }

// Encode appends one point. It does not validate: the stages that use
// this format hold points that were validated when they were decoded.
func (e *Encoder) Encode(p *protocols.Point) {
	if e.strs == nil {
		e.strs = make(map[string]int, 64)
		e.gen = 1
	}
	e.str(p.Measurement)
	e.body = binary.AppendUvarint(e.body, uint64(len(p.Tags)))
	for _, t := range p.Tags {
		e.str(t.Key)
		e.str(t.Value)
	}
	e.body = binary.AppendUvarint(e.body, uint64(len(p.Fields)))
	for _, f := range p.Fields {
		e.str(f.Key)
		v := f.Value
		e.body = append(e.body, byte(v.Kind()))
		switch v.Kind() {
		case protocols.KindFloat:
			e.body = binary.LittleEndian.AppendUint64(e.body, math.Float64bits(v.FloatV()))
		case protocols.KindInt:
			e.body = binary.AppendVarint(e.body, v.IntV())
		case protocols.KindUint:
			e.body = binary.AppendUvarint(e.body, v.UintV())
		case protocols.KindBool:
			b := byte(0)
			if v.BoolV() {
				b = 1
			}
			e.body = append(e.body, b)
		case protocols.KindString:
			s := v.StringV()
			e.body = binary.AppendUvarint(e.body, uint64(len(s)))
			e.body = append(e.body, s...)
		}
	}
	e.body = binary.AppendVarint(e.body, p.Time-e.prevT)
	e.prevT = p.Time
	e.points++
	e.tags += len(p.Tags)
	e.fields += len(p.Fields)
}

func (e *Encoder) str(s string) {
	p := unsafe.StringData(s)
	c := &e.seen[(uintptr(unsafe.Pointer(p))>>3^uintptr(len(s)))%cacheSize]
	if c.p == p && c.n == int32(len(s)) && c.gen == e.gen && p != nil {
		e.body = binary.AppendUvarint(e.body, uint64(c.idx+1))
		return
	}
	if i, ok := e.strs[s]; ok {
		*c = cacheEntry{p: p, n: int32(len(s)), gen: e.gen, idx: int32(i)}
		e.body = binary.AppendUvarint(e.body, uint64(i+1))
		return
	}
	*c = cacheEntry{p: p, n: int32(len(s)), gen: e.gen, idx: int32(len(e.strs))}
	e.strs[s] = len(e.strs)
	e.body = append(e.body, 0)
	e.body = binary.AppendUvarint(e.body, uint64(len(s)))
	e.body = append(e.body, s...)
}

// AppendTo appends the finished message to dst.
func (e *Encoder) AppendTo(dst []byte) []byte {
	dst = append(dst, Magic...)
	dst = binary.AppendUvarint(dst, uint64(e.points))
	dst = binary.AppendUvarint(dst, uint64(e.tags))
	dst = binary.AppendUvarint(dst, uint64(e.fields))
	return append(dst, e.body...)
}

// Options tune Decode.
type Options struct {
	// Validate checks every point's invariants (protocols.Point.Validate):
	// needed where the message may come from outside the collector (CS_RAW
	// takes agents' publications); CS_SERIES holds only the enrich stage's.
	Validate bool
}

// ErrCorrupt wraps every error about a malformed message.
var ErrCorrupt = errors.New("wire: corrupt message")

// Decode returns the message's points. Their tag and field slices share
// two allocations, and each distinct string is allocated once.
func Decode(b []byte, opts Options) ([]protocols.Point, error) {
	return (&Decoder{}).decode(b, opts, false)
}

// Decoder decodes messages into slabs it reuses after Reset, for a
// consumer that is done with the points of earlier messages (the store
// copies what it keeps): the points, tags and fields of a whole fetch then
// cost no allocation once the slabs have grown. Strings may be kept by the
// consumer; those of the string table (names and tag values) are interned
// across messages, so that a station's id is allocated once and not once
// per message.
type Decoder struct {
	pts    []protocols.Point
	tags   []protocols.Tag
	fields []protocols.Field
	names  map[string]string
	strs   []string // the string table's memory, reused by each message
}

// maxNames bounds a Decoder's interned strings; when full it starts over,
// so that names no longer sent are not kept for good.
const maxNames = 8192

// Reset makes the slabs' memory available again: points returned before
// it must no longer be used.
func (dc *Decoder) Reset() {
	dc.pts, dc.tags, dc.fields = dc.pts[:0], dc.tags[:0], dc.fields[:0]
}

// grow returns n elements appended to *slab, reusing its capacity.
func grow[T any](slab *[]T, n int) []T {
	s := *slab
	if cap(s)-len(s) < n {
		// Earlier points keep the old array; the new one takes the rest.
		s = make([]T, 0, max(2*cap(s), n))
	}
	out := s[len(s) : len(s)+n : len(s)+n]
	clear(out)
	*slab = s[:len(s)+n]
	return out
}

// Decode decodes one message into the decoder's slabs; the points stay
// valid until Reset.
func (dc *Decoder) Decode(b []byte, opts Options) ([]protocols.Point, error) {
	return dc.decode(b, opts, true)
}

func (dc *Decoder) decode(b []byte, opts Options, intern bool) ([]protocols.Point, error) {
	if !Is(b) {
		return nil, fmt.Errorf("%w: no magic", ErrCorrupt)
	}
	if intern && (dc.names == nil || len(dc.names) >= maxNames) {
		dc.names = make(map[string]string, 256)
	}
	d := decoder{b: b, off: len(Magic), names: dc.names, strs: dc.strs[:0]}
	if intern {
		defer func() { dc.strs = d.strs }()
	}
	np, nt, nf := d.uvarint(), d.uvarint(), d.uvarint()
	// Each point takes at least 4 bytes, each tag 2 and each field 3:
	// counts beyond what the bytes can hold are lies.
	if d.err != nil || np > uint64(len(b)/4) || nt > uint64(len(b)/2) || nf > uint64(len(b)/3) {
		return nil, d.fail("counts")
	}
	pts := grow(&dc.pts, int(np))
	tags := grow(&dc.tags, int(nt))
	fields := grow(&dc.fields, int(nf))
	var t int64
	for i := range pts {
		p := &pts[i]
		p.Measurement = d.str()
		n := d.uvarint()
		if d.err != nil || n > uint64(len(tags)) {
			return nil, d.fail("tag count")
		}
		p.Tags, tags = tags[:n:n], tags[n:]
		for j := range p.Tags {
			p.Tags[j].Key = d.str()
			p.Tags[j].Value = d.str()
		}
		n = d.uvarint()
		if d.err != nil || n > uint64(len(fields)) {
			return nil, d.fail("field count")
		}
		p.Fields, fields = fields[:n:n], fields[n:]
		for j := range p.Fields {
			f := &p.Fields[j]
			f.Key = d.str()
			f.Value = d.value()
		}
		t += d.varint()
		p.Time = t
		if d.err != nil {
			return nil, d.err
		}
		if opts.Validate {
			if err := p.Validate(); err != nil {
				return nil, fmt.Errorf("%w: point %d: %v", ErrCorrupt, i, err)
			}
		}
	}
	if len(tags) != 0 || len(fields) != 0 || d.off != len(b) {
		return nil, d.fail("trailing data or counts that do not add up")
	}
	return pts, nil
}

type decoder struct {
	b     []byte
	off   int
	strs  []string
	err   error
	names map[string]string // interned strings; nil: none
}

func (d *decoder) fail(what string) error {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s at byte %d", ErrCorrupt, what, d.off)
	}
	return d.err
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)-d.off) {
		d.fail("length")
		return nil
	}
	s := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return s
}

func (d *decoder) str() string {
	r := d.uvarint()
	if d.err != nil {
		return ""
	}
	if r == 0 {
		b := d.bytes()
		s, ok := d.names[string(b)] // no allocation for the lookup
		if !ok {
			s = string(b)
			if d.names != nil && len(d.names) < maxNames {
				d.names[s] = s
			}
		}
		d.strs = append(d.strs, s)
		return s
	}
	if r > uint64(len(d.strs)) {
		d.fail("string reference")
		return ""
	}
	return d.strs[r-1]
}

func (d *decoder) value() protocols.Value {
	if d.err != nil || d.off >= len(d.b) {
		d.fail("value")
		return protocols.Value{}
	}
	k := protocols.Kind(d.b[d.off])
	d.off++
	switch k {
	case protocols.KindFloat:
		if len(d.b)-d.off < 8 {
			d.fail("float")
			return protocols.Value{}
		}
		v := math.Float64frombits(binary.LittleEndian.Uint64(d.b[d.off:]))
		d.off += 8
		return protocols.Float(v)
	case protocols.KindInt:
		return protocols.Int(d.varint())
	case protocols.KindUint:
		return protocols.Uint(d.uvarint())
	case protocols.KindBool:
		if d.off >= len(d.b) || d.b[d.off] > 1 {
			d.fail("bool")
			return protocols.Value{}
		}
		v := d.b[d.off] == 1
		d.off++
		return protocols.Bool(v)
	case protocols.KindString:
		return protocols.String(string(d.bytes()))
	}
	d.fail("value kind")
	return protocols.Value{}
}
