package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/citysense/citysense/protocols"
)

// Payload formats.
const (
	FormatJSON     = "json"
	FormatLine     = "line"     // Influx line protocol
	FormatValue    = "value"    // a bare number, boolean or string
	FormatTemplate = "template" // a value template such as "{temperature};{humidity}"
)

// envelope is what the topic and the configuration contribute to every
// point of one message.
type envelope struct {
	measurement string
	field       string // the value format's field name
	topic       string
	tags        []protocols.Tag
	now         int64 // receive time, for payloads without a timestamp
}

// parser turns one payload into points appended to dst. On error it may
// still have appended the points it could read (line protocol does). A parser
// is used by one goroutine at a time.
type parser interface {
	parse(dst []protocols.Point, payload []byte, env *envelope, a *alloc) ([]protocols.Point, error)
}

// alloc carves tag and field slices for points out of shared slabs with
// capped capacity, so each point owns its slices (appending to one cannot
// overwrite another) while a batch costs a few allocations, not one per
// point. It also interns names that repeat from message to message.
type alloc struct {
	tags   []protocols.Tag
	fields []protocols.Field
	names  map[string]string
}

const slabSize = 512

func (a *alloc) carveTags(n int) []protocols.Tag {
	if n == 0 {
		return nil
	}
	if len(a.tags) < n {
		a.tags = make([]protocols.Tag, max(slabSize, n))
	}
	out := a.tags[:n:n]
	a.tags = a.tags[n:]
	return out
}

func (a *alloc) carveFields(n int) []protocols.Field {
	if len(a.fields) < n {
		a.fields = make([]protocols.Field, max(slabSize, n))
	}
	out := a.fields[:n:n]
	a.fields = a.fields[n:]
	return out
}

// intern returns a string equal to b, shared with earlier calls; the table
// is bounded so unique keys cannot grow it without limit.
func (a *alloc) intern(b []byte) string {
	if s, ok := a.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if a.names == nil {
		a.names = make(map[string]string, 64)
	}
	if len(a.names) < 4096 {
		a.names[s] = s
	}
	return s
}

// point builds a point from env's tags plus extra tags and the fields,
// copying both into carved slices, and validates it.
func (a *alloc) point(measurement string, env *envelope, extra []protocols.Tag, fields []protocols.Field, ts int64) (protocols.Point, error) {
	p := protocols.Point{Measurement: measurement, Time: ts}
	p.Tags = a.carveTags(len(env.tags) + len(extra))
	copy(p.Tags, env.tags)
	if len(extra) > 0 {
		copy(p.Tags[len(env.tags):], extra)
		p.SortTags()
	}
	p.Fields = a.carveFields(len(fields))
	copy(p.Fields, fields)
	return p, p.Validate()
}

// Time formats of a JSON timestamp.
const (
	TimeUnix    = "unix" // seconds, may have a fraction
	TimeUnixMS  = "unix_ms"
	TimeUnixUS  = "unix_us"
	TimeUnixNS  = "unix_ns"
	TimeRFC3339 = "rfc3339"
)

// jsonParser maps a JSON object (or an array of objects, one point each) to
// points. Keys of nested objects are joined with "_" (and array elements by
// their index), so {"a":{"b":1},"v":[2,3]} has the fields a_b, v_0 and v_1.
// Without a field list, every number and boolean becomes a field; a field
// list selects flattened names (written as paths, a.b) and may select
// strings too.
type jsonParser struct {
	fields     map[string]struct{} // flattened names; nil: every number and bool
	tagNames   map[string]struct{} // flattened names that become tags
	timeName   string              // flattened name of the timestamp
	timeFormat string

	p       fastjson.Parser
	key     []byte
	scratch []protocols.Field
	tagsBuf []protocols.Tag
	err     error
}

// flatName turns a path written with dots into the flattened field name.
func flatName(path string) string { return strings.ReplaceAll(path, ".", "_") }

func newJSONParser(o JSONOptions) *jsonParser {
	jp := &jsonParser{timeName: flatName(o.TimePath), timeFormat: o.TimeFormat}
	if jp.timeFormat == "" {
		jp.timeFormat = TimeUnix
	}
	if len(o.Fields) > 0 {
		jp.fields = make(map[string]struct{}, len(o.Fields))
		for _, f := range o.Fields {
			jp.fields[flatName(f)] = struct{}{}
		}
	}
	if len(o.Tags) > 0 {
		jp.tagNames = make(map[string]struct{}, len(o.Tags))
		for _, t := range o.Tags {
			jp.tagNames[flatName(t)] = struct{}{}
		}
	}
	return jp
}

