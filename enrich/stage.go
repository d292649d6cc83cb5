package enrich

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"gopkg.in/yaml.v3"

	"github.com/citysense/citysense/internal/confx"
)

// Stage is an Enricher built from configuration. The registry creates a zero
// Stage with its defaults, Build decodes the stage's YAML block strictly into
// it (its exported fields carry yaml tags) and then calls Init.
type Stage interface {
	Enricher
	// Init validates the configuration and loads what the stage needs
	// (files, tables); it is the only place a stage may do I/O. It reports
	// every problem at once: confx.Problem values whose Path is relative to
	// the stage's block are placed at their file:line by Build.
	Init(env Env) error
}

// Env is what Build hands every stage's Init.
type Env struct {
	// Dir is the base for relative file paths in the stage's block: the
	// directory of the config file, so a config works from any cwd.
	Dir string
	// Log is the stage's logger, already carrying stage=<name>; never nil
	// inside Init.
	Log *slog.Logger
	// Metrics is where stages register their counters; nil means a private
	// set that nobody scrapes.
	Metrics *metrics.Set
	// Quarantine receives points a stage removes from a batch (schema with
	// action: quarantine). Nil means no stage may remove points.
	Quarantine Quarantine
	// Stations is the station registry of the chain, set by Build once a
	// stage that provides one (registry) has been initialised, so stages
	// after it (geo, privacy) can look stations up. The caller may preset
	// it to share one registry between chains.
	Stations Stations
	// Name is the stage's name in the chain: its name key, or its type.
	Name string
}

// Logger returns Log, or a logger that discards when Log is nil (a stage
// initialised directly rather than by Build).
func (e Env) Logger() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Log
}

// Resolve returns path relative to Dir unless it is absolute or empty.
func (e Env) Resolve(path string) string {
	if path == "" || filepath.IsAbs(path) || e.Dir == "" {
		return path
	}
	return filepath.Join(e.Dir, path)
}

// Counter returns the counter citysense_enrich_<what>{stage="<name>"} from
// the stage's metrics set, creating it on first use, so that a chain rebuilt
// on reload keeps counting in the same series.
func (e Env) Counter(what string) *metrics.Counter {
	return e.set().GetOrCreateCounter(e.metricName(what))
}

// Gauge returns the settable gauge citysense_enrich_<what>{stage="<name>"}.
func (e Env) Gauge(what string) *metrics.Gauge {
	return e.set().GetOrCreateGauge(e.metricName(what), nil)
}

func (e Env) set() *metrics.Set {
	if e.Metrics == nil {
		return metrics.NewSet()
	}
	return e.Metrics
}

func (e Env) metricName(what string) string {
	return fmt.Sprintf("citysense_enrich_%s{stage=%q}", what, e.Name)
}

// StationSource is implemented by stages that provide the chain's station
// registry; Build passes it on to later stages as Env.Stations.
type StationSource interface {
	Stations() Stations
}

var stages = struct {
	sync.RWMutex
	m map[string]func() Stage
}{m: map[string]func() Stage{}}

// Register makes a stage type available under typ. It is meant to be called
// from init functions and panics on an empty type, a nil factory or a type
// registered twice, since each is a programming error.
func Register(typ string, f func() Stage) {
	if typ == "" || f == nil {
		panic("enrich: Register with empty type or nil factory")
	}
	stages.Lock()
	defer stages.Unlock()
	if _, dup := stages.m[typ]; dup {
		panic(fmt.Sprintf("enrich: stage type %q registered twice", typ))
	}
	stages.m[typ] = f
}

// Lookup returns the factory of a registered stage type.
func Lookup(typ string) (func() Stage, bool) {
	stages.RLock()
	defer stages.RUnlock()
	f, ok := stages.m[typ]
	return f, ok
}

