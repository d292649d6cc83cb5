package aqi

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/enrich/internal/statemap"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed sample.yaml
var sampleConfig string

func init() {
	enrich.Register("aqi", func() enrich.Stage { return New() })
}

// The standards a stage can compute.
const (
	USEPA2024 = "us-epa-2024"
	EUEAQI    = "eu-eaqi"
)

// Molar-mass factors at 25 °C and 1 atm, µg/m³ per ppb (see package units).
const (
	no2Factor = 1.88
	o3Factor  = 1.96
)

// AQI is the "aqi" stage. Its exported fields are its YAML configuration.
type AQI struct {
	// Measurement is the measurement whose fields carry the pollutants.
	Measurement string `yaml:"measurement"`
	// Output is the measurement of the derived points.
	Output string `yaml:"output"`
	// Standards selects the indices to compute: us-epa-2024, eu-eaqi.
	Standards []string `yaml:"standards"`
	// Fields names the pollutant fields; a pollutant whose field is empty
	// is not used.
	Fields Fields `yaml:"fields"`
	// Units says how NO2 and O3 arrive: ug/m3 (the default) or ppb.
	Units GasUnits `yaml:"units"`
	// MinCoverage is the share of an averaging period's hours that must
	// have data (EPA: 75 %, i.e. 18 of 24 hours, 6 of 8).
	MinCoverage float64 `yaml:"min_coverage"`
	// Every is how often a station gets a derived point at most: the first
	// reading in each new period of this length (aligned to the epoch)
	// triggers one, stamped with that reading's time.
	Every confx.Duration `yaml:"every"`
	// SkipFlagged leaves readings whose field already has a flag (from the
	// schema stage, say) out of the averages.
	SkipFlagged bool `yaml:"skip_flagged"`
	// MaxStations bounds the per-station state.
	MaxStations int `yaml:"max_stations"`

	name     string
	log      *slog.Logger
	epa, eu  bool
	fields   [nPollutants]string
	flagKeys [nPollutants]string
	toUG     [nPollutants]float64 // factor from the field's unit to µg/m³
	toPPB    [nPollutants]float64 // factor from the field's unit to ppb (gases)
	every    int64
	need24   int // hours with data needed in a 24-hour period
	need8    int
	state    *statemap.Map[station]

	derived   *metrics.Counter
	untracked *metrics.Counter
}

// Fields names the field of each pollutant.
type Fields struct {
	PM25 string `yaml:"pm25"`
	PM10 string `yaml:"pm10"`
	NO2  string `yaml:"no2"`
	O3   string `yaml:"o3"`
}

// GasUnits gives the units NO2 and O3 arrive in.
type GasUnits struct {
	NO2 string `yaml:"no2"`
	O3  string `yaml:"o3"`
}

// hoursKept is the longest averaging period, and the size of each ring.
const hoursKept = 24

// station is the rolling state of one station: per pollutant, the sum and
// count of readings in each of the last 24 clock hours. That is all any
// averaging period needs (EPA averages hourly means), so memory per station
// is fixed at about 2 KB however often it reports.
type station struct {
	mu       sync.Mutex
	hours    [nPollutants][hoursKept]bucket
	lastEmit int64 // Every-period of the last derived point
}

type bucket struct {
	hour int64 // hours since the epoch
	sum  float64
	n    int32
}

// New returns an AQI stage with the defaults.
func New() *AQI {
	return &AQI{
		Measurement: "air",
		Output:      "aqi",
		Standards:   []string{USEPA2024, EUEAQI},
		Fields:      Fields{PM25: "pm25", PM10: "pm10", NO2: "no2", O3: "o3"},
		Units:       GasUnits{NO2: "ug/m3", O3: "ug/m3"},
		MinCoverage: 0.75,
		Every:       confx.Duration(time.Minute),
		SkipFlagged: true,
		MaxStations: 100000,
	}
}

// SampleConfig returns the documented example configuration.
func (*AQI) SampleConfig() string { return sampleConfig }

// Name returns the stage's name in the chain.
func (a *AQI) Name() string { return a.name }

