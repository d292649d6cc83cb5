package protocols

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// Precision is the unit of line-protocol timestamps.
type Precision uint8

// Timestamp precisions understood on the wire.
const (
	Nanosecond Precision = iota
	Microsecond
	Millisecond
	Second
)

// ParsePrecision reads the precision names used by InfluxDB v1 and v2 write
// APIs: "ns" (or "n", or empty), "us"/"u"/"µs", "ms", "s".
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "", "ns", "n":
		return Nanosecond, nil
	case "us", "u", "µs":
		return Microsecond, nil
	case "ms":
		return Millisecond, nil
	case "s":
		return Second, nil
	}
	return 0, fmt.Errorf("unknown precision %q (want ns, us, ms or s)", s)
}

// String returns the short name of the precision.
func (p Precision) String() string {
	return [...]string{"ns", "us", "ms", "s"}[p&3]
}

// Duration returns the length of one unit of the precision.
func (p Precision) Duration() time.Duration {
	return [...]time.Duration{time.Nanosecond, time.Microsecond, time.Millisecond, time.Second}[p&3]
}

func (p Precision) lp() lineprotocol.Precision {
	return [...]lineprotocol.Precision{lineprotocol.Nanosecond, lineprotocol.Microsecond, lineprotocol.Millisecond, lineprotocol.Second}[p&3]
}

// LineError is a decoding error that names the 1-based line and column of
// the offending byte in the input.
type LineError struct {
	Line   int
	Column int
	Text   string // the offending line, truncated to 200 bytes
	Err    error
}

func (e *LineError) Error() string {
	if e.Text != "" {
		return fmt.Sprintf("line %d:%d: %v (in %q)", e.Line, e.Column, e.Err, e.Text)
	}
	return fmt.Sprintf("line %d:%d: %v", e.Line, e.Column, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// DecodeOptions tune Decode. The zero value decodes nanosecond timestamps and
// stamps lines without a timestamp with the current time.
type DecodeOptions struct {
	Precision Precision
	// Now stamps lines that carry no timestamp; zero means time.Now().
	Now time.Time
	// MaxErrors stops collecting errors after this many (the rest of the
	// input is still decoded); zero means 100.
	MaxErrors int
}

// DecodeErrors lists every bad line of an input; the good lines were still
// delivered. It unwraps to each *LineError.
type DecodeErrors struct {
	Errs    []*LineError
	Dropped int // errors beyond MaxErrors, counted only
}

func (e *DecodeErrors) Error() string {
	if len(e.Errs) == 1 && e.Dropped == 0 {
		return e.Errs[0].Error()
	}
	return fmt.Sprintf("%d bad lines, first: %v", len(e.Errs)+e.Dropped, e.Errs[0])
}

// Unwrap exposes each line error to errors.Is and errors.As.
func (e *DecodeErrors) Unwrap() []error {
	out := make([]error, len(e.Errs))
	for i, le := range e.Errs {
		out[i] = le
	}
	return out
}

// Decode parses line protocol and calls fn for each valid point, in input
// order. A bad line does not stop decoding: it is reported in the returned
// *DecodeErrors and the lines around it are still delivered, which is what a
// partial write needs. If fn returns an error, Decode stops and returns it.
// Points passed to fn own their memory.
func Decode(data []byte, opts DecodeOptions, fn func(Point) error) error {
	return decode(newDecodeState(data), data, opts, fn)
}

// Decoder is Decode for a caller that is done with each call's points
// before the next: the tag and field slabs and the table of interned names
// are kept from one call to the next, so that a stream of batches from the
// same stations costs no allocation for names seen before and none for the
// slices once the slabs have grown (the write API decodes a body per
// request; fresh slabs and names were a third of its allocations). The
// zero Decoder is ready. It is not safe for concurrent use.
type Decoder struct {
	st decodeState
}

// Decode is the package's Decode, except that the points' tag and field
// slices are valid only until the next call on d: the next call carves its
// points from the same memory. Strings (measurements, keys, tag values)
// are not reused and stay valid.
func (d *Decoder) Decode(data []byte, opts DecodeOptions, fn func(Point) error) error {
	d.st.reuse(data)
	return decode(&d.st, data, opts, fn)
}

func decode(st *decodeState, data []byte, opts DecodeOptions, fn func(Point) error) error {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	maxErrs := opts.MaxErrors
	if maxErrs <= 0 {
		maxErrs = 100
	}
	prec := opts.Precision.lp()
	mult := int64(prec.Duration())
	var errs DecodeErrors
	report := func(lerr *LineError) {
		if len(errs.Errs) < maxErrs {
			lerr.Text = lineText(data, lerr.Line)
			errs.Errs = append(errs.Errs, lerr)
		} else {
			errs.Dropped++
		}
	}
	// general decodes chunk, which starts on line first+1 of data, with
	// the library's decoder.
	general := func(chunk []byte, first int) error {
		dec := lineprotocol.NewDecoderWithBytes(chunk)
		var lines lineCounter
		for dec.Next() {
			p, lerr := st.decodeEntry(dec, prec, now, chunk, &lines)
			if lerr != nil {
				lerr.Line += first
				report(lerr)
				continue
			}
			if err := fn(p); err != nil {
				return err
			}
		}
		return nil
	}
	// Lines the fast path does not take are collected into runs and each
	// run decoded by one general decoder, so a batch of string fields
	// does not pay for a decoder per line.
	lineNo, runStart, runLine := 0, -1, 0
	flushRun := func(end int) error {
		if runStart < 0 {
			return nil
		}
		err := general(data[runStart:end], runLine-1)
		runStart = -1
		return err
	}
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += off
		}
		line := data[off:end]
		lineNo++
		next := min(end+1, len(data))
		if len(line) == 0 && runStart < 0 {
			off = next // a blank line between fast lines
			continue
		}
		kind := lineSingle
		if len(line) > 0 {
			kind = classify(line)
		}
		switch kind {
		case lineFast:
			if p, ok := st.fastLine(line, mult); ok {
				if err := flushRun(off); err != nil {
					return err
				}
				// As decodeEntry does: the model wants tags sorted and
				// keys unique.
				p.SortTags()
				if err := p.Validate(); err != nil {
					report(&LineError{Line: lineNo, Column: 1, Err: err})
				} else if err := fn(p); err != nil {
					return err
				}
				off = next
				continue
			}
		case lineRemainder:
			next = len(data)
		}
		if runStart < 0 {
			runStart, runLine = off, lineNo
		}
		off = next
	}
	if err := flushRun(len(data)); err != nil {
		return err
	}
	if len(errs.Errs) > 0 || errs.Dropped > 0 {
		return &errs
	}
	return nil
}

