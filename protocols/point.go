package protocols

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Kind is the type of a field value.
type Kind uint8

// The field kinds of line protocol.
const (
	KindInvalid Kind = iota
	KindFloat
	KindInt
	KindUint
	KindBool
	KindString
)

// String returns the kind's name as used in error messages and schemas.
func (k Kind) String() string {
	switch k {
	case KindFloat:
		return "float"
	case KindInt:
		return "int"
	case KindUint:
		return "uint"
	case KindBool:
		return "bool"
	case KindString:
		return "string"
	}
	return "invalid"
}

// ErrNotFinite is returned for float fields that are NaN or ±Inf.
var ErrNotFinite = errors.New("float value is NaN or infinite")

// Value is a typed field value. The zero Value is invalid.
type Value struct {
	kind Kind
	bits uint64 // float64 bits, int64, uint64 or bool (0/1)
	str  string
}

// Float returns a float Value. It does not check finiteness: NewPoint and
// Point.Validate do, so that the error can name the field.
func Float(f float64) Value { return Value{kind: KindFloat, bits: math.Float64bits(f)} }

// Int returns an integer Value.
func Int(i int64) Value { return Value{kind: KindInt, bits: uint64(i)} }

// Uint returns an unsigned integer Value.
func Uint(u uint64) Value { return Value{kind: KindUint, bits: u} }

// Bool returns a boolean Value.
func Bool(b bool) Value {
	v := Value{kind: KindBool}
	if b {
		v.bits = 1
	}
	return v
}

// String returns a string Value.
func String(s string) Value { return Value{kind: KindString, str: s} }

// Kind reports the value's type.
func (v Value) Kind() Kind { return v.kind }

// FloatV returns the float; it is only meaningful for KindFloat.
func (v Value) FloatV() float64 { return math.Float64frombits(v.bits) }

// IntV returns the integer; it is only meaningful for KindInt.
func (v Value) IntV() int64 { return int64(v.bits) }

// UintV returns the unsigned integer; it is only meaningful for KindUint.
func (v Value) UintV() uint64 { return v.bits }

// BoolV returns the boolean; it is only meaningful for KindBool.
func (v Value) BoolV() bool { return v.bits != 0 }

// StringV returns the string; it is only meaningful for KindString.
func (v Value) StringV() string { return v.str }

// AsFloat converts numeric and boolean values to float64 for aggregation.
// It reports false for strings and invalid values.
func (v Value) AsFloat() (float64, bool) {
	switch v.kind {
	case KindFloat:
		return v.FloatV(), true
	case KindInt:
		return float64(v.IntV()), true
	case KindUint:
		return float64(v.bits), true
	case KindBool:
		return float64(v.bits), true
	}
	return 0, false
}

// Equal reports whether two values have the same kind and the same content.
// Floats compare by bits, so equal NaNs are equal and 0 differs from -0.
func (v Value) Equal(o Value) bool { return v == o }

// String formats the value as line protocol would (with i/u suffixes and quotes).
func (v Value) String() string {
	switch v.kind {
	case KindFloat:
		return strconv.FormatFloat(v.FloatV(), 'g', -1, 64)
	case KindInt:
		return strconv.FormatInt(v.IntV(), 10) + "i"
	case KindUint:
		return strconv.FormatUint(v.bits, 10) + "u"
	case KindBool:
		return strconv.FormatBool(v.BoolV())
	case KindString:
		return strconv.Quote(v.str)
	}
	return "<invalid>"
}

// Tag is one key=value pair of a point's tag set.
type Tag struct {
	Key   string
	Value string
}

// Field is one named value of a point.
type Field struct {
	Key   string
	Value Value
}

// Point is one reading: measurement, tags sorted by key, fields and a time in
// nanoseconds since the Unix epoch.
type Point struct {
	Measurement string
	Tags        []Tag
	Fields      []Field
	Time        int64
}

// NewPoint builds a validated point. Tags may be given in any order; they are
// sorted. A map of tags is accepted for convenience at the edges.
func NewPoint(measurement string, tags map[string]string, fields []Field, timeNS int64) (Point, error) {
	p := Point{Measurement: measurement, Fields: fields, Time: timeNS}
	if len(tags) > 0 {
		p.Tags = make([]Tag, 0, len(tags))
		for k, v := range tags {
			p.Tags = append(p.Tags, Tag{Key: k, Value: v})
		}
	}
	p.SortTags()
	return p, p.Validate()
}

// SortTags sorts the tag set by key, as the model requires.
func (p *Point) SortTags() {
	slices.SortFunc(p.Tags, func(a, b Tag) int { return strings.Compare(a.Key, b.Key) })
}