// errNoFields is returned for a JSON object that yields no field at all.
var errNoFields = errors.New("no fields in payload")

func (jp *jsonParser) parse(dst []protocols.Point, payload []byte, env *envelope, a *alloc) ([]protocols.Point, error) {
	v, err := jp.p.ParseBytes(payload)
	if err != nil {
		return dst, fmt.Errorf("json: %w", err)
	}
	switch v.Type() {
	case fastjson.TypeObject:
		p, err := jp.object(v, env, a)
		if err != nil {
			return dst, err
		}
		return append(dst, p), nil
	case fastjson.TypeArray:
		arr, _ := v.Array()
		for i, e := range arr {
			if e.Type() != fastjson.TypeObject {
				return dst, fmt.Errorf("json: element %d is %s, want an object", i, e.Type())
			}
			p, err := jp.object(e, env, a)
			if err != nil {
				return dst, fmt.Errorf("json: element %d: %w", i, err)
			}
			dst = append(dst, p)
		}
		return dst, nil
	}
	return dst, fmt.Errorf("json: payload is %s, want an object or an array of objects", v.Type())
}

// object turns one JSON object into one point.
func (jp *jsonParser) object(v *fastjson.Value, env *envelope, a *alloc) (protocols.Point, error) {
	jp.scratch, jp.tagsBuf, jp.err = jp.scratch[:0], jp.tagsBuf[:0], nil
	ts := env.now
	var haveTime bool
	var walk func(v *fastjson.Value)
	walk = func(v *fastjson.Value) {
		name := jp.key
		switch v.Type() {
		case fastjson.TypeObject:
			o, _ := v.Object()
			n := len(jp.key)
			o.Visit(func(k []byte, c *fastjson.Value) {
				if n > 0 {
					jp.key = append(jp.key[:n], '_')
				}
				jp.key = append(jp.key, k...)
				walk(c)
				jp.key = jp.key[:n]
			})
			return
		case fastjson.TypeArray:
			arr, _ := v.Array()
			n := len(jp.key)
			for i, c := range arr {
				if n > 0 {
					jp.key = append(jp.key[:n], '_')
				}
				jp.key = strconv.AppendInt(jp.key, int64(i), 10)
				walk(c)
				jp.key = jp.key[:n]
			}
			return
		case fastjson.TypeNull:
			return
		}
		if jp.timeName != "" && string(name) == jp.timeName {
			t, err := parseTime(v, jp.timeFormat)
			if err != nil && jp.err == nil {
				jp.err = fmt.Errorf("json: %s: %w", jp.timeName, err)
			}
			ts, haveTime = t, true
			return
		}
		if jp.tagNames != nil {
			if _, ok := jp.tagNames[string(name)]; ok {
				var val string
				if v.Type() == fastjson.TypeString {
					val = a.intern(v.GetStringBytes())
				} else {
					val = a.intern(v.MarshalTo(nil))
				}
				if val != "" {
					jp.tagsBuf = append(jp.tagsBuf, protocols.Tag{Key: a.intern(name), Value: val})
				}
				return
			}
		}
		selected := true
		if jp.fields != nil {
			_, selected = jp.fields[string(name)]
		}
		if !selected {
			return
		}
		var val protocols.Value
		switch v.Type() {
		case fastjson.TypeNumber:
			f := v.GetFloat64()
			if math.IsInf(f, 0) || math.IsNaN(f) {
				if jp.err == nil {
					jp.err = fmt.Errorf("json: %s: %w", name, protocols.ErrNotFinite)
				}
				return
			}
			val = protocols.Float(f)
		case fastjson.TypeTrue:
			val = protocols.Bool(true)
		case fastjson.TypeFalse:
			val = protocols.Bool(false)
		case fastjson.TypeString:
			if jp.fields == nil {
				return // strings only when asked for by name
			}
			val = protocols.String(string(v.GetStringBytes()))
		default:
			return
		}
		jp.scratch = append(jp.scratch, protocols.Field{Key: a.intern(name), Value: val})
	}
	jp.key = jp.key[:0]
	walk(v)
	if jp.err != nil {
		return protocols.Point{}, jp.err
	}
	if jp.timeName != "" && !haveTime {
		return protocols.Point{}, fmt.Errorf("json: no timestamp at %q", jp.timeName)
	}
	if len(jp.scratch) == 0 {
		return protocols.Point{}, errNoFields
	}
	return a.point(env.measurement, env, jp.tagsBuf, jp.scratch, ts)
}

