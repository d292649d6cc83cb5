package process

import (
	"time"

	"github.com/VictoriaMetrics/metrics"
	"gopkg.in/yaml.v3"

	"github.com/citysense/citysense/protocols"
)

// scaleConfig is the YAML block of a scale stage. Fields is kept as a node
// so that its patterns are tried in the order written.
type scaleConfig struct {
	Measurement []string  `yaml:"measurement"` // default: all
	Fields      yaml.Node `yaml:"fields"`      // pattern: {factor, offset, rename}
}

type scaleRuleConfig struct {
	Factor *float64 `yaml:"factor"` // default 1
	Offset float64  `yaml:"offset"`
	Rename string   `yaml:"rename"` // new field name; only for a literal pattern
}

type scaleRule struct {
	g              glob
	factor, offset float64
	identity       bool // factor 1, offset 0: a pure rename keeps the value's type
	rename         string
}

// scale converts units: value × factor + offset for numeric fields, by the
// first pattern that matches the field's name. Integers become floats,
// unless the rule only renames. A renamed field replaces a field that
// already had its new name.
type scale struct {
	measurement matcher
	rules       []scaleRule
	marks, drop markSet

	nonFinite, collision *metrics.Counter
}

func buildScale(b *builder) Stage {
	var cfg scaleConfig
	if !b.decode(&cfg) {
		return nil
	}
	s := &scale{
		measurement: b.globs("measurement", cfg.Measurement, matchAll),
		nonFinite:   b.dropped("non_finite"),
		collision:   b.dropped("collision"),
	}
	n := &cfg.Fields
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		b.errorf("fields", "want a mapping of field patterns to {factor, offset, rename}, e.g. {power_w: {factor: 0.001, rename: power_kw}}")
		return s
	}
	targets := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		pattern, body := n.Content[i].Value, n.Content[i+1]
		key := "fields." + pattern
		var rc scaleRuleConfig
		if !b.decodeNode(body, b.path+"."+key, &rc) {
			continue
		}
		g, err := compileGlob(pattern)
		if err != nil {
			b.errorf(key, "bad pattern %q: %v", pattern, err)
			continue
		}
		r := scaleRule{g: g, factor: 1, offset: rc.Offset, rename: rc.Rename}
		if rc.Factor != nil {
			r.factor = *rc.Factor
		}
		if r.factor == 0 || !finite(r.factor) || !finite(r.offset) {
			b.errorf(key, "factor must be finite and not 0, offset finite; got factor %v, offset %v", r.factor, r.offset)
		}
		r.identity = r.factor == 1 && r.offset == 0
		if r.rename != "" {
			switch {
			case g.kind != globLiteral:
				b.errorf(key+".rename", "needs a literal field name, not the pattern %q: every match would get the same name", pattern)
			case targets[r.rename] != "":
				b.errorf(key+".rename", "%q and %q both become %q", targets[r.rename], pattern, r.rename)
			}
			targets[r.rename] = pattern
		}
		s.rules = append(s.rules, r)
	}
	return s
}

func (s *scale) Process(_ time.Time, pts []protocols.Point) []protocols.Point {
	var nonFinite, collisions int
	out := pts[:0]
	for i := range pts {
		p := &pts[i]
		if !s.measurement.match(p.Measurement) {
			out = append(out, *p)
			continue
		}
		s.marks.reset(len(p.Fields))
		s.drop.reset(len(p.Fields))
		renamed, bad := false, false
		for j := range p.Fields {
			f := &p.Fields[j]
			x, ok := numeric(f.Value)
			if !ok {
				continue
			}
			r := s.rule(f.Key)
			if r == nil {
				continue
			}
			if !r.identity {
				y := x*r.factor + r.offset
				if !finite(y) {
					s.drop.set(j)
					bad = true
					nonFinite++
					continue
				}
				f.Value = protocols.Float(y)
			}
			if r.rename != "" {
				f.Key = r.rename
				s.marks.set(j)
				renamed = true
			}
		}
		if bad {
			p.Fields = removeMarked(p.Fields, &s.drop, &s.marks)
		}
		if renamed {
			var n int
			p.Fields, n = dropShadowed(p.Fields, func(f *protocols.Field) string { return f.Key }, &s.marks)
			collisions += n
		}
		if len(p.Fields) > 0 {
			out = append(out, *p)
		}
	}
	clear(pts[len(out):])
	s.nonFinite.Add(nonFinite)
	s.collision.Add(collisions)
	return out
}

func (s *scale) rule(field string) *scaleRule {
	for i := range s.rules {
		if s.rules[i].g.match(field) {
			return &s.rules[i]
		}
	}
	return nil
}

// removeMarked removes the fields marked in drop, moving the rename marks
// along with the fields that stay.
func removeMarked(fs []protocols.Field, drop, marks *markSet) []protocols.Field {
	var moved markSet
	moved.reset(len(fs))
	n := 0
	for i := range fs {
		if drop.has(i) {
			continue
		}
		if marks.has(i) {
			moved.set(n)
		}
		fs[n] = fs[i]
		n++
	}
	clear(fs[n:])
	*marks = moved
	return fs[:n]
}

// Interface guards.
var _ Stage = (*scale)(nil)