// Init validates the configuration.
func (a *AQI) Init(env enrich.Env) error {
	a.name, a.log = env.Name, env.Logger()
	a.derived = env.Counter("aqi_derived_points_total")
	a.untracked = env.Counter("aqi_untracked_points_total")
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, confx.Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if a.Measurement == "" {
		bad("measurement", "must not be empty")
	}
	if a.Output == "" || a.Output == a.Measurement {
		bad("output", "must be a measurement other than %q", a.Measurement)
	}
	a.epa, a.eu = false, false
	for i, s := range a.Standards {
		switch s {
		case USEPA2024:
			a.epa = true
		case EUEAQI:
			a.eu = true
		default:
			bad(fmt.Sprintf("standards[%d]", i), "unknown standard %q (known: %s, %s)", s, USEPA2024, EUEAQI)
		}
	}
	if !a.epa && !a.eu && len(errs) == 0 {
		bad("standards", "name at least one standard")
	}
	a.fields = [nPollutants]string{pm25: a.Fields.PM25, pm10: a.Fields.PM10, o3: a.Fields.O3, no2: a.Fields.NO2}
	if a.fields == [nPollutants]string{} {
		bad("fields", "name at least one pollutant field")
	}
	for p, f := range a.fields {
		a.flagKeys[p] = enrich.FlagKey(f)
		a.toUG[p], a.toPPB[p] = 1, 1
	}
	for _, g := range []struct {
		p      int
		unit   string
		factor float64
		path   string
	}{{no2, a.Units.NO2, no2Factor, "units.no2"}, {o3, a.Units.O3, o3Factor, "units.o3"}} {
		switch g.unit {
		case "ug/m3", "µg/m³", "µg/m3":
			a.toUG[g.p], a.toPPB[g.p] = 1, 1/g.factor
		case "ppb":
			a.toUG[g.p], a.toPPB[g.p] = g.factor, 1
		default:
			bad(g.path, "want ug/m3 or ppb, got %q", g.unit)
		}
	}
	if !(a.MinCoverage >= 0 && a.MinCoverage <= 1) {
		bad("min_coverage", "want a share between 0 and 1, got %v", a.MinCoverage)
	}
	if a.Every.D() < time.Second {
		bad("every", "want at least 1s, got %v", a.Every)
	}
	a.every = max(int64(a.Every.D()), 1)
	a.need24 = max(1, int(math.Ceil(a.MinCoverage*24-1e-9)))
	a.need8 = max(1, int(math.Ceil(a.MinCoverage*8-1e-9)))
	a.state = statemap.New(a.MaxStations, func() *station { return &station{lastEmit: math.MinInt64} })
	return errors.Join(errs...)
}

// Enrich feeds the pollutant readings into each station's state and appends
// a derived point per station and Every period.
func (a *AQI) Enrich(pts []protocols.Point) ([]protocols.Point, error) {
	var out []protocols.Point
	var sl enrich.Slab
	untracked := 0
	for i := range pts {
		p := &pts[i]
		if p.Measurement != a.Measurement {
			continue
		}
		id, ok := enrich.TagValue(p, enrich.StationTag)
		if !ok {
			continue
		}
		var vals [nPollutants]float64
		var have [nPollutants]bool
		seen := false
		for k, f := range a.fields {
			if f == "" {
				continue
			}
			j := enrich.FieldIndex(p, f)
			if j < 0 {
				continue
			}
			v := p.Fields[j].Value
			if v.Kind() != protocols.KindFloat && v.Kind() != protocols.KindInt && v.Kind() != protocols.KindUint {
				continue
			}
			if a.SkipFlagged && enrich.Flags(p, a.flagKeys[k]) != 0 {
				continue
			}
			vals[k], _ = v.AsFloat()
			have[k], seen = true, true
		}
		if !seen {
			continue
		}
		st, ok := a.state.Get(id)
		if !ok {
			untracked++
			continue
		}
		hour := floorDiv(p.Time, int64(time.Hour))
		period := floorDiv(p.Time, a.every)
		st.mu.Lock()
		for k := range vals {
			if have[k] {
				st.add(k, hour, vals[k])
			}
		}
		var r result
		emit := period > st.lastEmit
		if emit {
			st.lastEmit = period
			r = a.compute(st, hour)
		}
		st.mu.Unlock()
		if emit && (r.epaOK || r.euOK) {
			out = append(out, a.point(&sl, p, r))
		}
	}
	a.untracked.Add(untracked)
	if len(out) == 0 {
		return pts, nil
	}
	a.derived.Add(len(out))
	return append(pts, out...), nil
}

// add puts a reading into its hour's bucket. A reading older than what the
// ring holds for its slot is too old to matter and is left out.
func (st *station) add(p int, hour int64, x float64) {
	b := &st.hours[p][mod(hour, hoursKept)]
	switch {
	case b.hour == hour:
	case b.hour < hour || b.n == 0:
		*b = bucket{hour: hour}
	default:
		return
	}
	b.sum += x
	b.n++
}