// DecodeAll is Decode collecting the points into a slice.
func DecodeAll(data []byte, opts DecodeOptions) ([]Point, error) {
	var pts []Point
	err := Decode(data, opts, func(p Point) error {
		pts = append(pts, p)
		return nil
	})
	return pts, err
}

// lineCounter maps byte offsets of data to 1-based line numbers. Offsets are
// asked for in increasing order, so counting newlines stays O(len(data)).
type lineCounter struct {
	off  int // bytes counted so far
	line int // line number at off, minus one
	last int // line of the most recent entry located
}

// entryLine returns the physical line on which the entry whose measurement
// is m starts. The library does not expose its position, but an unescaped
// measurement is a sub-slice of data, which gives the offset exactly; an
// escaped one lives in the decoder's scratch buffer, and then the line after
// the previous located entry is the best answer.
func (lc *lineCounter) entryLine(data, m []byte) int {
	if len(m) == 0 || len(data) == 0 {
		return lc.last + 1
	}
	off := cap(data) - cap(m)
	if off < lc.off || off >= len(data) || &data[off] != &m[0] {
		lc.last++
		return lc.last
	}
	for _, c := range data[lc.off:off] {
		if c == '\n' {
			lc.line++
		}
	}
	lc.off = off
	lc.last = lc.line + 1
	return lc.last
}

// decodeState amortises allocations over one Decode call: names that repeat
// from line to line (measurements, tag and field keys, tag values such as
// district names) are interned, and tag and field slices are carved out of
// shared slabs with a capped capacity, so each point still owns its memory
// (appending to one point's slice can never overwrite another's).
type decodeState struct {
	names  map[string]string
	tags   []Tag
	fields []Field
	tslab  []Tag
	fslab  []Field
	slab   int // size of the next slab

	// For a Decoder: every slab made, handed out again by the next call
	// (next* is the first not yet in use by this one); nil for Decode.
	tslabs       [][]Tag
	fslabs       [][]Field
	keep         bool
	nextT, nextF int

	// The previous fast-path line's names by position (see prev).
	prevMeas, prevTagKeys, prevFieldKeys []string
}

// Scratch is sized to the input: a one-line MQTT payload must not pay for
// the slabs of a 5,000-line batch (29 KB per call before this).
const (
	maxSlab     = 256 // tags or fields per slab
	perLineHint = 8   // tags or fields a line is assumed to carry
	maxNames    = 64  // initial size of the intern map
)

