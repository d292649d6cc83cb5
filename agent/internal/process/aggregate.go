package process

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

// QuietClose is how long a series must have sent nothing before its
// windows close by the clock alone, without a reading from past their end.
// Backlogs and replays deliver readings back to back, far closer together.
const QuietClose = 5 * time.Second

// DefaultMaxValues bounds the values an aggregate keeps per series and
// window for exact percentiles, unless its max_values says otherwise: a
// 1-minute window at 10 Hz holds 600, a 1-hour window at 2 Hz 7,200.
const DefaultMaxValues = 10_000

// aggregateConfig is the YAML block of an aggregate stage.
type aggregateConfig struct {
	Measurement  []string       `yaml:"measurement"`   // default: all
	Fields       []string       `yaml:"fields"`        // default: all numeric fields
	Window       confx.Duration `yaml:"window"`        // required
	Functions    []string       `yaml:"functions"`     // default: [mean]
	Suffix       *bool          `yaml:"suffix"`        // default true; false only with one function
	Grace        confx.Duration `yaml:"grace"`         // wait this long after a window's end
	Late         string         `yaml:"late"`          // drop (default) or pass
	DropOriginal *bool          `yaml:"drop_original"` // default true
	MaxSeries    int            `yaml:"max_series"`
	MaxValues    int            `yaml:"max_values"`
}

type aggFunc uint8

const (
	fnMean aggFunc = iota
	fnMin
	fnMax
	fnCount
	fnSum
	fnFirst
	fnLast
	fnStddev
	fnP50
	fnP95
	fnP99
)

var aggFuncNames = [...]string{
	fnMean: "mean", fnMin: "min", fnMax: "max", fnCount: "count", fnSum: "sum",
	fnFirst: "first", fnLast: "last", fnStddev: "stddev", fnP50: "p50", fnP95: "p95", fnP99: "p99",
}

func (f aggFunc) String() string { return aggFuncNames[f] }

func (f aggFunc) percentile() bool { return f >= fnP50 }

// aggregate folds the numeric fields of each series into tumbling windows
// aligned to the Unix epoch (a 1m window is [12:00:00, 12:01:00)) and emits
// one point per series and window, stamped with the window's start.
//
// A window closes once the clock has passed its end plus grace and its
// series has either sent a reading from at or after that moment, or been
// quiet for QuietClose. Live, the two coincide with the clock. When history
// arrives faster than real time (an MQTT backlog after an outage, a
// simulator starting an hour back) the clock is far ahead of the data, and
// waiting for the data keeps each window whole instead of closing it at
// the first flush with the readings that happened to be there.
type aggregate struct {
	measurement, fields matcher
	win, grace          int64
	fns                 []aggFunc
	suffix              bool
	percentiles         bool
	latePass            bool
	dropOriginal        bool
	maxSeries           int
	maxValues           int

	series  map[string]*aggSeries // by measurement+tags
	order   []*aggSeries          // first seen first: a stable output order
	active  int                   // series with an open window
	nfields int                   // field series held, bounded by maxSeries
	// forgotTo is the latest window end emitted for any series forgotten to
	// make room. A series the stage does not know may be one of those, so
	// its readings from before forgotTo are late: no window is emitted twice.
	forgotTo int64
	names    map[string][]string // output field names per input field
	key      []byte
	tslab    []protocols.Tag   // output tags and fields are cut from these
	fslab    []protocols.Field // chunks: two allocations per chunk, not per point
	rng      uint64

	state *stateFile
	now   func() time.Time
	log   *slog.Logger

	lateDropped, latePassed, overflow, timeRange, sampled, nonFinite *metrics.Counter
	gauge                                                            *metrics.Gauge
}

type aggSeries struct {
	key         string
	measurement string
	tags        []protocols.Tag
	fields      []string // acc i of a window belongs to fields[i]
	done        int64    // end of the last window emitted; earlier points are late
	newest      int64    // time of the newest reading seen
	seen        int64    // clock time (ns) the last reading arrived
	wins        []*aggWindow
	spare       *aggWindow // the last emitted window, reused with its buffers
}

type aggWindow struct {
	start int64
	accs  []acc
}

// acc accumulates one field of one series in one window. Mean and
// variance use Welford's update, which stays accurate where sum-of-squares
// cancels catastrophically.
type acc struct {
	n                     int64
	sum, mean, m2         float64
	min, max, first, last float64
	firstT, lastT         int64
	vals                  []float64 // for percentiles, at most maxValues: a uniform sample beyond
	seen                  int64     // values offered to vals
}