// parseTime reads a JSON timestamp in the given format.
func parseTime(v *fastjson.Value, format string) (int64, error) {
	switch format {
	case TimeUnix, TimeUnixMS, TimeUnixUS, TimeUnixNS:
		var s []byte
		switch v.Type() {
		case fastjson.TypeNumber:
			s = v.MarshalTo(nil)
		case fastjson.TypeString:
			s = v.GetStringBytes()
		default:
			return 0, fmt.Errorf("timestamp is %s, want a number", v.Type())
		}
		return parseUnix(string(s), format)
	}
	if v.Type() != fastjson.TypeString {
		return 0, fmt.Errorf("timestamp is %s, want a string in format %s", v.Type(), format)
	}
	layout := format
	if format == TimeRFC3339 {
		layout = time.RFC3339Nano
	}
	t, err := time.Parse(layout, string(v.GetStringBytes()))
	if err != nil {
		return 0, err
	}
	return t.UnixNano(), nil
}

// unixScale is nanoseconds per unit of each Unix format.
var unixScale = map[string]int64{TimeUnix: 1e9, TimeUnixMS: 1e6, TimeUnixUS: 1e3, TimeUnixNS: 1}

// parseUnix reads an integer or decimal Unix time exactly: integers as
// integers (a float64 cannot hold nanoseconds since 1970), fractions by
// their digits.
func parseUnix(s, format string) (int64, error) {
	scale := unixScale[format]
	whole, frac, hasFrac := strings.Cut(s, ".")
	if strings.ContainsAny(s, "eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.Abs(f*float64(scale)) > math.MaxInt64 {
			return 0, fmt.Errorf("invalid %s timestamp %q", format, s)
		}
		return int64(math.Round(f * float64(scale))), nil
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > math.MaxInt64/scale || w < math.MinInt64/scale {
		return 0, fmt.Errorf("invalid %s timestamp %q", format, s)
	}
	ns := w * scale
	if hasFrac {
		var f int64
		digits := 0
		for i := 0; i < len(frac); i++ {
			c := frac[i]
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("invalid %s timestamp %q", format, s)
			}
			if unit := scale / pow10(digits+1); unit > 0 {
				f += int64(c-'0') * unit
			}
			digits++
		}
		if strings.HasPrefix(whole, "-") {
			ns -= f
		} else {
			ns += f
		}
	}
	return ns, nil
}

func pow10(n int) int64 {
	p := int64(1)
	for range n {
		if p > math.MaxInt64/10 {
			return math.MaxInt64
		}
		p *= 10
	}
	return p
}

// Data types of the value format.
const (
	TypeFloat  = "float"
	TypeInt    = "int"
	TypeUint   = "uint"
	TypeBool   = "bool"
	TypeString = "string"
)

// valueParser reads a payload that is one bare value.
type valueParser struct {
	dataType string
	field    [1]protocols.Field
}

func parseValue(s, dataType string) (protocols.Value, error) {
	switch dataType {
	case TypeInt:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return protocols.Value{}, fmt.Errorf("value %q is not an int", trunc(s))
		}
		return protocols.Int(i), nil
	case TypeUint:
		u, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return protocols.Value{}, fmt.Errorf("value %q is not a uint", trunc(s))
		}
		return protocols.Uint(u), nil
	case TypeBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return protocols.Value{}, fmt.Errorf("value %q is not a bool", trunc(s))
		}
		return protocols.Bool(b), nil
	case TypeString:
		return protocols.String(s), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return protocols.Value{}, fmt.Errorf("value %q is not a finite number", trunc(s))
	}
	return protocols.Float(f), nil
}

func (vp *valueParser) parse(dst []protocols.Point, payload []byte, env *envelope, a *alloc) ([]protocols.Point, error) {
	v, err := parseValue(string(bytes.TrimSpace(payload)), vp.dataType)
	if err != nil {
		return dst, err
	}
	vp.field[0] = protocols.Field{Key: env.field, Value: v}
	p, err := a.point(env.measurement, env, nil, vp.field[:], env.now)
	if err != nil {
		return dst, err
	}
	return append(dst, p), nil
}

// lineParser reads Influx line protocol; the topic's tags are added to each
// point unless the line has a tag of the same key.
type lineParser struct {
	precision protocols.Precision
}