// Types lists the registered stage types, sorted.
func Types() []string {
	stages.RLock()
	defer stages.RUnlock()
	out := make([]string, 0, len(stages.m))
	for k := range stages.m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Build creates the chain configured by nodes, the items of the `enrich:`
// list found at path (e.g. "enrich") in doc. Each item is a mapping with a
// type key, an optional name key (default: the type; needed when one type
// appears twice) and the stage's own keys. Every problem of every stage is
// reported at once as confx.Problems with file:line. A nil doc is allowed
// (problems then carry only their key paths).
func Build(doc *confx.Doc, nodes []yaml.Node, path string, env Env) (*Chain, error) {
	if doc == nil {
		doc, _ = confx.Load("", nil, &struct{}{})
	}
	base := env.Log
	if base == nil {
		base = slog.New(slog.DiscardHandler)
	}
	var probs confx.Problems
	var built []Enricher
	names := map[string]bool{}
	for i := range nodes {
		p := fmt.Sprintf("%s[%d]", path, i)
		node := &nodes[i]
		if node.Kind == yaml.AliasNode {
			node = node.Alias
		}
		if node.Kind != yaml.MappingNode {
			probs = append(probs, confx.Problem{File: doc.File, Line: node.Line, Path: p,
				Msg: "want a mapping with a type key, e.g. {type: registry}"})
			continue
		}
		body, keys := confx.Without(node, "type", "name")
		typ, name, typeLine, nameLine := keys["type"].Value, keys["name"].Value, keys["type"].Line, keys["name"].Line
		if typ == "" {
			probs = append(probs, confx.Problem{File: doc.File, Line: node.Line, Path: p,
				Msg: fmt.Sprintf("missing type (known: %s)", strings.Join(Types(), ", "))})
			continue
		}
		factory, ok := Lookup(typ)
		if !ok {
			probs = append(probs, confx.Problem{File: doc.File, Line: typeLine, Path: p + ".type",
				Msg: fmt.Sprintf("unknown stage type %q (known: %s)", typ, strings.Join(Types(), ", "))})
			continue
		}
		if name == "" {
			name = typ
		}
		// A bad or duplicate name is reported, and the block is still
		// decoded and checked so that one run shows every problem.
		if !validName(name) {
			probs = append(probs, confx.Problem{File: doc.File, Line: nameLine, Path: p + ".name",
				Msg: fmt.Sprintf("%q: want letters, digits, '-' or '_'", name)})
		} else if names[name] {
			probs = append(probs, doc.At(p, "a stage named %q appears twice; give one a name key", name))
		}
		names[name] = true
		st := factory()
		if err := doc.Decode(body, p, st); err != nil {
			probs = doc.Place(probs, p, err)
			continue
		}
		senv := env
		senv.Name = name
		senv.Log = base.With("stage", name)
		if err := st.Init(senv); err != nil {
			probs = doc.Place(probs, p, err)
		}
		// A station source is handed on even when its own Init failed, so
		// that the stages after it report their own problems and not a
		// spurious "needs a registry".
		if src, ok := st.(StationSource); ok {
			env.Stations = src.Stations()
		}
		built = append(built, st)
	}
	if len(probs) > 0 {
		slices.SortStableFunc(probs, func(a, b confx.Problem) int {
			if a.File != b.File {
				return strings.Compare(a.File, b.File)
			}
			return a.Line - b.Line
		})
		return nil, probs
	}
	return NewChain(built...)
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return s != ""
}

// Find returns the first stage of the chain (searching nested chains) that
// is a T, e.g. enrich.Find[*schema.Schema](c). The collector uses it to
// reach a stage's read-only API: contracts, stations, public locations.
func Find[T any](c *Chain) (T, bool) {
	var zero T
	if c == nil {
		return zero, false
	}
	for _, s := range c.stages {
		if t, ok := s.(T); ok {
			return t, true
		}
		if sub, ok := s.(*Chain); ok {
			if t, ok := Find[T](sub); ok {
				return t, true
			}
		}
	}
	return zero, false
}

// Stations returns the chain's station registry: the last stage that
// provides one, or nil when the chain has none.
func (c *Chain) Stations() Stations {
	if c == nil {
		return nil
	}
	var out Stations
	for _, s := range c.stages {
		// A nested *Chain is a StationSource too.
		if src, ok := s.(StationSource); ok {
			if st := src.Stations(); st != nil {
				out = st
			}
		}
	}
	return out
}

// PublicLocation returns where a station may be shown to the public. A chain
// with a privacy stage defers to it; without one, public stations are shown
// where they are and the location of a station marked public: false is
// withheld (ok false), so that forgetting the privacy stage cannot leak it.
func (c *Chain) PublicLocation(st Station) (lat, lon float64, ok bool) {
	if !st.Located {
		return 0, 0, false
	}
	if l, found := Find[PublicLocator](c); found {
		lat, lon = l.PublicLocation(st)
		return lat, lon, true
	}
	if !st.Public {
		return 0, 0, false
	}
	return st.Lat, st.Lon, true
}