func newDecodeState(data []byte) *decodeState {
	lines := bytes.Count(bytes.TrimRight(data, "\n"), []byte{'\n'}) + 1
	n := min(maxSlab, lines*perLineHint)
	st := &decodeState{slab: n, tags: make([]Tag, 0, perLineHint), fields: make([]Field, 0, perLineHint)}
	if lines > 1 {
		// Interning pays only when names repeat from line to line.
		st.names = make(map[string]string, min(maxNames, lines*perLineHint))
	}
	return st
}

// reuse readies a Decoder's state for the next call: the slabs made so
// far are handed out again from the first, and the names stay interned
// unless the table is full (then it starts over, so that a drifting set of
// names is not kept out for good).
func (st *decodeState) reuse(data []byte) {
	if !st.keep {
		fresh := newDecodeState(data)
		*st = *fresh
		st.keep = true
		if st.names == nil {
			st.names = make(map[string]string, maxNames)
		}
		st.slab = maxSlab
	}
	if len(st.names) >= maxInterned {
		clear(st.names)
	}
	// A huge body's slabs are not kept for the ordinary ones after it.
	if len(st.tslabs) > maxKeptSlabs {
		clear(st.tslabs[maxKeptSlabs:])
		st.tslabs = st.tslabs[:maxKeptSlabs]
	}
	if len(st.fslabs) > maxKeptSlabs {
		clear(st.fslabs[maxKeptSlabs:])
		st.fslabs = st.fslabs[:maxKeptSlabs]
	}
	st.tags, st.fields = st.tags[:0], st.fields[:0]
	st.tslab, st.fslab = nil, nil
	st.nextT, st.nextF = 0, 0
	st.prevMeas, st.prevTagKeys, st.prevFieldKeys = st.prevMeas[:0], st.prevTagKeys[:0], st.prevFieldKeys[:0]
}

// maxKeptSlabs bounds what a Decoder keeps between calls: 64 slabs of 256
// tags and of 256 fields, about 1.3 MB, enough for a body of 5,000 lines.
const maxKeptSlabs = 64

// maxInterned bounds the intern table, so that a batch of unique values
// cannot grow it without limit.
const maxInterned = 4096

// intern returns a string equal to b, shared with earlier calls. The map is
// bounded so that a batch of unique values cannot grow it without limit.
func (st *decodeState) intern(b []byte) string {
	if st.names == nil {
		return string(b)
	}
	if s, ok := st.names[string(b)]; ok { // no allocation for the lookup
		return s
	}
	s := string(b)
	if len(st.names) < maxInterned {
		st.names[s] = s
	}
	return s
}

func (st *decodeState) carveTags(n int) []Tag {
	if n == 0 {
		return nil
	}
	if len(st.tslab) < n {
		st.tslab = nextSlab(st, &st.tslabs, &st.nextT, n)
	}
	out := st.tslab[:n:n]
	st.tslab = st.tslab[n:]
	return out
}

func (st *decodeState) carveFields(n int) []Field {
	if len(st.fslab) < n {
		st.fslab = nextSlab(st, &st.fslabs, &st.nextF, n)
	}
	out := st.fslab[:n:n]
	st.fslab = st.fslab[n:]
	return out
}

// nextSlab returns a slab of at least n elements: for a Decoder the next
// one made by an earlier call when it is large enough, else a new one
// (which a Decoder keeps for its next calls).
func nextSlab[T any](st *decodeState, slabs *[][]T, next *int, n int) []T {
	if !st.keep {
		return make([]T, max(st.slab, n))
	}
	for *next < len(*slabs) {
		s := (*slabs)[*next]
		*next++
		if len(s) >= n {
			return s
		}
	}
	s := make([]T, max(st.slab, n))
	*slabs = append(*slabs, s)
	*next = len(*slabs)
	return s
}

// decodeEntry reads one line. Errors from the library carry a position; the
// errors raised here (duplicate keys, timestamps out of range) are placed at
// column 1 of the entry's line.
func (st *decodeState) decodeEntry(dec *lineprotocol.Decoder, prec lineprotocol.Precision, now time.Time, data []byte, lines *lineCounter) (Point, *LineError) {
	var p Point
	st.tags, st.fields = st.tags[:0], st.fields[:0]
	m, err := dec.Measurement()
	if err != nil {
		le := asLineError(err)
		lines.last = le.Line
		return p, le
	}
	line := lines.entryLine(data, m)
	p.Measurement = st.intern(m)
	for {
		k, v, err := dec.NextTag()
		if err != nil {
			return p, asLineError(err)
		}
		if k == nil {
			break
		}
		st.tags = append(st.tags, Tag{Key: st.intern(k), Value: st.intern(v)})
	}
	for {
		k, v, err := dec.NextField()
		if err != nil {
			return p, asLineError(err)
		}
		if k == nil {
			break
		}
		var val Value
		switch v.Kind() {
		case lineprotocol.Float:
			val = Float(v.FloatV())
		case lineprotocol.Int:
			val = Int(v.IntV())
		case lineprotocol.Uint:
			val = Uint(v.UintV())
		case lineprotocol.Bool:
			val = Bool(v.BoolV())
		case lineprotocol.String:
			val = String(v.StringV())
		}
		st.fields = append(st.fields, Field{Key: st.intern(k), Value: val})
	}
	t, err := dec.Time(prec, now)
	if err != nil {
		le := asLineError(err)
		if le.Line == 0 {
			le.Line = line
		}
		return p, le
	}
	p.Time = t.UnixNano()
	p.Tags = st.carveTags(len(st.tags))
	copy(p.Tags, st.tags)
	p.Fields = st.carveFields(len(st.fields))
	copy(p.Fields, st.fields)
	// The library accepts tags in any order and repeated keys; the model
	// wants them sorted and unique.
	p.SortTags()
	if err := p.Validate(); err != nil {
		return p, &LineError{Line: line, Column: 1, Err: err}
	}
	return p, nil
}