func buildAggregate(b *builder) Stage {
	cfg := aggregateConfig{MaxSeries: DefaultMaxSeries, MaxValues: DefaultMaxValues}
	if !b.decode(&cfg) {
		return nil
	}
	a := &aggregate{
		measurement:  b.globs("measurement", cfg.Measurement, matchAll),
		fields:       b.globs("fields", cfg.Fields, matchAll),
		win:          int64(cfg.Window),
		grace:        int64(cfg.Grace),
		suffix:       cfg.Suffix == nil || *cfg.Suffix,
		dropOriginal: cfg.DropOriginal == nil || *cfg.DropOriginal,
		maxSeries:    cfg.MaxSeries,
		maxValues:    cfg.MaxValues,
		series:       map[string]*aggSeries{},
		forgotTo:     math.MinInt64,
		names:        map[string][]string{},
		rng:          0x9e3779b97f4a7c15,
		state:        newStateFile(b.env.StateDir, b.typ, b.name),
		now:          b.env.Now,
		log:          b.log(),
		lateDropped:  b.dropped("late"),
		nonFinite:    b.dropped("non_finite"),
		latePassed:   b.passed("late"),
		overflow:     b.passed("max_series"),
		timeRange:    b.passed("time_range"),
		sampled:      b.env.Metrics.GetOrCreateCounter(fmt.Sprintf(`citysense_agent_process_percentile_sampled_total{stage=%q}`, b.name)),
		gauge:        b.seriesGauge(),
	}
	switch w := cfg.Window.D(); {
	case w == 0:
		b.errorf("window", "must be set, e.g. 1m")
	case w < time.Second || w > 24*time.Hour:
		b.errorf("window", "must be between 1s and 24h, got %v", w)
	}
	if g := cfg.Grace.D(); g < 0 || g > 24*time.Hour {
		b.errorf("grace", "must be between 0 and 24h, got %v", g)
	}
	if cfg.Functions == nil {
		cfg.Functions = []string{"mean"}
	}
	if len(cfg.Functions) == 0 {
		b.errorf("functions", "want at least one of %s", strings.Join(aggFuncNames[:], ", "))
	}
	for i, name := range cfg.Functions {
		fn, ok := parseAggFunc(name)
		switch {
		case !ok:
			b.errorf(fmt.Sprintf("functions[%d]", i), "unknown function %q (known: %s)", name, strings.Join(aggFuncNames[:], ", "))
		case slices.Contains(a.fns, fn):
			b.errorf(fmt.Sprintf("functions[%d]", i), "function %q is listed twice", name)
		default:
			a.fns = append(a.fns, fn)
			a.percentiles = a.percentiles || fn.percentile()
		}
	}
	if !a.suffix && len(cfg.Functions) != 1 {
		b.errorf("suffix", "false needs exactly one function, or the output fields would collide")
	}
	switch cfg.Late {
	case "", "drop":
	case "pass":
		a.latePass = true
	default:
		b.errorf("late", "want drop or pass, got %q", cfg.Late)
	}
	if cfg.MaxSeries < 1 {
		b.errorf("max_series", "must be at least 1, got %d", cfg.MaxSeries)
	}
	if cfg.MaxValues < 1 {
		b.errorf("max_values", "must be at least 1, got %d", cfg.MaxValues)
	}
	if len(b.probs) > 0 || a.state == nil {
		return a
	}
	var st aggregateState
	found, err := a.state.load(&st)
	switch {
	case err != nil:
		a.log.Warn("ignoring unreadable aggregate state; its open windows are lost", "err", err)
	case found:
		a.restore(&st)
	}
	a.gauge.Set(float64(a.nfields))
	return a
}

func parseAggFunc(name string) (aggFunc, bool) {
	for i, n := range aggFuncNames {
		if n == name {
			return aggFunc(i), true
		}
	}
	return 0, false
}

