package process

import (
	"math"
	"sort"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/protocols"
)

// filterConfig is the YAML block of a filter stage.
type filterConfig struct {
	Include selectConfig `yaml:"include"`
	Exclude selectConfig `yaml:"exclude"`
	// Range keeps a numeric field only inside [min, max] of every pattern
	// that matches its name; .inf and -.inf leave a side open.
	Range         map[string][]float64 `yaml:"range"`
	DropNonFinite *bool                `yaml:"drop_non_finite"` // default true
}

type selectConfig struct {
	Measurement []string            `yaml:"measurement"`
	Tags        map[string][]string `yaml:"tags"`
	Fields      []string            `yaml:"fields"`
}

type tagCond struct {
	key string
	m   matcher
}

type fieldRange struct {
	g        glob
	min, max float64
}

// filter drops points by measurement and tags and fields by name, value
// range and finiteness. A point left without fields is dropped.
type filter struct {
	inMeasurement, exMeasurement matcher
	inTags, exTags               []tagCond
	inFields, exFields           matcher
	ranges                       []fieldRange
	dropNonFinite                bool

	filtered, outOfRange, nonFinite *metrics.Counter
}

func buildFilter(b *builder) Stage {
	var cfg filterConfig
	if !b.decode(&cfg) {
		return nil
	}
	f := &filter{
		inMeasurement: b.globs("include.measurement", cfg.Include.Measurement, matchAll),
		exMeasurement: b.globs("exclude.measurement", cfg.Exclude.Measurement, matcher{}),
		inFields:      b.globs("include.fields", cfg.Include.Fields, matchAll),
		exFields:      b.globs("exclude.fields", cfg.Exclude.Fields, matcher{}),
		inTags:        tagConds(b, "include.tags", cfg.Include.Tags),
		exTags:        tagConds(b, "exclude.tags", cfg.Exclude.Tags),
		dropNonFinite: cfg.DropNonFinite == nil || *cfg.DropNonFinite,
		filtered:      b.dropped("filtered"),
		outOfRange:    b.dropped("out_of_range"),
		nonFinite:     b.dropped("non_finite"),
	}
	// An empty include list would silently drop everything, which is never
	// what a configuration means.
	if cfg.Include.Measurement != nil && len(cfg.Include.Measurement) == 0 {
		b.errorf("include.measurement", "an empty list drops every point; leave the key out to keep all")
	}
	if cfg.Include.Fields != nil && len(cfg.Include.Fields) == 0 {
		b.errorf("include.fields", "an empty list drops every field; leave the key out to keep all")
	}
	patterns := make([]string, 0, len(cfg.Range))
	for p := range cfg.Range {
		patterns = append(patterns, p)
	}
	sort.Strings(patterns)
	for _, p := range patterns {
		key := "range." + p
		g, err := compileGlob(p)
		if err != nil {
			b.errorf(key, "bad pattern %q: %v", p, err)
			continue
		}
		r := cfg.Range[p]
		if len(r) != 2 || math.IsNaN(r[0]) || math.IsNaN(r[1]) || r[0] > r[1] {
			b.errorf(key, "want [min, max] with min <= max (.inf or -.inf for an open side), got %v", r)
			continue
		}
		f.ranges = append(f.ranges, fieldRange{g: g, min: r[0], max: r[1]})
	}
	return f
}

func tagConds(b *builder, key string, tags map[string][]string) []tagCond {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []tagCond
	for _, k := range keys {
		if len(tags[k]) == 0 {
			b.errorf(key+"."+k, "want a list of patterns for the values of tag %q", k)
			continue
		}
		out = append(out, tagCond{key: k, m: b.globs(key+"."+k, tags[k], matcher{})})
	}
	return out
}

// Process keeps a point when its measurement is included and not excluded,
// it has every tag of include.tags with a matching value and no tag of
// exclude.tags matches; then it keeps each field that passes the name,
// finiteness and range checks.
func (f *filter) Process(_ time.Time, pts []protocols.Point) []protocols.Point {
	var filtered, outOfRange, nonFinite int
	out := pts[:0]
	for i := range pts {
		p := &pts[i]
		if !f.keepPoint(p) {
			filtered += len(p.Fields)
			continue
		}
		kept := p.Fields[:0]
		for _, fl := range p.Fields {
			if !f.inFields.match(fl.Key) || f.exFields.match(fl.Key) {
				filtered++
				continue
			}
			if fl.Value.Kind() == protocols.KindFloat && !finite(fl.Value.FloatV()) {
				// A range cannot judge NaN, so a kept non-finite value
				// skips the range check.
				if f.dropNonFinite {
					nonFinite++
					continue
				}
			} else if len(f.ranges) > 0 && !f.inRange(fl) {
				outOfRange++
				continue
			}
			kept = append(kept, fl)
		}
		clear(p.Fields[len(kept):]) // drop references to removed strings
		p.Fields = kept
		if len(kept) > 0 {
			out = append(out, *p)
		}
	}
	clear(pts[len(out):])
	f.filtered.Add(filtered)
	f.outOfRange.Add(outOfRange)
	f.nonFinite.Add(nonFinite)
	return out
}

func (f *filter) keepPoint(p *protocols.Point) bool {
	if !f.inMeasurement.match(p.Measurement) || f.exMeasurement.match(p.Measurement) {
		return false
	}
	for i := range f.inTags {
		v, ok := p.Tag(f.inTags[i].key)
		if !ok || !f.inTags[i].m.match(v) {
			return false
		}
	}
	for i := range f.exTags {
		if v, ok := p.Tag(f.exTags[i].key); ok && f.exTags[i].m.match(v) {
			return false
		}
	}
	return true
}

func (f *filter) inRange(fl protocols.Field) bool {
	x, ok := numeric(fl.Value)
	if !ok {
		return true
	}
	for i := range f.ranges {
		r := &f.ranges[i]
		if r.g.match(fl.Key) && (x < r.min || x > r.max) {
			return false
		}
	}
	return true
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Interface guards.
var _ Stage = (*filter)(nil)
