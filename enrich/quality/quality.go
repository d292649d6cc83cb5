package quality

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/enrich/internal/statemap"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed sample.yaml
var sampleConfig string

func init() {
	enrich.Register("quality", func() enrich.Stage { return New() })
}

// Quality is the "quality" stage. Its exported fields are its YAML
// configuration.
type Quality struct {
	Checks []Check `yaml:"checks"`
	// MaxStations bounds the per-station state; readings of stations
	// beyond it get the range check only.
	MaxStations int `yaml:"max_stations"`

	name   string
	log    *slog.Logger
	byMeas map[string][]compiled
	nState int // state slots per station: one per compiled check
	// anyStale says whether newest times matter; without a stale check,
	// points of unchecked measurements need no state at all.
	anyStale bool
	state    *statemap.Map[station]

	points    *metrics.Counter
	flagged   *metrics.Counter
	untracked *metrics.Counter
}

// Check sets thresholds for fields of one measurement. Zero values switch a
// check off.
type Check struct {
	Measurement string         `yaml:"measurement"`
	Field       string         `yaml:"field"`
	Fields      []string       `yaml:"fields"`
	Min         *float64       `yaml:"min"`
	Max         *float64       `yaml:"max"`
	Spike       float64        `yaml:"spike"` // largest plausible |Δ| per second
	Flatline    Flatline       `yaml:"flatline"`
	Stale       confx.Duration `yaml:"stale"`
}

// Flatline flags a value repeated Count times in a row, or unchanged For
// a duration; either may be zero.
type Flatline struct {
	Count int            `yaml:"count"`
	For   confx.Duration `yaml:"for"`
}

type compiled struct {
	field, flagKey string
	min, max       float64
	spike          float64
	flatCount      int
	flatFor        int64 // ns
	stale          int64 // ns
	slot           int
}

// station is the state of one station.
type station struct {
	mu     sync.Mutex
	newest int64 // ns; math.MinInt64 before the first point
	fields []fieldState
}

type fieldState struct {
	seen      bool
	last      float64
	lastT     int64
	runStart  int64 // time the current run of identical values began
	runLength int
}

// New returns a Quality stage with no checks.
func New() *Quality { return &Quality{name: "quality", MaxStations: 100000} }

// SampleConfig returns the documented example configuration.
func (*Quality) SampleConfig() string { return sampleConfig }

// Name returns the stage's name in the chain.
func (q *Quality) Name() string { return q.name }

// Init validates the checks.
func (q *Quality) Init(env enrich.Env) error {
	q.name, q.log = env.Name, env.Logger()
	q.points = env.Counter("quality_points_total")
	q.flagged = env.Counter("quality_flags_total")
	q.untracked = env.Counter("quality_untracked_points_total")
	q.byMeas = map[string][]compiled{}
	var errs []error
	seen := map[[2]string]bool{}
	for i, c := range q.Checks {
		bad := func(key, format string, args ...any) {
			errs = append(errs, confx.Problem{Path: fmt.Sprintf("checks[%d].%s", i, key), Msg: fmt.Sprintf(format, args...)})
		}
		fields := c.Fields
		if c.Field != "" {
			fields = append([]string{c.Field}, fields...)
		}
		if c.Measurement == "" {
			bad("measurement", "must not be empty")
		}
		if len(fields) == 0 {
			bad("fields", "name at least one field (field or fields)")
		}
		if c.Min != nil && c.Max != nil && *c.Min > *c.Max {
			bad("min", "min %v is above max %v", *c.Min, *c.Max)
		}
		if c.Spike < 0 || math.IsNaN(c.Spike) {
			bad("spike", "must not be negative")
		}
		if c.Flatline.Count < 0 || c.Flatline.Count == 1 {
			bad("flatline.count", "want 0 (off) or at least 2, got %d", c.Flatline.Count)
		}
		if c.Flatline.For < 0 || c.Stale < 0 {
			bad("stale", "durations must not be negative")
		}
		for _, f := range fields {
			k := [2]string{c.Measurement, f}
			if seen[k] {
				bad("fields", "%s.%s is checked twice", c.Measurement, f)
				continue
			}
			seen[k] = true
			cc := compiled{field: f, flagKey: enrich.FlagKey(f), min: math.Inf(-1), max: math.Inf(1),
				spike: c.Spike, flatCount: c.Flatline.Count, flatFor: int64(c.Flatline.For), stale: int64(c.Stale), slot: q.nState}
			if c.Min != nil {
				cc.min = *c.Min
			}
			if c.Max != nil {
				cc.max = *c.Max
			}
			q.nState++
			q.anyStale = q.anyStale || cc.stale > 0
			q.byMeas[c.Measurement] = append(q.byMeas[c.Measurement], cc)
		}
	}
	n := q.nState
	q.state = statemap.New(q.MaxStations, func() *station {
		return &station{newest: math.MinInt64, fields: make([]fieldState, n)}
	})
	return errors.Join(errs...)
}

