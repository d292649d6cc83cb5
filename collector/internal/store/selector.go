package store

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/citysense/citysense/protocols"
)

// MatchOp is how a Matcher compares a tag value.
type MatchOp uint8

// The match operators, as in PromQL.
const (
	MatchEqual     MatchOp = iota // =
	MatchNotEqual                 // !=
	MatchRegexp                   // =~, anchored at both ends
	MatchNotRegexp                // !~
)

func (op MatchOp) String() string {
	switch op {
	case MatchEqual:
		return "="
	case MatchNotEqual:
		return "!="
	case MatchRegexp:
		return "=~"
	case MatchNotRegexp:
		return "!~"
	}
	return "?"
}

// Matcher selects series by one tag. A series without the tag has the
// empty value for it, so `owner!="x"` matches it and `owner=""` selects the
// series that lack the tag.
type Matcher struct {
	Name  string
	Op    MatchOp
	Value string
	re    *regexp.Regexp
}

// NewMatcher returns a matcher, compiling the regular expression of =~ and
// !~ (RE2 syntax, anchored: "d0[12]" matches d01 and d02, not d011).
func NewMatcher(name string, op MatchOp, value string) (Matcher, error) {
	m := Matcher{Name: name, Op: op, Value: value}
	if name == "" {
		return m, errors.New("matcher: empty tag name")
	}
	switch op {
	case MatchEqual, MatchNotEqual:
	case MatchRegexp, MatchNotRegexp:
		re, err := regexp.Compile("^(?:" + value + ")$")
		if err != nil {
			return m, fmt.Errorf("matcher %s%s%q: %w", name, op, value, err)
		}
		m.re = re
	default:
		return m, fmt.Errorf("matcher %s: unknown operator %d", name, op)
	}
	return m, nil
}

// MustMatcher is NewMatcher for values known to be valid, as in tests.
func MustMatcher(name string, op MatchOp, value string) Matcher {
	m, err := NewMatcher(name, op, value)
	if err != nil {
		panic(err)
	}
	return m
}

// Matches reports whether a tag value (empty when the tag is absent)
// satisfies m.
func (m Matcher) Matches(v string) bool {
	switch m.Op {
	case MatchEqual:
		return v == m.Value
	case MatchNotEqual:
		return v != m.Value
	case MatchRegexp:
		return m.regexp().MatchString(v)
	case MatchNotRegexp:
		return !m.regexp().MatchString(v)
	}
	return false
}

// regexp compiles lazily for matchers built as struct literals.
func (m Matcher) regexp() *regexp.Regexp {
	if m.re != nil {
		return m.re
	}
	re, err := regexp.Compile("^(?:" + m.Value + ")$")
	if err != nil {
		return regexp.MustCompile(`^\b$`) // matches nothing
	}
	return re
}

func (m Matcher) String() string { return m.Name + m.Op.String() + fmt.Sprintf("%q", m.Value) }

// Selector picks series.
type Selector struct {
	// Measurement may be empty when Field exists in one measurement only.
	Measurement string
	// Field is required.
	Field string
	// Tags must all be present with exactly these values (a shorthand for
	// MatchEqual matchers).
	Tags map[string]string
	// Matchers must all match.
	Matchers []Matcher
	// MaxPoints bounds Select's answer: more matching points make it fail
	// with ErrTooManyPoints. Zero means no bound.
	MaxPoints int
	// MaxSeries bounds Lookup: more matching series make it fail with
	// ErrTooManySeries. Zero means no bound.
	MaxSeries int
}

// matchers returns Tags and Matchers as one list, equality first since
// those can use the postings.
func (sel *Selector) matchers() []Matcher {
	out := make([]Matcher, 0, len(sel.Tags)+len(sel.Matchers))
	for k, v := range sel.Tags {
		out = append(out, Matcher{Name: k, Op: MatchEqual, Value: v})
	}
	out = append(out, sel.Matchers...)
	return out
}

// SeriesRef names one stored series; Lookup returns them and the read
// methods take them.
type SeriesRef struct {
	id          uint32
	gid         uint32
	Measurement string
	Field       string
	Tags        []protocols.Tag // sorted by key
}

// Tag returns the value of tag k, empty when the series lacks it.
func (r *SeriesRef) Tag(k string) string {
	for _, t := range r.Tags {
		if t.Key == k {
			return t.Value
		}
	}
	return ""
}

// Key is the series key, as protocols.Point.SeriesKey writes it.
func (r *SeriesRef) Key() string {
	p := protocols.Point{Measurement: r.Measurement, Tags: r.Tags}
	return p.SeriesKey(r.Field)
}

func tagsMatch(tags []protocols.Tag, ms []Matcher) bool {
	for _, m := range ms {
		v := ""
		for _, t := range tags {
			if t.Key == m.Name {
				v = t.Value
				break
			}
		}
		if !m.Matches(v) {
			return false
		}
	}
	return true
}

// AmbiguousFieldError names the measurements that share a field.
type AmbiguousFieldError struct {
	Field        string
	Measurements []string // sorted
}

func (e *AmbiguousFieldError) Error() string {
	return fmt.Sprintf("field %q exists in measurements %s; name one with measurement=", e.Field, strings.Join(e.Measurements, ", "))
}

// Unwrap makes errors.Is(err, ErrAmbiguousField) true.
func (e *AmbiguousFieldError) Unwrap() error { return ErrAmbiguousField }

// SeriesKey names a series by its parts, as another node knows it: without
// the store's ids.
type SeriesKey struct {
	Measurement string
	Field       string
	Tags        []protocols.Tag // sorted by key
}

// Resolve returns the store's refs of keys, position for position: a key
// the store holds no series of gets the zero SeriesRef (empty
// Measurement), which callers must leave out of reads. It costs one map
// lookup per key, for readers that learnt the series elsewhere (the
// cluster's fan-out).
func (s *Store) Resolve(keys []SeriesKey) []SeriesRef {
	out := make([]SeriesRef, len(keys))
	if s.closed.Load() {
		return out
	}
	var buf []byte
	ix := s.ix
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for i, k := range keys {
		p := protocols.Point{Measurement: k.Measurement, Tags: k.Tags}
		buf = appendSetKey(buf[:0], &p)
		ts := ix.sets[string(buf)]
		if ts == nil {
			continue
		}
		for _, f := range ts.fields {
			if f.field == k.Field {
				g := ix.groups[f.gid]
				out[i] = SeriesRef{id: f.id, gid: f.gid, Measurement: g.measurement, Field: g.field, Tags: ix.series[f.id].tags}
				break
			}
		}
	}
	return out
}