func asLineError(err error) *LineError {
	var de *lineprotocol.DecodeError
	if errors.As(err, &de) {
		return &LineError{Line: int(de.Line), Column: de.Column, Err: de.Err}
	}
	return &LineError{Column: 1, Err: err}
}

// lineText returns the n-th (1-based) line of data, cut to 200 bytes.
func lineText(data []byte, n int) string {
	if n <= 0 {
		return ""
	}
	start := 0
	for i := 1; i < n; i++ {
		j := indexByte(data[start:], '\n')
		if j < 0 {
			return ""
		}
		start += j + 1
	}
	end := indexByte(data[start:], '\n')
	if end < 0 {
		end = len(data) - start
	}
	if end > 200 {
		end = 200
	}
	return string(data[start : start+end])
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// Encoder writes points as line protocol. The zero value writes nanosecond
// timestamps. An Encoder is not safe for concurrent use; reuse one to avoid
// allocations.
type Encoder struct {
	enc  lineprotocol.Encoder
	prec Precision
}

// SetPrecision sets the unit of the timestamps written. Timestamps are
// truncated toward zero to that unit.
func (e *Encoder) SetPrecision(p Precision) {
	e.prec = p
	e.enc.SetPrecision(p.lp())
}

// Reset clears the output, keeping the buffer's capacity.
func (e *Encoder) Reset() { e.enc.Reset() }

// Bytes returns the encoded lines; the slice is valid until the next call.
func (e *Encoder) Bytes() []byte { return e.enc.Bytes() }

// Encode appends one point. A point that cannot be written (no fields, an
// invalid key, NaN, a string that is not UTF-8) is left out and reported; the
// output keeps only complete lines.
func (e *Encoder) Encode(p *Point) error {
	if err := p.Validate(); err != nil {
		return err
	}
	start := len(e.enc.Bytes())
	e.enc.StartLine(p.Measurement)
	for _, t := range p.Tags {
		e.enc.AddTag(t.Key, t.Value)
	}
	for _, f := range p.Fields {
		var v lineprotocol.Value
		ok := true
		switch f.Value.kind {
		case KindFloat:
			v, ok = lineprotocol.FloatValue(f.Value.FloatV())
		case KindInt:
			v = lineprotocol.IntValue(f.Value.IntV())
		case KindUint:
			v = lineprotocol.UintValue(f.Value.UintV())
		case KindBool:
			v = lineprotocol.BoolValue(f.Value.BoolV())
		case KindString:
			v, ok = lineprotocol.StringValue(f.Value.StringV())
		}
		if !ok {
			e.truncate(start)
			return fmt.Errorf("point %q: field %q: value cannot be written as line protocol", p.Measurement, f.Key)
		}
		e.enc.AddField(f.Key, v)
	}
	e.enc.EndLine(time.Unix(0, p.Time))
	if err := e.enc.Err(); err != nil {
		e.truncate(start)
		return err
	}
	return nil
}

// truncate drops a partly written line: SetBuffer also clears the library
// encoder's error and section state so the next line starts clean.
func (e *Encoder) truncate(n int) {
	e.enc.SetBuffer(e.enc.Bytes()[:n])
}

// AppendLines encodes pts at precision prec, appending to dst. Points that
// cannot be encoded are skipped; the first such error is returned after the
// rest were written.
func AppendLines(dst []byte, pts []Point, prec Precision) ([]byte, error) {
	var e Encoder
	e.enc.SetBuffer(dst)
	e.SetPrecision(prec)
	var first error
	for i := range pts {
		if err := e.Encode(&pts[i]); err != nil && first == nil {
			first = fmt.Errorf("point %d: %w", i, err)
		}
	}
	return e.Bytes(), first
}