// Enrich checks the declared fields of every point.
func (q *Quality) Enrich(pts []protocols.Point) ([]protocols.Point, error) {
	var sl enrich.Slab
	flags, untracked := 0, 0
	for i := range pts {
		p := &pts[i]
		checks := q.byMeas[p.Measurement]
		if len(checks) == 0 && !q.anyStale {
			continue
		}
		id, hasStation := enrich.TagValue(p, enrich.StationTag)
		var st *station
		if hasStation {
			var ok bool
			if st, ok = q.state.Get(id); !ok {
				untracked++
			}
		}
		if st == nil {
			flags += rangeOnly(&sl, p, checks)
			continue
		}
		st.mu.Lock()
		if p.Time > st.newest {
			st.newest = p.Time
		}
		for k := range checks {
			flags += st.check(&sl, p, &checks[k])
		}
		st.mu.Unlock()
	}
	q.points.Add(len(pts))
	q.flagged.Add(flags)
	q.untracked.Add(untracked)
	return pts, nil
}

func rangeOnly(sl *enrich.Slab, p *protocols.Point, checks []compiled) int {
	n := 0
	for k := range checks {
		c := &checks[k]
		if j := enrich.FieldIndex(p, c.field); j >= 0 {
			if x, ok := number(p.Fields[j].Value); ok && !(x >= c.min && x <= c.max) {
				sl.AddFlag(p, c.flagKey, enrich.FlagRange)
				n++
			}
		}
	}
	return n
}

// check runs one check on p, updating the station's state; st.mu is held.
// It returns the number of findings.
func (st *station) check(sl *enrich.Slab, p *protocols.Point, c *compiled) int {
	j := enrich.FieldIndex(p, c.field)
	if j < 0 {
		return 0
	}
	x, ok := number(p.Fields[j].Value)
	if !ok {
		return 0 // the schema stage flags wrong types
	}
	var flags uint64
	if !(x >= c.min && x <= c.max) {
		flags |= enrich.FlagRange
	}
	if c.stale > 0 && st.newest-p.Time > c.stale {
		flags |= enrich.FlagStale
	}
	fs := &st.fields[c.slot]
	switch {
	case !fs.seen:
		*fs = fieldState{seen: true, last: x, lastT: p.Time, runStart: p.Time, runLength: 1}
	case p.Time > fs.lastT:
		if c.spike > 0 && math.Abs(x-fs.last)/(float64(p.Time-fs.lastT)/1e9) > c.spike {
			flags |= enrich.FlagSpike
		}
		if x == fs.last {
			fs.runLength++
		} else {
			fs.runStart, fs.runLength = p.Time, 1
		}
		if (c.flatCount > 0 && fs.runLength >= c.flatCount) || (c.flatFor > 0 && fs.runLength > 1 && p.Time-fs.runStart >= c.flatFor) {
			flags |= enrich.FlagFlatline
		}
		fs.last, fs.lastT = x, p.Time
	}
	if flags == 0 {
		return 0
	}
	sl.AddFlag(p, c.flagKey, flags)
	return bits.OnesCount64(flags)
}

// number returns a numeric field's value; bools and strings are not numbers
// here.
func number(v protocols.Value) (float64, bool) {
	switch v.Kind() {
	case protocols.KindFloat, protocols.KindInt, protocols.KindUint:
		x, _ := v.AsFloat()
		return x, true
	}
	return 0, false
}

// Interface guards.
var _ enrich.Stage = (*Quality)(nil)
