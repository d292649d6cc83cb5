package process

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"gopkg.in/yaml.v3"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

// Stage transforms points. Process may modify pts and the points' Tags and
// Fields in place (the chain owns them; no two points share a backing array,
// which the codec and the simulator guarantee with full slice expressions)
// and returns the points to keep, usually a prefix of pts.
//
// A stage is used by one goroutine at a time: its Chain serialises calls
// with a mutex, so a stage need not be safe for concurrent use.
type Stage interface {
	Process(now time.Time, pts []protocols.Point) []protocols.Point
}

// Flusher is implemented by stages that hold points back (aggregate).
// Flush returns what is due at now; final is set once, before Close, and
// asks for everything the stage cannot keep past Close. NextFlush says when
// Flush next has something to return (zero: nothing is held).
type Flusher interface {
	Flush(now time.Time, final bool) []protocols.Point
	NextFlush() time.Time
}

// stateful is implemented by stages that keep state across restarts. The
// state is read in Build, the file removed when the chain first runs (claim)
// and written again by Close. Removing it on start means a crash leaves no
// file behind, so the next start begins afresh instead of trusting state
// that the crashed run went on to change.
type stateful interface {
	claim() error
	Close() error
}

// Env is what stages may depend on besides their configuration.
type Env struct {
	// StateDir holds the state of deadband and aggregate stages across
	// restarts; empty keeps state in memory only.
	StateDir string
	Log      *slog.Logger     // nil: discard
	Metrics  *metrics.Set     // nil: a private set
	Now      func() time.Time // nil: time.Now; tests inject a clock
}