func (lp *lineParser) parse(dst []protocols.Point, payload []byte, env *envelope, _ *alloc) ([]protocols.Point, error) {
	err := protocols.Decode(payload, protocols.DecodeOptions{Precision: lp.precision, Now: time.Unix(0, env.now)}, func(p protocols.Point) error {
		for _, t := range env.tags {
			if _, ok := p.Tag(t.Key); !ok {
				p.SetTag(t.Key, t.Value)
			}
		}
		dst = append(dst, p)
		return nil
	})
	return dst, err
}

// ValueTemplate reads fields out of a payload of text: in
// "{temperature};{humidity}" each {name} captures the text up to the literal
// that follows it (or the end). Captured text is a float field when it
// parses as a number, a bool field for true/false, otherwise a string field;
// {_} skips a part.
type ValueTemplate struct {
	prefix string
	parts  []tmplPart
}

type tmplPart struct {
	name   string // "" for {_}
	suffix string // literal that ends the capture; "" only for the last part
}

// ParseValueTemplate compiles a value template.
func ParseValueTemplate(s string) (*ValueTemplate, error) {
	vt := &ValueTemplate{}
	rest := s
	i := strings.IndexByte(rest, '{')
	if i < 0 {
		return nil, errors.New("no {name} placeholder")
	}
	vt.prefix, rest = rest[:i], rest[i:]
	seen := map[string]bool{}
	for rest != "" {
		if rest[0] != '{' {
			return nil, fmt.Errorf("unexpected %q", trunc(rest))
		}
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			return nil, errors.New("unclosed {")
		}
		name := rest[1:j]
		if strings.ContainsAny(name, "{") {
			return nil, errors.New("nested {")
		}
		rest = rest[j+1:]
		k := strings.IndexByte(rest, '{')
		if k < 0 {
			k = len(rest)
		}
		suffix := rest[:k]
		rest = rest[k:]
		if strings.ContainsRune(suffix, '}') {
			return nil, errors.New("unmatched }")
		}
		if suffix == "" && rest != "" {
			return nil, fmt.Errorf("{%s} is followed directly by another placeholder; put a separator between them", name)
		}
		switch {
		case name == "" || name == levelSkip:
			name = ""
		case seen[name]:
			return nil, fmt.Errorf("{%s} appears twice", name)
		}
		seen[name] = true
		vt.parts = append(vt.parts, tmplPart{name: name, suffix: suffix})
	}
	if len(seen) == 0 || (len(seen) == 1 && seen[""]) {
		return nil, errors.New("no named placeholder")
	}
	return vt, nil
}

// Fields appends the fields read from text to dst.
func (vt *ValueTemplate) Fields(dst []protocols.Field, text string, a *alloc) ([]protocols.Field, error) {
	rest, ok := strings.CutPrefix(text, vt.prefix)
	if !ok {
		return dst, fmt.Errorf("payload %q does not start with %q", trunc(text), vt.prefix)
	}
	for i, p := range vt.parts {
		var val string
		if p.suffix == "" {
			val, rest = rest, ""
		} else {
			j := strings.Index(rest, p.suffix)
			if j < 0 {
				return dst, fmt.Errorf("payload %q: no %q after {%s}", trunc(text), p.suffix, p.name)
			}
			val, rest = rest[:j], rest[j+len(p.suffix):]
			if i == len(vt.parts)-1 && rest != "" {
				return dst, fmt.Errorf("payload %q: unexpected text %q at the end", trunc(text), trunc(rest))
			}
		}
		if p.name == "" {
			continue
		}
		val = strings.TrimSpace(val)
		var v protocols.Value
		if f, err := strconv.ParseFloat(val, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			v = protocols.Float(f)
		} else if b, err := strconv.ParseBool(val); err == nil && (val == "true" || val == "false") {
			v = protocols.Bool(b)
		} else {
			v = protocols.String(strings.Clone(val))
		}
		dst = append(dst, protocols.Field{Key: a.intern([]byte(p.name)), Value: v})
	}
	return dst, nil
}

type templateParser struct {
	vt      *ValueTemplate
	scratch []protocols.Field
}

func (tp *templateParser) parse(dst []protocols.Point, payload []byte, env *envelope, a *alloc) ([]protocols.Point, error) {
	var err error
	tp.scratch, err = tp.vt.Fields(tp.scratch[:0], string(payload), a)
	if err != nil {
		return dst, err
	}
	p, err := a.point(env.measurement, env, nil, tp.scratch, env.now)
	if err != nil {
		return dst, err
	}
	return append(dst, p), nil
}

// trunc shortens text quoted in error messages.
func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