// Validate checks the invariants the rest of the system relies on: a
// measurement, at least one field, sorted unique non-empty tag keys, unique
// field keys, valid kinds and finite floats.
func (p *Point) Validate() error {
	if p.Measurement == "" {
		return errors.New("point has no measurement")
	}
	if len(p.Fields) == 0 {
		return fmt.Errorf("point %q has no fields", p.Measurement)
	}
	for i, t := range p.Tags {
		if t.Key == "" {
			return fmt.Errorf("point %q: empty tag key", p.Measurement)
		}
		if i > 0 && p.Tags[i-1].Key >= t.Key {
			return fmt.Errorf("point %q: tag %q is duplicated or out of order", p.Measurement, t.Key)
		}
	}
	// Duplicate field keys: a pairwise scan for the usual handful of
	// fields, a set beyond that, so a hostile line with thousands of fields
	// costs linear time, not quadratic.
	var seen map[string]struct{}
	if len(p.Fields) > 32 {
		seen = make(map[string]struct{}, len(p.Fields))
	}
	for i, f := range p.Fields {
		if f.Key == "" {
			return fmt.Errorf("point %q: empty field key", p.Measurement)
		}
		if seen != nil {
			if _, dup := seen[f.Key]; dup {
				return fmt.Errorf("point %q: field %q is duplicated", p.Measurement, f.Key)
			}
			seen[f.Key] = struct{}{}
		} else {
			for _, g := range p.Fields[:i] {
				if g.Key == f.Key {
					return fmt.Errorf("point %q: field %q is duplicated", p.Measurement, f.Key)
				}
			}
		}
		switch f.Value.kind {
		case KindInvalid:
			return fmt.Errorf("point %q: field %q has no value", p.Measurement, f.Key)
		case KindFloat:
			if x := f.Value.FloatV(); math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("point %q: field %q: %w", p.Measurement, f.Key, ErrNotFinite)
			}
		}
	}
	return nil
}

// Tag returns the value of the tag with the given key and whether it exists.
func (p *Point) Tag(key string) (string, bool) {
	for _, t := range p.Tags {
		if t.Key == key {
			return t.Value, true
		}
	}
	return "", false
}

// SetTag sets or adds a tag, keeping the tag set sorted.
func (p *Point) SetTag(key, value string) {
	i, found := slices.BinarySearchFunc(p.Tags, key, func(t Tag, k string) int { return strings.Compare(t.Key, k) })
	if found {
		p.Tags[i].Value = value
		return
	}
	p.Tags = slices.Insert(p.Tags, i, Tag{Key: key, Value: value})
}

// Field returns the value of the named field and whether it exists.
func (p *Point) Field(key string) (Value, bool) {
	for _, f := range p.Fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return Value{}, false
}

// Clone returns a deep copy whose tag and field slices can be changed freely.
func (p Point) Clone() Point {
	p.Tags = slices.Clone(p.Tags)
	p.Fields = slices.Clone(p.Fields)
	return p
}

// SeriesKey returns the canonical name of one series of p: the measurement and
// tag set as line protocol escapes them, a space, and the escaped field key,
// e.g. `air,district=north,station=s0001 pm25`. The form is unambiguous, sorts
// series of one measurement together and is readable in logs.
func (p *Point) SeriesKey(field string) string {
	return string(p.AppendSeriesKey(nil, field))
}

// AppendSeriesKey appends SeriesKey(field) to dst without allocating a string.
func (p *Point) AppendSeriesKey(dst []byte, field string) []byte {
	dst = appendEscaped(dst, p.Measurement, measurementEscapes)
	for _, t := range p.Tags {
		dst = append(dst, ',')
		dst = appendEscaped(dst, t.Key, keyEscapes)
		dst = append(dst, '=')
		dst = appendEscaped(dst, t.Value, keyEscapes)
	}
	dst = append(dst, ' ')
	return appendEscaped(dst, field, keyEscapes)
}

const (
	measurementEscapes = ", "
	keyEscapes         = ",= "
)

func appendEscaped(dst []byte, s, special string) []byte {
	if !strings.ContainsAny(s, special+"\\") {
		return append(dst, s...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' || strings.IndexByte(special, c) >= 0 {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return dst
}

// ParseSeriesKey splits a key made by SeriesKey back into measurement, sorted
// tags and field.
func ParseSeriesKey(key string) (measurement string, tags []Tag, field string, err error) {
	var parts []string // unescaped pieces, with separators recorded in seps
	var seps []byte
	var cur []byte
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '\\' && i+1 < len(key):
			i++
			cur = append(cur, key[i])
		case c == ',' || c == '=' || c == ' ':
			parts = append(parts, string(cur))
			seps = append(seps, c)
			cur = cur[:0]
		default:
			cur = append(cur, c)
		}
	}
	parts = append(parts, string(cur))
	// Expected shape: m (',' k '=' v)* ' ' f
	if len(parts) < 2 || seps[len(seps)-1] != ' ' || parts[0] == "" {
		return "", nil, "", fmt.Errorf("series key %q: want measurement[,tag=value...] field", key)
	}
	measurement = parts[0]
	field = parts[len(parts)-1]
	for i := 1; i+1 < len(parts); i += 2 {
		if seps[i-1] != ',' || seps[i] != '=' {
			return "", nil, "", fmt.Errorf("series key %q: malformed tag set", key)
		}
		tags = append(tags, Tag{Key: parts[i], Value: parts[i+1]})
	}
	if len(parts)%2 != 0 {
		return "", nil, "", fmt.Errorf("series key %q: malformed tag set", key)
	}
	return measurement, tags, field, nil
}

// Batch is the unit the agent buffers and forwards: points plus the id that
// follows it through logs and metrics on both sides (`<agent-id>-<batch-seq>`).
type Batch struct {
	ID     string
	Points []Point
}