// mean returns the mean of the hourly means of the hours hour-w+1 … hour
// and how many of those hours had data.
func (st *station) mean(p int, hour int64, w int) (float64, int) {
	sum, n := 0.0, 0
	for k := int64(0); k < int64(w); k++ {
		h := hour - k
		b := &st.hours[p][mod(h, hoursKept)]
		if b.hour == h && b.n > 0 {
			sum += b.sum / float64(b.n)
			n++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return sum / float64(n), n
}

// result is what one derived point reports.
type result struct {
	epa, eu         int
	epaPoll, euPoll int
	epaOK, euOK     bool
}

// compute evaluates both standards at the hour of the triggering reading;
// st.mu is held.
func (a *AQI) compute(st *station, hour int64) result {
	var r result
	pick := func(index, pollutant int) {
		if !r.epaOK || index > r.epa {
			r.epa, r.epaPoll, r.epaOK = index, pollutant, true
		}
	}
	pickEU := func(band, pollutant int) {
		if !r.euOK || band > r.eu {
			r.eu, r.euPoll, r.euOK = band, pollutant, true
		}
	}
	// PM: 24-hour means for both standards.
	for _, p := range [2]int{pm25, pm10} {
		if a.fields[p] == "" {
			continue
		}
		m, n := st.mean(p, hour, 24)
		if n < a.need24 {
			continue
		}
		if a.epa {
			var c int64
			var idx int
			if p == pm25 {
				c = truncate(m, 10)
				idx, _ = subIndex(c, epaPM25)
			} else {
				c = truncate(m, 1)
				idx, _ = subIndex(c, epaPM10)
			}
			pick(idx, p)
		}
		if a.eu {
			pickEU(eaqiBand(p, m*a.toUG[p]), p)
		}
	}
	if a.fields[o3] != "" {
		h1, n1 := st.mean(o3, hour, 1)
		if a.epa {
			if m, n := st.mean(o3, hour, 8); n >= a.need8 {
				idx, _ := subIndex(truncate(m*a.toPPB[o3], 1), epaO38h)
				pick(idx, o3)
			}
			if n1 > 0 {
				if idx, ok := subIndex(truncate(h1*a.toPPB[o3], 1), epaO31h); ok {
					pick(idx, o3)
				}
			}
		}
		if a.eu && n1 > 0 {
			pickEU(eaqiBand(o3, h1*a.toUG[o3]), o3)
		}
	}
	if a.fields[no2] != "" {
		if h1, n1 := st.mean(no2, hour, 1); n1 > 0 {
			if a.epa {
				idx, _ := subIndex(truncate(h1*a.toPPB[no2], 1), epaNO2)
				pick(idx, no2)
			}
			if a.eu {
				pickEU(eaqiBand(no2, h1*a.toUG[no2]), no2)
			}
		}
	}
	return r
}

// point builds the derived point for the reading p.
func (a *AQI) point(sl *enrich.Slab, p *protocols.Point, r result) protocols.Point {
	tags := sl.Tags(len(p.Tags))
	copy(tags, p.Tags)
	n := 0
	if r.epaOK {
		n += 3
	}
	if r.euOK {
		n += 3
	}
	fields := sl.Fields(n)[:0]
	if r.epaOK {
		fields = append(fields,
			protocols.Field{Key: "us_epa", Value: protocols.Int(int64(r.epa))},
			protocols.Field{Key: "us_epa_category", Value: protocols.String(EPACategory(r.epa))},
			protocols.Field{Key: "us_epa_pollutant", Value: protocols.String(pollutantNames[r.epaPoll])})
	}
	if r.euOK {
		fields = append(fields,
			protocols.Field{Key: "eu_eaqi", Value: protocols.Int(int64(r.eu))},
			protocols.Field{Key: "eu_eaqi_category", Value: protocols.String(EAQICategory(r.eu))},
			protocols.Field{Key: "eu_eaqi_pollutant", Value: protocols.String(pollutantNames[r.euPoll])})
	}
	return protocols.Point{Measurement: a.Output, Tags: tags, Fields: fields, Time: p.Time}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func mod(a, b int64) int64 { return a - floorDiv(a, b)*b }

// Interface guards.
var _ enrich.Stage = (*AQI)(nil)
