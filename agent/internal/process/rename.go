package process

import (
	"sort"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/protocols"
)

// renameConfig is the YAML block of a rename stage.
type renameConfig struct {
	Measurement map[string]string `yaml:"measurement"` // old name: new name
	Fields      map[string]string `yaml:"fields"`      // old name: new name
}

// rename renames measurements and fields by exact name. All renames of a
// point happen at once: {a: b, b: c} turns a into b and b into c, never a
// into c. A renamed field replaces a field that already had its new name.
type rename struct {
	measurement map[string]string
	fields      map[string]string
	marks       markSet
	collision   *metrics.Counter
}

func buildRename(b *builder) Stage {
	var cfg renameConfig
	if !b.decode(&cfg) {
		return nil
	}
	if len(cfg.Measurement) == 0 && len(cfg.Fields) == 0 {
		b.errorf("", "nothing to rename: set measurement or fields, e.g. {fields: {temp: temperature}}")
	}
	checkRenames(b, "measurement", cfg.Measurement)
	checkRenames(b, "fields", cfg.Fields)
	return &rename{measurement: cfg.Measurement, fields: cfg.Fields, collision: b.dropped("collision")}
}

// checkRenames reports empty names and two old names given the same new
// one, which would make one of them vanish on every point having both.
func checkRenames(b *builder, key string, m map[string]string) {
	olds := make([]string, 0, len(m))
	for old := range m {
		olds = append(olds, old)
	}
	sort.Strings(olds)
	seen := map[string]string{}
	for _, old := range olds {
		to := m[old]
		switch {
		case old == "" || to == "":
			b.errorf(key, "names must not be empty (%q: %q)", old, to)
		case old == to:
			b.errorf(key+"."+old, "renames %q to itself", old)
		case seen[to] != "":
			b.errorf(key+"."+old, "%q and %q both become %q", seen[to], old, to)
		default:
			seen[to] = old
		}
	}
}

func (r *rename) Process(_ time.Time, pts []protocols.Point) []protocols.Point {
	var collisions int
	for i := range pts {
		p := &pts[i]
		if to, ok := r.measurement[p.Measurement]; ok {
			p.Measurement = to
		}
		if len(r.fields) == 0 {
			continue
		}
		r.marks.reset(len(p.Fields))
		renamed := false
		for j := range p.Fields {
			if to, ok := r.fields[p.Fields[j].Key]; ok {
				p.Fields[j].Key = to
				r.marks.set(j)
				renamed = true
			}
		}
		if renamed {
			var n int
			p.Fields, n = dropShadowed(p.Fields, func(f *protocols.Field) string { return f.Key }, &r.marks)
			collisions += n
		}
	}
	r.collision.Add(collisions)
	return pts
}

// markSet marks indexes of a point's tags or fields without allocating for
// the usual handful.
type markSet struct {
	small uint64
	big   []bool
}

func (m *markSet) reset(n int) {
	m.small = 0
	if n <= 64 {
		m.big = m.big[:0]
		return
	}
	if cap(m.big) < n {
		m.big = make([]bool, n)
	}
	m.big = m.big[:n]
	clear(m.big)
}

func (m *markSet) set(i int) {
	if len(m.big) > 0 {
		m.big[i] = true
		return
	}
	m.small |= 1 << uint(i)
}

func (m *markSet) has(i int) bool {
	if len(m.big) > 0 {
		return m.big[i]
	}
	return m.small&(1<<uint(i)) != 0
}

// dropShadowed removes the unmarked elements whose key a marked (renamed)
// element now has, since an explicit rename wins over what was there, and
// reports how many it removed. Marks refer to the indexes before removal.
func dropShadowed[T any](xs []T, key func(*T) string, renamed *markSet) ([]T, int) {
	var shadowed markSet
	shadowed.reset(len(xs))
	found := 0
	for i := range xs {
		if renamed.has(i) {
			continue
		}
		k := key(&xs[i])
		for j := range xs {
			if renamed.has(j) && key(&xs[j]) == k {
				shadowed.set(i)
				found++
				break
			}
		}
	}
	if found == 0 {
		return xs, 0
	}
	n := 0
	for i := range xs {
		if !shadowed.has(i) {
			xs[n] = xs[i]
			n++
		}
	}
	clear(xs[n:])
	return xs[:n], found
}

// Interface guards.
var _ Stage = (*rename)(nil)
