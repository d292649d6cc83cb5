package process

import (
	"bytes"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

// DefaultMaxSeries bounds the series a deadband or aggregate stage keeps
// state for, unless its max_series says otherwise.
const DefaultMaxSeries = 100_000

// deadbandConfig is the YAML block of a deadband stage.
type deadbandConfig struct {
	Measurement []string `yaml:"measurement"` // default: all
	Fields      []string `yaml:"fields"`      // default: all numeric fields
	// A value is sent when it differs from the last sent one by more than
	// max(absolute, percent/100 × |last sent|); with neither set, when it
	// differs at all.
	Absolute  float64        `yaml:"absolute"`
	Percent   float64        `yaml:"percent"`
	Heartbeat confx.Duration `yaml:"heartbeat"` // send anyway after this much silence; 0: never
	MaxSeries int            `yaml:"max_series"`
}

// deadband reports by exception: per series (measurement, tags, field) it
// passes a numeric value only when it moved out of the band around the last
// value it passed, or when the series has been silent for the heartbeat.
// Times are the points' own, so replayed history is judged as it happened.
type deadband struct {
	measurement, fields matcher
	abs, frac           float64
	heartbeat           int64
	maxSeries           int

	series  map[string]*dbSeries // by appendKey: measurement and tags
	nfields int                  // field series held, bounded by maxSeries
	key     []byte               // scratch for series keys
	pruned  time.Time            // last pruning of a full table

	state *stateFile
	now   func() time.Time
	log   *slog.Logger

	suppressed, overflow *metrics.Counter
	gauge                *metrics.Gauge
}

type dbSeries struct {
	measurement string
	tags        []protocols.Tag // for the state file
	fields      []dbField
}

// dbField is the last value sent of one series and its time.
type dbField struct {
	key   string
	value float64
	time  int64
}

func buildDeadband(b *builder) Stage {
	cfg := deadbandConfig{MaxSeries: DefaultMaxSeries}
	if !b.decode(&cfg) {
		return nil
	}
	d := &deadband{
		measurement: b.globs("measurement", cfg.Measurement, matchAll),
		fields:      b.globs("fields", cfg.Fields, matchAll),
		abs:         cfg.Absolute,
		frac:        cfg.Percent / 100,
		heartbeat:   int64(cfg.Heartbeat),
		maxSeries:   cfg.MaxSeries,
		series:      map[string]*dbSeries{},
		state:       newStateFile(b.env.StateDir, b.typ, b.name),
		now:         b.env.Now,
		log:         b.log(),
		suppressed:  b.dropped("deadband"),
		overflow:    b.passed("max_series"),
		gauge:       b.seriesGauge(),
	}
	if !(cfg.Absolute >= 0) || math.IsInf(cfg.Absolute, 0) {
		b.errorf("absolute", "must be a finite number >= 0, got %v", cfg.Absolute)
	}
	if !(cfg.Percent >= 0) || math.IsInf(cfg.Percent, 0) {
		b.errorf("percent", "must be a finite number >= 0, got %v", cfg.Percent)
	}
	if cfg.Heartbeat < 0 {
		b.errorf("heartbeat", "must not be negative, got %v", cfg.Heartbeat)
	}
	if cfg.MaxSeries < 1 {
		b.errorf("max_series", "must be at least 1, got %d", cfg.MaxSeries)
	}
	if len(b.probs) > 0 || d.state == nil {
		return d
	}
	var st deadbandState
	found, err := d.state.load(&st)
	switch {
	case err != nil:
		// Lost state costs one extra value per series; refusing to start
		// would cost every value until someone deletes the file.
		d.log.Warn("ignoring unreadable deadband state; every series starts afresh", "err", err)
	case found:
		d.restore(&st, d.now())
		d.log.Info("deadband state loaded", "file", d.state.path, "series", d.nfields)
	}
	d.gauge.Set(float64(d.nfields))
	return d
}

// Process drops the numeric values of selected series that stayed within
// the band; other fields pass untouched, and a point left without fields is
// dropped.
func (d *deadband) Process(now time.Time, pts []protocols.Point) []protocols.Point {
	var suppressed, overflow int
	out := pts[:0]
	for i := range pts {
		p := &pts[i]
		if !d.measurement.match(p.Measurement) {
			out = append(out, *p)
			continue
		}
		var s *dbSeries
		looked := false
		kept := p.Fields[:0]
		for j, fl := range p.Fields {
			x, ok := numeric(fl.Value)
			if !ok || !finite(x) || !d.fields.match(fl.Key) {
				kept = append(kept, fl)
				continue
			}
			if !looked {
				s, looked = d.lookup(p, now), true
			}
			if s == nil {
				overflow++
				kept = append(kept, fl)
				continue
			}
			k := s.find(fl.Key, j)
			if k < 0 {
				if !d.room(now) {
					overflow++
				} else {
					s.fields = append(s.fields, dbField{key: fl.Key, value: x, time: p.Time})
					d.nfields++
				}
				kept = append(kept, fl)
				continue
			}
			last := &s.fields[k]
			switch {
			case p.Time < last.time:
				// Older than what was sent: history being replayed out of
				// order. Pass it and keep judging against the newer value.
			case d.moved(last.value, x) || (d.heartbeat > 0 && p.Time-last.time >= d.heartbeat):
				last.value, last.time = x, p.Time
			default:
				suppressed++
				continue
			}
			kept = append(kept, fl)
		}
		clear(p.Fields[len(kept):])
		p.Fields = kept
		if len(kept) > 0 {
			out = append(out, *p)
		}
	}
	clear(pts[len(out):])
	d.suppressed.Add(suppressed)
	d.overflow.Add(overflow)
	d.gauge.Set(float64(d.nfields))
	return out
}

// moved reports whether x left the band around last. With both bands set
// the wider one counts, so absolute acts as a floor where a percentage of a
// value near zero would let every wiggle through.
func (d *deadband) moved(last, x float64) bool {
	return math.Abs(x-last) > max(d.abs, d.frac*math.Abs(last))
}

// lookup returns the state of p's measurement and tags, creating it when
// there is room, or nil.
func (d *deadband) lookup(p *protocols.Point, now time.Time) *dbSeries {
	d.key = appendKey(d.key[:0], p)
	if s, ok := d.series[string(d.key)]; ok {
		return s
	}
	if !d.room(now) {
		return nil
	}
	s := &dbSeries{measurement: p.Measurement, tags: slices.Clone(p.Tags)}
	d.series[string(d.key)] = s
	return s
}

// room reports whether another field series fits, first forgetting series
// silent for longer than the heartbeat when the table is full: their next
// value is sent anyway, so remembering them changes nothing.
func (d *deadband) room(now time.Time) bool {
	if d.nfields < d.maxSeries {
		return true
	}
	if d.heartbeat > 0 && now.Sub(d.pruned) >= time.Minute {
		d.pruned = now
		d.prune(now)
	}
	return d.nfields < d.maxSeries
}

// prune forgets field series last sent more than a heartbeat before now.
func (d *deadband) prune(now time.Time) {
	if d.heartbeat <= 0 {
		return
	}
	cutoff := now.UnixNano() - d.heartbeat
	for k, s := range d.series {
		n := len(s.fields)
		s.fields = slices.DeleteFunc(s.fields, func(f dbField) bool { return f.time < cutoff })
		d.nfields -= n - len(s.fields)
		if len(s.fields) == 0 {
			delete(d.series, k)
		}
	}
}

// find returns the index of field key, trying hint first: points of one
// series usually carry their fields in the same order.
func (s *dbSeries) find(key string, hint int) int {
	if hint >= 0 && hint < len(s.fields) && s.fields[hint].key == key {
		return hint
	}
	for i := range s.fields {
		if s.fields[i].key == key {
			return i
		}
	}
	return -1
}

// deadbandState is the file a deadband keeps between runs.
type deadbandState struct {
	Version int                   `json:"version"`
	Series  []deadbandSeriesState `json:"series"`
}

type deadbandSeriesState struct {
	Measurement string               `json:"measurement"`
	Tags        []protocols.Tag      `json:"tags,omitempty"`
	Fields      []deadbandFieldState `json:"fields"`
}

type deadbandFieldState struct {
	Field string  `json:"field"`
	Value float64 `json:"value"`
	Time  int64   `json:"time"` // ns, the time of the point that carried the value
}

const deadbandStateVersion = 1

func (d *deadband) snapshot() *deadbandState {
	st := &deadbandState{Version: deadbandStateVersion, Series: make([]deadbandSeriesState, 0, len(d.series))}
	for _, s := range d.series {
		ss := deadbandSeriesState{Measurement: s.measurement, Tags: s.tags, Fields: make([]deadbandFieldState, len(s.fields))}
		for i, f := range s.fields {
			ss.Fields[i] = deadbandFieldState{Field: f.key, Value: f.value, Time: f.time}
		}
		st.Series = append(st.Series, ss)
	}
	// Sorted, so that the same state always writes the same file.
	slices.SortFunc(st.Series, func(a, b deadbandSeriesState) int {
		return bytes.Compare(appendKey(nil, &protocols.Point{Measurement: a.Measurement, Tags: a.Tags}),
			appendKey(nil, &protocols.Point{Measurement: b.Measurement, Tags: b.Tags}))
	})
	return st
}

func (d *deadband) restore(st *deadbandState, now time.Time) {
	if st.Version != deadbandStateVersion {
		d.log.Warn("ignoring deadband state of another version", "version", st.Version)
		return
	}
	for _, ss := range st.Series {
		key := string(appendKey(nil, &protocols.Point{Measurement: ss.Measurement, Tags: ss.Tags}))
		if ss.Measurement == "" || d.series[key] != nil {
			continue
		}
		s := &dbSeries{measurement: ss.Measurement, tags: ss.Tags}
		for _, f := range ss.Fields {
			if f.Field == "" || !finite(f.Value) || d.nfields >= d.maxSeries || s.find(f.Field, -1) >= 0 {
				continue
			}
			s.fields = append(s.fields, dbField{key: f.Field, value: f.Value, time: f.Time})
			d.nfields++
		}
		if len(s.fields) > 0 {
			d.series[key] = s
		}
	}
	d.prune(now)
}

// claim removes the state file once the chain runs (see stateful).
func (d *deadband) claim() error {
	if d.state == nil {
		return nil
	}
	return d.state.remove()
}

// Close writes the last sent value and time of every series, forgetting
// those whose heartbeat has passed.
func (d *deadband) Close() error {
	if d.state == nil {
		return nil
	}
	d.prune(d.now())
	if err := d.state.save(d.snapshot()); err != nil {
		return err
	}
	d.log.Info("deadband state saved", "file", d.state.path, "series", d.nfields)
	return nil
}

// Interface guards.
var (
	_ Stage    = (*deadband)(nil)
	_ stateful = (*deadband)(nil)
)