// Process folds the selected numeric fields into their windows. With
// drop_original (the default) the folded fields leave the point, which
// passes on with whatever is left (strings, bools, unselected fields) or
// not at all. Non-finite values are never folded; they pass untouched.
func (a *aggregate) Process(now time.Time, pts []protocols.Point) []protocols.Point {
	var lateDropped, latePassed, overflow, timeRange, sampled int
	out := pts[:0]
	for i := range pts {
		p := &pts[i]
		if !a.measurement.match(p.Measurement) {
			out = append(out, *p)
			continue
		}
		if p.Time > math.MaxInt64-a.win {
			// The window's end would overflow int64 (year 2262); no
			// reading means that, but it must not break the windows.
			timeRange += len(p.Fields)
			out = append(out, *p)
			continue
		}
		start := floorDiv(p.Time, a.win) * a.win
		var s *aggSeries
		var w *aggWindow
		looked, late := false, false
		kept := p.Fields[:0]
		for j, fl := range p.Fields {
			x, ok := numeric(fl.Value)
			if !ok || !finite(x) || !a.fields.match(fl.Key) {
				kept = append(kept, fl)
				continue
			}
			if !looked {
				s, late = a.lookup(p, start)
				looked = true
				if s != nil {
					s.newest, s.seen = max(s.newest, p.Time), now.UnixNano()
				}
			}
			switch {
			case late && (a.latePass || !a.dropOriginal):
				latePassed++
				kept = append(kept, fl)
				continue
			case late:
				lateDropped++
				continue
			case s == nil:
				overflow++
				kept = append(kept, fl)
				continue
			}
			k := s.find(fl.Key, j)
			if k < 0 {
				if !a.room() {
					overflow++
					kept = append(kept, fl)
					continue
				}
				s.fields = append(s.fields, fl.Key)
				a.nfields++
				k = len(s.fields) - 1
			}
			if w == nil {
				w = a.window(s, start)
			}
			if a.add(w, k, x, p.Time) {
				sampled++
			}
			if !a.dropOriginal {
				kept = append(kept, fl)
			}
		}
		clear(p.Fields[len(kept):])
		p.Fields = kept
		if len(kept) > 0 {
			out = append(out, *p)
		}
	}
	clear(pts[len(out):])
	a.lateDropped.Add(lateDropped)
	a.latePassed.Add(latePassed)
	a.overflow.Add(overflow)
	a.timeRange.Add(timeRange)
	a.sampled.Add(sampled)
	a.gauge.Set(float64(a.nfields))
	return out
}

// lookup returns the series of p and whether p's window is already closed
// for it. A new series is created when there is room; otherwise s is nil.
func (a *aggregate) lookup(p *protocols.Point, start int64) (s *aggSeries, late bool) {
	a.key = appendKey(a.key[:0], p)
	if s, ok := a.series[string(a.key)]; ok {
		return s, start < s.done
	}
	if start+a.win <= a.forgotTo {
		return nil, true
	}
	if !a.room() {
		return nil, false
	}
	s = &aggSeries{
		key:         string(a.key),
		measurement: p.Measurement,
		tags:        slices.Clone(p.Tags),
		done:        math.MinInt64,
		newest:      math.MinInt64,
	}
	a.series[s.key] = s
	a.order = append(a.order, s)
	return s, false
}

// room reports whether another field series fits. When the table is full
// it forgets the series that have no open window; a series that is still
// folding values is never dropped.
func (a *aggregate) room() bool {
	if a.nfields < a.maxSeries {
		return true
	}
	if a.active == len(a.order) {
		return false
	}
	n := 0
	for _, s := range a.order {
		if len(s.wins) > 0 {
			a.order[n] = s
			n++
			continue
		}
		delete(a.series, s.key)
		a.nfields -= len(s.fields)
		a.forgotTo = max(a.forgotTo, s.done)
	}
	clear(a.order[n:])
	a.order = a.order[:n]
	return a.nfields < a.maxSeries
}

// window returns the open window of s that starts at start, opening it.
func (a *aggregate) window(s *aggSeries, start int64) *aggWindow {
	n := len(s.wins)
	if n > 0 && s.wins[n-1].start == start {
		return s.wins[n-1]
	}
	i, found := slices.BinarySearchFunc(s.wins, start, func(w *aggWindow, t int64) int {
		switch {
		case w.start < t:
			return -1
		case w.start > t:
			return 1
		}
		return 0
	})
	if found {
		return s.wins[i]
	}
	w := s.spare
	s.spare = nil
	if w == nil {
		w = &aggWindow{}
	} else {
		for k := range w.accs {
			w.accs[k] = acc{vals: w.accs[k].vals[:0]}
		}
	}
	w.start = start
	s.wins = slices.Insert(s.wins, i, w)
	if n == 0 {
		a.active++
	}
	return w
}

