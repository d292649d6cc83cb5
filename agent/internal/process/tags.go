package process

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/citysense/citysense/protocols"
)

// tagsConfig is the YAML block of a tags stage.
type tagsConfig struct {
	Measurement []string          `yaml:"measurement"` // default: all
	Rename      map[string]string `yaml:"rename"`      // old key: new key
	Delete      []string          `yaml:"delete"`      // keys
	Add         map[string]string `yaml:"add"`         // key: value, replacing a value already there
}

// tags edits tag sets, in this order: rename, delete, add; the set stays
// sorted. Renames happen at once, as in the rename stage, and a renamed tag
// replaces a tag that already had its new key.
type tags struct {
	measurement matcher
	rename      map[string]string
	del         []string
	add         []protocols.Tag // sorted by key
	marks       markSet
	slab        []protocols.Tag // grown tag sets are cut from it
}

func buildTags(b *builder) Stage {
	var cfg tagsConfig
	if !b.decode(&cfg) {
		return nil
	}
	t := &tags{
		measurement: b.globs("measurement", cfg.Measurement, matchAll),
		rename:      cfg.Rename,
	}
	if len(cfg.Rename) == 0 && len(cfg.Delete) == 0 && len(cfg.Add) == 0 {
		b.errorf("", "nothing to do: set add, rename or delete")
	}
	checkRenames(b, "rename", cfg.Rename)
	for i, k := range cfg.Delete {
		if k == "" {
			b.errorf("delete", "item %d: tag keys must not be empty", i)
		}
	}
	t.del = cfg.Delete
	for k, v := range cfg.Add {
		if k == "" || v == "" {
			// Line protocol has no empty tag values; an empty key is no tag.
			b.errorf("add", "tag keys and values must not be empty (%q: %q)", k, v)
			continue
		}
		t.add = append(t.add, protocols.Tag{Key: k, Value: v})
	}
	sort.Slice(t.add, func(i, j int) bool { return t.add[i].Key < t.add[j].Key })
	return t
}

func (t *tags) Process(_ time.Time, pts []protocols.Point) []protocols.Point {
	for i := range pts {
		p := &pts[i]
		if !t.measurement.match(p.Measurement) {
			continue
		}
		if len(t.rename) > 0 {
			t.renameTags(p)
		}
		if len(t.del) > 0 {
			p.Tags = slices.DeleteFunc(p.Tags, func(tg protocols.Tag) bool { return slices.Contains(t.del, tg.Key) })
		}
		if len(t.add) > 0 {
			if free := cap(p.Tags) - len(p.Tags); free < len(t.add) {
				// Room for every added tag at once, from a shared chunk:
				// one allocation per thousand tags instead of one per tag.
				grown := carve(&t.slab, len(p.Tags)+len(t.add))
				p.Tags = grown[:copy(grown, p.Tags)]
			}
			for _, tg := range t.add {
				p.SetTag(tg.Key, tg.Value)
			}
		}
	}
	return pts
}

func (t *tags) renameTags(p *protocols.Point) {
	t.marks.reset(len(p.Tags))
	renamed := false
	for j := range p.Tags {
		if to, ok := t.rename[p.Tags[j].Key]; ok {
			p.Tags[j].Key = to
			t.marks.set(j)
			renamed = true
		}
	}
	if !renamed {
		return
	}
	p.Tags, _ = dropShadowed(p.Tags, func(tg *protocols.Tag) string { return tg.Key }, &t.marks)
	if !slices.IsSortedFunc(p.Tags, compareTags) {
		slices.SortFunc(p.Tags, compareTags)
	}
}

func compareTags(a, b protocols.Tag) int { return strings.Compare(a.Key, b.Key) }

// Interface guards.
var _ Stage = (*tags)(nil)