func (e Env) withDefaults() Env {
	if e.Log == nil {
		e.Log = slog.New(slog.DiscardHandler)
	}
	if e.Metrics == nil {
		e.Metrics = metrics.NewSet()
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	return e
}

// Chain runs stages in order. It is safe for concurrent use; calls are
// serialised, so the stages themselves need not be.
type Chain struct {
	mu      sync.Mutex
	now     func() time.Time
	log     *slog.Logger
	stages  []chainStage
	started bool
	closed  bool
}

type chainStage struct {
	Stage
	name    string
	typ     string
	in, out *metrics.Counter
}

// Process runs pts through every stage in order and returns the points to
// pass on. A nil or empty chain returns pts unchanged.
func (c *Chain) Process(pts []protocols.Point) []protocols.Point {
	if c == nil || len(c.stages) == 0 {
		return pts
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.start()
	return c.run(c.now(), 0, pts)
}

// run passes pts through the stages from index first on.
func (c *Chain) run(now time.Time, first int, pts []protocols.Point) []protocols.Point {
	for i := first; i < len(c.stages) && len(pts) > 0; i++ {
		st := &c.stages[i]
		st.in.Add(len(pts))
		pts = st.Process(now, pts)
		st.out.Add(len(pts))
	}
	return pts
}

// Flush collects what the Flushers have due, each Flusher's output passed
// through the stages after it (a later aggregate sees an earlier one's
// windows before it flushes itself). final asks for everything, on
// shutdown; call Close after it.
func (c *Chain) Flush(final bool) []protocols.Point {
	if c == nil || len(c.stages) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.start()
	now := c.now()
	var carry []protocols.Point
	for i := range c.stages {
		st := &c.stages[i]
		if len(carry) > 0 {
			st.in.Add(len(carry))
			carry = st.Process(now, carry)
			st.out.Add(len(carry))
		}
		if f, ok := st.Stage.(Flusher); ok {
			out := f.Flush(now, final)
			st.out.Add(len(out))
			carry = append(carry, out...)
		}
	}
	return carry
}

// NextFlush returns when Flush should next be called: the earliest time a
// Flusher has something due, possibly in the past; zero when nothing is
// held. It changes with every Process, so a caller re-reads it afterwards.
func (c *Chain) NextFlush() time.Time {
	if c == nil {
		return time.Time{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for _, st := range c.stages {
		if f, ok := st.Stage.(Flusher); ok {
			if t := f.NextFlush(); !t.IsZero() && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
	}
	return next
}

// Close writes the state of stateful stages to Env.StateDir. Call it after
// Flush(true) and after the points of the last Process and Flush are in the
// buffer: the state records them as sent. Close is idempotent.
func (c *Chain) Close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for _, st := range c.stages {
		if s, ok := st.Stage.(stateful); ok {
			if err := s.Close(); err != nil {
				errs = append(errs, fmt.Errorf("process: stage %s: %w", st.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// String describes the stages in order, e.g.
// "filter processors-0 → aggregate processors-1", for the startup log.
func (c *Chain) String() string {
	if c == nil || len(c.stages) == 0 {
		return "(no processors)"
	}
	parts := make([]string, len(c.stages))
	for i, st := range c.stages {
		parts[i] = st.typ + " " + st.name
	}
	return strings.Join(parts, " → ")
}

// Len returns the number of stages.
func (c *Chain) Len() int {
	if c == nil {
		return 0
	}
	return len(c.stages)
}

// start claims the stages' state files the first time the chain runs; a
// chain built only to check a configuration never claims them.
func (c *Chain) start() {
	if c.started {
		return
	}
	c.started = true
	for _, st := range c.stages {
		if s, ok := st.Stage.(stateful); ok {
			if err := s.claim(); err != nil {
				c.log.Error("cannot remove consumed processor state; a crash before the next clean stop would reuse it",
					"stage", st.name, "err", err)
			}
		}
	}
}

// stageBuilders maps each YAML type name to the function that decodes and
// validates its block. It is a fixed table, not a registry: the stages are
// part of the agent, not plugins.
var stageBuilders = map[string]func(b *builder) Stage{
	"filter":    buildFilter,
	"deadband":  buildDeadband,
	"aggregate": buildAggregate,
	"tags":      buildTags,
	"scale":     buildScale,
	"rename":    buildRename,
}

func stageTypes() string {
	names := make([]string, 0, len(stageBuilders))
	for n := range stageBuilders {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Build creates the chain declared by nodes, the items of the processors
// list found at path ("processors" or "inputs[2].processors"). Each node is
// a mapping with a type key, an optional name and the stage's own keys,
// decoded strictly. Every problem of every stage is reported at once, each
// as a confx.Problem at its file:line. doc may be nil for nodes built in code.
//
// Build reads the state files of stateful stages but writes nothing; the
// chain takes the files over when it first runs.
func Build(doc *confx.Doc, nodes []yaml.Node, path string, env Env) (*Chain, error) {
	if doc == nil {
		doc, _ = confx.Load("", nil, &struct{}{})
	}
	env = env.withDefaults()
	c := &Chain{now: env.Now, log: env.Log}
	names := map[string]string{} // stage name -> path of its first use
	var probs confx.Problems
	for i := range nodes {
		b := &builder{doc: doc, env: env, path: fmt.Sprintf("%s[%d]", path, i)}
		node := &nodes[i]
		if node.Kind == yaml.AliasNode {
			node = node.Alias
		}
		if node.Kind != yaml.MappingNode {
			b.atLine(node.Line, "want a mapping with a type key, e.g. {type: filter}")
			probs = append(probs, b.probs...)
			continue
		}
		var keys map[string]confx.Key
		b.node, keys = confx.Without(node, "type", "name")
		typ, typeLine, name, nameLine := keys["type"].Value, keys["type"].Line, keys["name"].Value, keys["name"].Line
		fn, ok := stageBuilders[typ]
		switch {
		case typ == "":
			b.atLine(node.Line, "missing type (known: %s)", stageTypes())
		case !ok:
			b.atLine(typeLine, "unknown processor type %q (known: %s)", typ, stageTypes())
		}
		if name == "" {
			name = defaultName(b.path)
		} else if !nameRE.MatchString(name) {
			b.atLine(nameLine, "name %q: want 1 to 64 of A-Z a-z 0-9 _ . - (it names the state file and the metrics)", name)
		}
		if first, dup := names[name]; dup {
			b.atLine(nameLine, "name %q is already used by %s", name, first)
		}
		names[name] = b.path
		b.name, b.typ = name, typ
		var st Stage
		if ok && len(b.probs) == 0 {
			st = fn(b)
		}
		if len(b.probs) > 0 {
			probs = append(probs, b.probs...)
			continue
		}
		c.stages = append(c.stages, chainStage{
			Stage: st,
			name:  name,
			typ:   typ,
			in:    env.Metrics.GetOrCreateCounter(fmt.Sprintf(`citysense_agent_process_points_in_total{stage=%q}`, name)),
			out:   env.Metrics.GetOrCreateCounter(fmt.Sprintf(`citysense_agent_process_points_out_total{stage=%q}`, name)),
		})
	}
	if len(probs) > 0 {
		sort.SliceStable(probs, func(i, j int) bool { return probs[i].Line < probs[j].Line })
		return nil, probs
	}
	return c, nil
}

// defaultName turns a path such as "inputs[2].processors[1]" into
// "inputs-2-processors-1": unique within one file and usable as a file name
// and a metric label.
func defaultName(path string) string {
	b := []byte(strings.NewReplacer("[", "-", "]", "", ".", "-").Replace(path))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	name := string(b)
	if len(name) > 64 {
		name = name[len(name)-64:] // the end holds the indexes that make it unique
	}
	if name = strings.Trim(name, "-"); name == "" {
		name = "stage"
	}
	return name
}

// builder collects the problems of one stage's block while it is decoded
// and validated, and hands the stage its name, metrics and environment.
type builder struct {
	doc   *confx.Doc
	env   Env
	path  string // e.g. processors[0]
	name  string
	typ   string
	node  *yaml.Node // the block without type and name
	probs confx.Problems
}

// decode strictly decodes the block into v and reports whether it went well.
func (b *builder) decode(v any) bool {
	return b.decodeNode(b.node, b.path, v)
}

func (b *builder) decodeNode(n *yaml.Node, path string, v any) bool {
	err := b.doc.Decode(n, path, v)
	if err == nil {
		return true
	}
	var ps confx.Problems
	if errors.As(err, &ps) {
		b.probs = append(b.probs, ps...)
	} else {
		b.probs = append(b.probs, b.doc.At(path, "%v", err))
	}
	return false
}

// errorf records a problem at a key of the block ("" for the block itself).
func (b *builder) errorf(key, format string, args ...any) {
	p := b.path
	if key != "" {
		p += "." + key
	}
	b.probs = append(b.probs, b.doc.At(p, format, args...))
}

// atLine records a problem of the block at a known line (list items and
// the keys split off before decoding have no recorded path).
func (b *builder) atLine(line int, format string, args ...any) {
	p := b.doc.At(b.path, format, args...)
	if line > 0 {
		p.Line = line
	}
	b.probs = append(b.probs, p)
}

// globs compiles a list of patterns found at key; a nil list gives def.
func (b *builder) globs(key string, patterns []string, def matcher) matcher {
	if patterns == nil {
		return def
	}
	m := matcher{globs: make([]glob, 0, len(patterns))}
	for i, p := range patterns {
		g, err := compileGlob(p)
		if err != nil {
			b.errorf(fmt.Sprintf("%s[%d]", key, i), "bad pattern %q: %v", p, err)
			continue
		}
		m.globs = append(m.globs, g)
	}
	return m
}

// dropped returns the counter of field values the stage drops for reason.
func (b *builder) dropped(reason string) *metrics.Counter {
	return b.env.Metrics.GetOrCreateCounter(fmt.Sprintf(`citysense_agent_process_dropped_total{stage=%q,reason=%q}`, b.name, reason))
}

// passed returns the counter of field values the stage lets through
// untouched for reason, although its configuration selected them.
func (b *builder) passed(reason string) *metrics.Counter {
	return b.env.Metrics.GetOrCreateCounter(fmt.Sprintf(`citysense_agent_process_passed_total{stage=%q,reason=%q}`, b.name, reason))
}

// seriesGauge returns the gauge of series a stage keeps state for.
func (b *builder) seriesGauge() *metrics.Gauge {
	return b.env.Metrics.GetOrCreateGauge(fmt.Sprintf(`citysense_agent_process_series{stage=%q}`, b.name), nil)
}

// log returns the stage's logger.
func (b *builder) log() *slog.Logger {
	return b.env.Log.With("stage", b.name, "type", b.typ)
}

// appendKey appends a key identifying p's measurement and tag set, for the
// maps of stateful stages: each string preceded by its length, which is
// unambiguous without the escaping scan of Point.AppendSeriesKey (the
// dearest part of a lookup).
func appendKey(dst []byte, p *protocols.Point) []byte {
	dst = appendString(dst, p.Measurement)
	for _, t := range p.Tags {
		dst = appendString(appendString(dst, t.Key), t.Value)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

// numeric returns the value of a float, int or uint field as float64. Bools
// and strings are not numbers to the stages: they pass through untouched.
func numeric(v protocols.Value) (float64, bool) {
	switch v.Kind() {
	case protocols.KindFloat, protocols.KindInt, protocols.KindUint:
		return v.AsFloat()
	}
	return 0, false
}