// add folds x at time t into field k of w and reports whether the
// percentile sample was full, so that x only had a chance to replace a
// value in it (reservoir sampling, Algorithm R: every value of the window
// ends up in the sample with the same probability).
func (a *aggregate) add(w *aggWindow, k int, x float64, t int64) (sampled bool) {
	for len(w.accs) <= k {
		w.accs = append(w.accs, acc{})
	}
	c := &w.accs[k]
	if c.n == 0 {
		c.min, c.max, c.first, c.last, c.firstT, c.lastT = x, x, x, x, t, t
	} else {
		c.min, c.max = min(c.min, x), max(c.max, x)
		if t < c.firstT {
			c.first, c.firstT = x, t
		}
		if t >= c.lastT {
			c.last, c.lastT = x, t
		}
	}
	c.n++
	c.sum += x
	d := x - c.mean
	c.mean += d / float64(c.n)
	c.m2 += d * (x - c.mean)
	if !a.percentiles {
		return false
	}
	c.seen++
	if len(c.vals) < a.maxValues {
		c.vals = append(c.vals, x)
		return false
	}
	if j := a.rand() % uint64(c.seen); j < uint64(len(c.vals)) {
		c.vals[j] = x
	}
	return true
}

// rand is xorshift64*: deterministic, so a replay aggregates identically.
func (a *aggregate) rand() uint64 {
	a.rng ^= a.rng >> 12
	a.rng ^= a.rng << 25
	a.rng ^= a.rng >> 27
	return a.rng * 0x2545f4914f6cdd1d
}

// Flush emits the windows that are closed (see aggregate), in the order
// the series first appeared and by window within a series. On the final
// flush no more readings will come, so every window past its end plus
// grace is emitted; windows not yet there are emitted too, unless the stage
// keeps state in Env.StateDir: then Close saves them and the next run
// completes them, so that a restart does not cut a window in two.
func (a *aggregate) Flush(now time.Time, final bool) []protocols.Point {
	if a.active == 0 {
		return nil
	}
	clock := now.UnixNano()
	var out []protocols.Point
	var nonFinite int
	for _, s := range a.order {
		if len(s.wins) == 0 {
			continue
		}
		n := 0
		for _, w := range s.wins {
			if !a.closed(s, w, clock, final) {
				s.wins[n] = w
				n++
				continue
			}
			var bad int
			out, bad = a.emit(out, s, w)
			nonFinite += bad
			s.done = max(s.done, w.start+a.win)
			s.spare = w
		}
		clear(s.wins[n:])
		s.wins = s.wins[:n]
		if n == 0 {
			a.active--
		}
	}
	a.nonFinite.Add(nonFinite)
	return out
}

// closed reports whether window w of s is to be emitted at clock.
func (a *aggregate) closed(s *aggSeries, w *aggWindow, clock int64, final bool) bool {
	if final && a.state == nil {
		return true
	}
	due := w.start + a.win + a.grace
	return clock >= due && (final || s.newest >= due || clock-s.seen >= int64(QuietClose))
}

// NextFlush returns the earliest time a window will be closed, assuming no
// more readings arrive; a reading can only move it later. It looks at every
// series with an open window.
func (a *aggregate) NextFlush() time.Time {
	if a.active == 0 {
		return time.Time{}
	}
	next := int64(math.MaxInt64)
	for _, s := range a.order {
		if len(s.wins) == 0 {
			continue
		}
		// Windows are sorted, and the first closes no later than the rest.
		t := s.wins[0].start + a.win + a.grace
		if s.newest < t {
			t = max(t, s.seen+int64(QuietClose))
		}
		next = min(next, t)
	}
	return time.Unix(0, next)
}

