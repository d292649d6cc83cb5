package fanout

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/protocols"
)

// magic starts every response body of the internal endpoints, so that a
// body from something else (a proxy's error page) is refused at once.
const magic = "CSF1"

// Frame types. See doc.go for the payloads.
const (
	frameRef          = 'r'
	frameMeasurements = 'm'
	frameSamples      = 's'
	frameBuckets      = 'b'
	frameLatest       = 'l'
	frameGroup        = 'g'
	frameStation      = 't'
	frameError        = 'e'
	frameEnd          = 'z'
)

// Error codes of an error frame.
const (
	codeInternal      = 1 // the node failed: ask another replica
	codeTooManySeries = 2
	codeAmbiguous     = 3 // the message is the field, then the measurements
	codeBadRequest    = 4
)

const (
	// maxFrame bounds a frame's payload: the decoder refuses larger ones
	// rather than allocating what a corrupt length asks for.
	maxFrame = 4 << 20
	// maxFrameSamples splits a long run of samples into frames; a
	// sample takes at most 1+10+1+10 bytes plus a string's length.
	maxFrameSamples = 4096
)

// errTruncated is a body that ended before its end frame: the node died
// or the connection broke mid-answer.
var errTruncated = errors.New("answer truncated: no end frame")

// frameWriter writes frames to a buffered writer.
type frameWriter struct {
	w       *bufio.Writer
	payload []byte
	items   int64 // refs, samples, buckets... written, for the end frame
}

func newFrameWriter(w io.Writer) *frameWriter {
	fw := &frameWriter{w: bufio.NewWriterSize(w, 64<<10)}
	fw.w.WriteString(magic)
	return fw
}

func (fw *frameWriter) frame(typ byte) error {
	if len(fw.payload) > maxFrame {
		return fmt.Errorf("frame %c of %d bytes: over the limit", typ, len(fw.payload))
	}
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = typ
	n := binary.PutUvarint(hdr[1:], uint64(len(fw.payload)))
	if _, err := fw.w.Write(hdr[:1+n]); err != nil {
		return err
	}
	_, err := fw.w.Write(fw.payload)
	fw.payload = fw.payload[:0]
	return err
}

func (fw *frameWriter) flush() error { return fw.w.Flush() }

func (fw *frameWriter) ref(m, f string, tags []protocols.Tag) error {
	b := appendStr(fw.payload[:0], m)
	b = appendStr(b, f)
	b = binary.AppendUvarint(b, uint64(len(tags)))
	for _, t := range tags {
		b = appendStr(b, t.Key)
		b = appendStr(b, t.Value)
	}
	fw.payload = b
	fw.items++
	return fw.frame(frameRef)
}

func (fw *frameWriter) measurements(ms []string) error {
	b := binary.AppendUvarint(fw.payload[:0], uint64(len(ms)))
	for _, m := range ms {
		b = appendStr(b, m)
	}
	fw.payload = b
	return fw.frame(frameMeasurements)
}

func (fw *frameWriter) samples(idx int, smp []store.Sample) error {
	for len(smp) > 0 {
		n := min(len(smp), maxFrameSamples)
		b := binary.AppendUvarint(fw.payload[:0], uint64(idx))
		b = binary.AppendUvarint(b, uint64(n))
		var prevT, prevD int64
		for k, s := range smp[:n] {
			// Delta of delta: a steady interval costs one byte.
			if k == 0 {
				b = binary.AppendVarint(b, s.Time)
			} else {
				d := s.Time - prevT
				b = binary.AppendVarint(b, d-prevD)
				prevD = d
			}
			prevT = s.Time
			b = appendValue(b, s.Value)
		}
		fw.payload = b
		fw.items += int64(n)
		if err := fw.frame(frameSamples); err != nil {
			return err
		}
		smp = smp[n:]
	}
	return nil
}

func (fw *frameWriter) buckets(idx int, bs []store.Bucket) error {
	for len(bs) > 0 {
		n := min(len(bs), maxFrameSamples)
		b := binary.AppendUvarint(fw.payload[:0], uint64(idx))
		b = binary.AppendUvarint(b, uint64(n))
		var prev int64
		for _, x := range bs[:n] {
			b = binary.AppendVarint(b, x.Start-prev)
			prev = x.Start
			b = binary.AppendVarint(b, x.Count)
			for _, f := range [...]float64{x.Sum, x.Min, x.Max, x.First, x.Last} {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
			}
			b = binary.AppendVarint(b, x.FirstTime-x.Start)
			b = binary.AppendVarint(b, x.LastTime-x.Start)
		}
		fw.payload = b
		fw.items += int64(n)
		if err := fw.frame(frameBuckets); err != nil {
			return err
		}
		bs = bs[n:]
	}
	return nil
}