// emit appends the point of window w of series s: per field in the order
// first seen, per function in the configured order. It returns how many
// results were not finite (a sum beyond ±1.8e308) and so left out.
func (a *aggregate) emit(out []protocols.Point, s *aggSeries, w *aggWindow) ([]protocols.Point, int) {
	n := 0
	for i := range w.accs {
		if w.accs[i].n > 0 {
			n++
		}
	}
	if n == 0 {
		return out, 0
	}
	bad := 0
	fields := carve(&a.fslab, n*len(a.fns))[:0]
	for i := range w.accs {
		c := &w.accs[i]
		if c.n == 0 {
			continue
		}
		if a.percentiles {
			slices.Sort(c.vals)
		}
		names := a.outNames(s.fields[i])
		for k, fn := range a.fns {
			v := c.result(fn)
			if v.Kind() == protocols.KindFloat && !finite(v.FloatV()) {
				bad++
				continue
			}
			fields = append(fields, protocols.Field{Key: names[k], Value: v})
		}
	}
	if len(fields) == 0 {
		return out, bad
	}
	tags := carve(&a.tslab, len(s.tags)) // each point owns its tags, as stages expect
	copy(tags, s.tags)
	return append(out, protocols.Point{
		Measurement: s.measurement,
		Tags:        tags,
		Fields:      fields,
		Time:        w.start,
	}), bad
}

// carve cuts n elements off the chunk in *slab, with a full slice
// expression so that appending to one point never reaches the next.
func carve[T any](slab *[]T, n int) []T {
	if n == 0 {
		return nil
	}
	if len(*slab) < n {
		*slab = make([]T, max(1024, n))
	}
	out := (*slab)[:n:n]
	*slab = (*slab)[n:]
	return out
}

// outNames returns the output field names of field, one per function.
func (a *aggregate) outNames(field string) []string {
	if names, ok := a.names[field]; ok {
		return names
	}
	names := make([]string, len(a.fns))
	for k, fn := range a.fns {
		names[k] = field
		if a.suffix {
			names[k] = field + "_" + fn.String()
		}
	}
	if len(a.names) < a.maxSeries {
		a.names[field] = names
	}
	return names
}

// result computes fn; vals must be sorted. count is an integer, the rest
// floats; stddev is the population standard deviation of the window.
func (c *acc) result(fn aggFunc) protocols.Value {
	switch fn {
	case fnMean:
		return protocols.Float(c.mean)
	case fnMin:
		return protocols.Float(c.min)
	case fnMax:
		return protocols.Float(c.max)
	case fnCount:
		return protocols.Int(c.n)
	case fnSum:
		return protocols.Float(c.sum)
	case fnFirst:
		return protocols.Float(c.first)
	case fnLast:
		return protocols.Float(c.last)
	case fnStddev:
		return protocols.Float(math.Sqrt(max(c.m2, 0) / float64(c.n)))
	case fnP50:
		return protocols.Float(quantile(c.vals, 0.50))
	case fnP95:
		return protocols.Float(quantile(c.vals, 0.95))
	case fnP99:
		return protocols.Float(quantile(c.vals, 0.99))
	}
	return protocols.Value{}
}

// quantile interpolates linearly between the closest ranks of sorted (the
// method of numpy's default and Prometheus' quantile_over_time).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := q * float64(len(sorted)-1)
	lo := int(rank)
	if lo+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	frac := rank - float64(lo)
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}