func (fw *frameWriter) latest(idx int, s store.Sample) error {
	b := binary.AppendUvarint(fw.payload[:0], uint64(idx))
	b = binary.AppendVarint(b, s.Time)
	fw.payload = appendValue(b, s.Value)
	fw.items++
	return fw.frame(frameLatest)
}

func (fw *frameWriter) group(g store.Group) error {
	fw.payload = appendStr(appendStr(fw.payload[:0], g.Measurement), g.Field)
	fw.items++
	return fw.frame(frameGroup)
}

func (fw *frameWriter) station(st store.Station) error {
	b := appendStr(fw.payload[:0], st.ID)
	b = appendStr(b, st.District)
	b = binary.AppendUvarint(b, uint64(len(st.Measurements)))
	for _, m := range st.Measurements {
		b = appendStr(b, m)
	}
	b = binary.AppendVarint(b, st.LastSeen)
	if st.HasPosition {
		b = append(b, 1)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(st.Lat))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(st.Lon))
	} else {
		b = append(b, 0)
	}
	fw.payload = b
	fw.items++
	return fw.frame(frameStation)
}

// fail writes an error frame; the body ends with it.
func (fw *frameWriter) fail(code int, msg string) error {
	fw.payload = appendStr(binary.AppendUvarint(fw.payload[:0], uint64(code)), msg)
	if err := fw.frame(frameError); err != nil {
		return err
	}
	return fw.flush()
}

// end writes the end frame with the count of items sent, and flushes.
func (fw *frameWriter) end() error {
	fw.payload = binary.AppendUvarint(fw.payload[:0], uint64(fw.items))
	if err := fw.frame(frameEnd); err != nil {
		return err
	}
	return fw.flush()
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendValue writes a kind byte and the value: float 8 bytes little
// endian, int zigzag varint, uint uvarint, bool one byte, string uvarint
// length and bytes.
func appendValue(b []byte, v protocols.Value) []byte {
	b = append(b, byte(v.Kind()))
	switch v.Kind() {
	case protocols.KindFloat:
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.FloatV()))
	case protocols.KindInt:
		b = binary.AppendVarint(b, v.IntV())
	case protocols.KindUint:
		b = binary.AppendUvarint(b, v.UintV())
	case protocols.KindBool:
		x := byte(0)
		if v.BoolV() {
			x = 1
		}
		b = append(b, x)
	case protocols.KindString:
		b = appendStr(b, v.StringV())
	}
	return b
}

// remoteError is an error frame's content.
type remoteError struct {
	code int
	msg  string
}

func (e *remoteError) Error() string { return e.msg }

// frameReader reads the frames of a body. Every length is checked against
// the bytes there are, so that garbage gives an error, never a panic or a
// huge allocation.
type frameReader struct {
	r       *bufio.Reader
	payload []byte
	items   int64 // items decoded, checked against the end frame
	started bool
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next frame's type and payload (valid until the next
// call). An error frame comes back as a *remoteError, the end frame as
// io.EOF once its count checked out.
func (fr *frameReader) next() (byte, []byte, error) {
	if !fr.started {
		var m [len(magic)]byte
		if _, err := io.ReadFull(fr.r, m[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, nil, errTruncated
			}
			return 0, nil, err
		}
		if string(m[:]) != magic {
			return 0, nil, fmt.Errorf("not a fan-out answer: starts with %q", m[:])
		}
		fr.started = true
	}
	typ, err := fr.r.ReadByte()
	if err != nil {
		return 0, nil, eofIsTruncation(err)
	}
	n, err := binary.ReadUvarint(fr.r)
	if err != nil {
		return 0, nil, eofIsTruncation(err)
	}
	if n > maxFrame {
		return 0, nil, fmt.Errorf("frame %q of %d bytes: over the limit of %d", typ, n, maxFrame)
	}
	if cap(fr.payload) < int(n) {
		fr.payload = make([]byte, n)
	}
	fr.payload = fr.payload[:n]
	if _, err := io.ReadFull(fr.r, fr.payload); err != nil {
		return 0, nil, eofIsTruncation(err)
	}
	switch typ {
	case frameError:
		d := decoder{b: fr.payload}
		code := int(d.uvarint())
		msg := d.str()
		if d.err != nil {
			return 0, nil, fmt.Errorf("error frame: %w", d.err)
		}
		return 0, nil, &remoteError{code: code, msg: msg}
	case frameEnd:
		d := decoder{b: fr.payload}
		n := d.uvarint()
		if d.err != nil {
			return 0, nil, fmt.Errorf("end frame: %w", d.err)
		}
		if int64(n) != fr.items {
			return 0, nil, fmt.Errorf("end frame counts %d items, %d arrived", n, fr.items)
		}
		return 0, nil, io.EOF
	case frameSamples, frameBuckets:
		d := decoder{b: fr.payload}
		d.uvarint()
		fr.items += int64(d.uvarint())
		return typ, fr.payload, nil
	case frameRef, frameLatest, frameGroup, frameStation:
		fr.items++
		return typ, fr.payload, nil
	case frameMeasurements:
		return typ, fr.payload, nil
	}
	return 0, nil, fmt.Errorf("unknown frame type %q", typ)
}

func eofIsTruncation(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errTruncated
	}
	return err
}

// decoder reads one payload. The first error sticks; reads after it
// return zero values.
type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("payload too short")

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail(errShort)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) f64() float64 {
	if len(d.b) < 8 {
		d.fail(errShort)
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail(errShort)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// count reads a count of items that take at least min bytes each, and
// refuses one the payload cannot hold.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail(fmt.Errorf("count %d does not fit in %d bytes", n, len(d.b)))
		return 0
	}
	return int(n)
}

func (d *decoder) value() protocols.Value {
	switch k := protocols.Kind(d.byte()); k {
	case protocols.KindFloat:
		return protocols.Float(d.f64())
	case protocols.KindInt:
		return protocols.Int(d.varint())
	case protocols.KindUint:
		return protocols.Uint(d.uvarint())
	case protocols.KindBool:
		switch d.byte() {
		case 0:
			return protocols.Bool(false)
		case 1:
			return protocols.Bool(true)
		}
		d.fail(errors.New("bool value not 0 or 1"))
	case protocols.KindString:
		return protocols.String(d.str())
	default:
		d.fail(fmt.Errorf("unknown value kind %d", k))
	}
	return protocols.Value{}
}

// done checks that the payload was read whole and without error.
func (d *decoder) done(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes left over", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("%s frame: %w", what, d.err)
	}
	return nil
}

// The payload decoders. Each checks the payload whole.

func decodeRef(p []byte) (store.SeriesKey, error) {
	d := decoder{b: p}
	k := store.SeriesKey{Measurement: d.str(), Field: d.str()}
	n := d.count(2)
	if n > 0 {
		k.Tags = make([]protocols.Tag, n)
		for i := range k.Tags {
			k.Tags[i] = protocols.Tag{Key: d.str(), Value: d.str()}
		}
	}
	return k, d.done("ref")
}

func decodeMeasurements(p []byte) ([]string, error) {
	d := decoder{b: p}
	ms := make([]string, d.count(1))
	for i := range ms {
		ms[i] = d.str()
	}
	return ms, d.done("measurements")
}

// decodeSamples appends to buf[:0] and returns the series index.
func decodeSamples(p []byte, buf []store.Sample) (int, []store.Sample, error) {
	d := decoder{b: p}
	idx := int(d.uvarint())
	n := d.count(2)
	buf = buf[:0]
	var prevT, prevD int64
	for k := 0; k < n && d.err == nil; k++ {
		t := d.varint()
		if k > 0 {
			prevD += t
			t = prevT + prevD
		}
		prevT = t
		buf = append(buf, store.Sample{Time: t, Value: d.value()})
	}
	return idx, buf, d.done("samples")
}

func decodeBuckets(p []byte, buf []store.Bucket) (int, []store.Bucket, error) {
	d := decoder{b: p}
	idx := int(d.uvarint())
	n := d.count(44)
	buf = buf[:0]
	var prev int64
	for k := 0; k < n && d.err == nil; k++ {
		var b store.Bucket
		b.Start = prev + d.varint()
		prev = b.Start
		b.Count = d.varint()
		b.Sum, b.Min, b.Max, b.First, b.Last = d.f64(), d.f64(), d.f64(), d.f64(), d.f64()
		b.FirstTime = b.Start + d.varint()
		b.LastTime = b.Start + d.varint()
		buf = append(buf, b)
	}
	return idx, buf, d.done("buckets")
}

func decodeLatest(p []byte) (int, store.Sample, error) {
	d := decoder{b: p}
	idx := int(d.uvarint())
	s := store.Sample{Time: d.varint()}
	s.Value = d.value()
	return idx, s, d.done("latest")
}

func decodeGroup(p []byte) (store.Group, error) {
	d := decoder{b: p}
	g := store.Group{Measurement: d.str(), Field: d.str()}
	return g, d.done("group")
}

func decodeStation(p []byte) (store.Station, error) {
	d := decoder{b: p}
	st := store.Station{ID: d.str(), District: d.str()}
	if n := d.count(1); n > 0 {
		st.Measurements = make([]string, n)
		for i := range st.Measurements {
			st.Measurements[i] = d.str()
		}
	}
	st.LastSeen = d.varint()
	if d.byte() == 1 {
		st.HasPosition, st.Lat, st.Lon = true, d.f64(), d.f64()
	}
	return st, d.done("station")
}