// find returns the index of field key, trying hint first.
func (s *aggSeries) find(key string, hint int) int {
	if hint >= 0 && hint < len(s.fields) && s.fields[hint] == key {
		return hint
	}
	return slices.Index(s.fields, key)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// aggregateState is the file an aggregate keeps between runs: its open
// windows and, per series, the end of the last window it emitted.
type aggregateState struct {
	Version   int                    `json:"version"`
	Window    int64                  `json:"window"`    // ns; state of another window size is not reused
	Functions []string               `json:"functions"` // likewise
	ForgotTo  int64                  `json:"forgot_to"`
	Series    []aggregateSeriesState `json:"series"`
}

type aggregateSeriesState struct {
	Measurement string                 `json:"measurement"`
	Tags        []protocols.Tag        `json:"tags,omitempty"`
	Fields      []string               `json:"fields"`
	Done        int64                  `json:"done"`
	Windows     []aggregateWindowState `json:"windows,omitempty"`
}

type aggregateWindowState struct {
	Start int64      `json:"start"`
	Accs  []accState `json:"accs"`
}

type accState struct {
	N      int64     `json:"n"`
	Sum    float64   `json:"sum"`
	Mean   float64   `json:"mean"`
	M2     float64   `json:"m2"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	First  float64   `json:"first"`
	Last   float64   `json:"last"`
	FirstT int64     `json:"first_t"`
	LastT  int64     `json:"last_t"`
	Vals   []float64 `json:"vals,omitempty"`
	Seen   int64     `json:"seen,omitempty"`
}

const aggregateStateVersion = 1

func (a *aggregate) functionNames() []string {
	names := make([]string, len(a.fns))
	for i, fn := range a.fns {
		names[i] = fn.String()
	}
	return names
}

func (a *aggregate) snapshot() *aggregateState {
	st := &aggregateState{
		Version:   aggregateStateVersion,
		Window:    a.win,
		Functions: a.functionNames(),
		ForgotTo:  a.forgotTo,
		Series:    make([]aggregateSeriesState, 0, len(a.order)),
	}
	for _, s := range a.order {
		ss := aggregateSeriesState{Measurement: s.measurement, Tags: s.tags, Fields: s.fields, Done: s.done}
		for _, w := range s.wins {
			ws := aggregateWindowState{Start: w.start, Accs: make([]accState, len(w.accs))}
			for i, c := range w.accs {
				if !finite(c.sum) || !finite(c.mean) || !finite(c.m2) {
					// JSON has no Inf; a sum past ±1.8e308 would emit no
					// result anyway.
					continue
				}
				ws.Accs[i] = accState{N: c.n, Sum: c.sum, Mean: c.mean, M2: c.m2, Min: c.min, Max: c.max,
					First: c.first, Last: c.last, FirstT: c.firstT, LastT: c.lastT, Vals: c.vals, Seen: c.seen}
			}
			ss.Windows = append(ss.Windows, ws)
		}
		st.Series = append(st.Series, ss)
	}
	return st
}

func (a *aggregate) restore(st *aggregateState) {
	if st.Version != aggregateStateVersion || st.Window != a.win || !slices.Equal(st.Functions, a.functionNames()) {
		a.log.Warn("ignoring aggregate state of another version, window or function list; its open windows are lost",
			"file", a.state.path, "window", time.Duration(st.Window), "functions", st.Functions)
		return
	}
	a.forgotTo = st.ForgotTo
	windows := 0
	for _, ss := range st.Series {
		key := string(appendKey(nil, &protocols.Point{Measurement: ss.Measurement, Tags: ss.Tags}))
		if ss.Measurement == "" || a.series[key] != nil || a.nfields+len(ss.Fields) > a.maxSeries {
			continue
		}
		// newest and seen start afresh: the readings that would close the
		// restored windows arrive in this run, or QuietClose after its start.
		s := &aggSeries{key: key, measurement: ss.Measurement, tags: ss.Tags, fields: ss.Fields, done: ss.Done,
			newest: math.MinInt64, seen: a.now().UnixNano()}
		for _, ws := range ss.Windows {
			if len(ws.Accs) > len(s.fields) || (len(s.wins) > 0 && ws.Start <= s.wins[len(s.wins)-1].start) {
				continue // not a file this code wrote
			}
			w := &aggWindow{start: ws.Start, accs: make([]acc, len(ws.Accs))}
			for i, c := range ws.Accs {
				w.accs[i] = acc{n: c.N, sum: c.Sum, mean: c.Mean, m2: c.M2, min: c.Min, max: c.Max,
					first: c.First, last: c.Last, firstT: c.FirstT, lastT: c.LastT, vals: c.Vals, seen: c.Seen}
			}
			s.wins = append(s.wins, w)
			windows++
		}
		if len(s.wins) > 0 {
			a.active++
		}
		a.series[key] = s
		a.order = append(a.order, s)
		a.nfields += len(s.fields)
	}
	a.log.Info("aggregate state loaded", "file", a.state.path, "series", len(a.order), "open_windows", windows)
}

// claim removes the state file once the chain runs (see stateful).
func (a *aggregate) claim() error {
	if a.state == nil {
		return nil
	}
	return a.state.remove()
}

// Close saves the open windows and watermarks when the stage has a state
// file; without one, the final Flush has already emitted everything.
func (a *aggregate) Close() error {
	if a.state == nil {
		if a.active > 0 {
			a.log.Warn("closing with open windows and no state dir; their values are lost (call Flush(true) first)", "series", a.active)
		}
		return nil
	}
	if err := a.state.save(a.snapshot()); err != nil {
		return err
	}
	a.log.Info("aggregate state saved", "file", a.state.path, "series", len(a.order), "open_series", a.active)
	return nil
}

// Interface guards.
var (
	_ Stage    = (*aggregate)(nil)
	_ Flusher  = (*aggregate)(nil)
	_ stateful = (*aggregate)(nil)
)
