package sim

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed sample.yaml
var sampleConfig string

func init() {
	protocols.Register("sim", func() protocols.Input { return New() })
}

// Limits checked by Init.
const (
	MaxStations = 100000
	MinInterval = time.Millisecond
)

// Params is everything Generate depends on.
type Params struct {
	Stations int
	Seed     int64
	Interval time.Duration
	Start    time.Time // time of tick 0
}

// Input is the "sim" input: it emits Generate(params, tick) for tick 0, 1, …
// Its exported fields are its YAML configuration.
type Input struct {
	Stations int            `yaml:"stations"`
	Seed     int64          `yaml:"seed"`
	Interval confx.Duration `yaml:"interval"`
	Start    string         `yaml:"start"` // RFC 3339, or a negative offset from now such as -1h; empty: now; aligned down to Interval
	Ticks    int            `yaml:"ticks"` // 0: until the context is done
	Realtime bool           `yaml:"realtime"`

	log   *slog.Logger
	start time.Time     // parsed Start, zero when Start is empty or relative
	back  time.Duration // how far before now a relative Start ("-1h") lies
}

// New returns an Input with the documented defaults.
func New() *Input {
	return &Input{Stations: 50, Seed: 1, Interval: confx.Duration(10 * time.Second), Realtime: true}
}

// SampleConfig returns the documented example configuration.
func (*Input) SampleConfig() string { return sampleConfig }

// Init checks the configuration. Each problem is a confx.Problem whose Path
// is the key inside the input's block, so the config loader can place it at
// the right file:line.
func (s *Input) Init(log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s.log = log
	var errs []error
	if s.Stations < 1 || s.Stations > MaxStations {
		errs = append(errs, confx.Problem{Path: "stations", Msg: fmt.Sprintf("must be between 1 and %d, got %d", MaxStations, s.Stations)})
	}
	if s.Interval.D() < MinInterval {
		errs = append(errs, confx.Problem{Path: "interval", Msg: fmt.Sprintf("must be at least %v, got %v", MinInterval, s.Interval)})
	}
	if s.Ticks < 0 {
		errs = append(errs, confx.Problem{Path: "ticks", Msg: fmt.Sprintf("must not be negative, got %d", s.Ticks)})
	}
	s.start, s.back = time.Time{}, 0
	switch {
	case s.Start == "":
	case strings.HasPrefix(s.Start, "-"):
		// A relative start replays recent history before going live, which
		// is what a demo wants: charts that are not empty at first sight.
		d, err := confx.ParseDuration(s.Start[1:])
		if err != nil || d <= 0 {
			errs = append(errs, confx.Problem{Path: "start", Msg: fmt.Sprintf("want a negative offset such as -1h or -2d, got %q", s.Start)})
		}
		s.back = d
	default:
		t, err := time.Parse(time.RFC3339Nano, s.Start)
		if err != nil {
			errs = append(errs, confx.Problem{Path: "start", Msg: fmt.Sprintf("want an RFC 3339 time such as 2025-01-01T00:00:00Z or an offset such as -1h, got %q", s.Start)})
		}
		s.start = t
	}
	return errors.Join(errs...)
}

// Params returns the generator parameters, with an empty Start resolved to
// now aligned down to the interval, so that ticks fall on round times.
func (s *Input) Params(now time.Time) Params {
	start := s.start
	if start.IsZero() {
		start = now.Add(-s.back).Truncate(s.Interval.D())
	}
	return Params{Stations: s.Stations, Seed: s.Seed, Interval: s.Interval.D(), Start: start}
}

// retryWait is how long Run waits before offering a tick again that the
// accumulator refused (full or failing buffer); the tick is kept rather than
// skipped, as a device would resend an unacknowledged reading.
const retryWait = time.Second

// Run emits one tick after the other until Ticks ticks are done or ctx is
// done; both return nil.
func (s *Input) Run(ctx context.Context, acc protocols.Accumulator) error {
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	p := s.Params(time.Now())
	s.log.Info("sim started", "stations", p.Stations, "interval", p.Interval, "start", p.Start.Format(time.RFC3339Nano), "ticks", s.Ticks, "realtime", s.Realtime)
	for tick := 0; s.Ticks == 0 || tick < s.Ticks; tick++ {
		if s.Realtime {
			if !sleepUntil(ctx, p.Start.Add(time.Duration(tick)*p.Interval)) {
				return nil
			}
		}
		for {
			if ctx.Err() != nil {
				return nil
			}
			err := acc.Write(ctx, Generate(p, tick))
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("sim: write refused, retrying the same tick", "tick", tick, "err", err)
			if !sleepUntil(ctx, time.Now().Add(retryWait)) {
				return nil
			}
		}
	}
	s.log.Info("sim finished", "ticks", s.Ticks)
	return nil
}

// sleepUntil waits for the wall clock to reach t and reports false if ctx
// ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// The box the stations are placed in: a city-sized area around 48.2N 16.37E.
const (
	latMin, latMax = 48.12, 48.28
	lonMin, lonMax = 16.22, 16.52
)

// Field identities for the hash. Each random quantity has its own, so that no
// two quantities are correlated by accident.
const (
	hLat = iota + 1
	hLon
	hRoadside
	hTempOffset
	hPMRatio
	hCapacity
	hEpisode // city-wide pollution episodes (weather), slow
	hWeather // city-wide temperature anomaly, slow
	hPM25
	hPM10
	hNO2
	hTemp
	hHumidity
	hLAeq
	hCount
)

// jitterSalt separates the per-tick jitter of a quantity from its slow
// component in the hash, since both are keyed by an integer time index.
const jitterSalt = 1 << 16

// Generate returns the points of one tick; it is pure. The points of tick 0
// include each station's position.
func Generate(p Params, tick int) []protocols.Point {
	if p.Stations <= 0 {
		return nil
	}
	n := p.Stations
	npts := 2*n + (n+2)/3
	if tick == 0 {
		npts += n
	}
	ts := p.Start.UnixNano() + int64(tick)*int64(p.Interval)
	sec := floorDiv(ts, int64(time.Second))
	// Local time of day in hours (CET, UTC+1, without DST: a simulation needs
	// a plausible cycle, not the tz database on every edge device).
	hour := float64(mod(sec+3600, 86400)) / 3600
	doy := float64(mod(floorDiv(sec, 86400), 365))
	rush := math.Exp(-sq((hour-8)/1.3)) + 0.9*math.Exp(-sq((hour-17.5)/1.8))
	daylight := 0.5 - 0.5*math.Cos(2*math.Pi*(hour-3)/24) // 0 at 03:00, 1 at 15:00
	heat := math.Cos(2 * math.Pi * (hour - 15) / 24)      // 1 at 15:00, -1 at 03:00
	season := 11 - 10*math.Cos(2*math.Pi*(doy-20)/365)    // mean °C: 1 in January, 21 in July
	episode := 1.1 + 0.5*slow(p.Seed, 0, hEpisode, ts, 6*time.Hour)
	weather := 3 * slow(p.Seed, 0, hWeather, ts, 12*time.Hour)

	pts := make([]protocols.Point, 0, npts)
	tags := make([]protocols.Tag, 0, 2*npts)
	// One backing array for all fields of the tick; each point gets a
	// full slice expression so that appending to one never touches another.
	fields := make([]protocols.Field, 0, 7*n+2*n)
	add := func(m, district, station string, fs ...protocols.Field) {
		t0, f0 := len(tags), len(fields)
		tags = append(tags, protocols.Tag{Key: "district", Value: district}, protocols.Tag{Key: "station", Value: station})
		fields = append(fields, fs...)
		pts = append(pts, protocols.Point{
			Measurement: m,
			Tags:        tags[t0:len(tags):len(tags)],
			Fields:      fields[f0:len(fields):len(fields)],
			Time:        ts,
		})
	}

	for i := 1; i <= n; i++ {
		id := StationID(i)
		lat, lon := Position(p.Seed, i)
		district := District(lat, lon)
		road := unit(hash(p.Seed, i, hRoadside, -1)) // 0 park … 1 main road
		j := func(f int) float64 { return bell(hash(p.Seed, i, f+jitterSalt, int64(tick))) }
		s := func(f int) float64 { return slow(p.Seed, i, f, ts, 30*time.Minute) }

		pm25 := round1(clamp((6+8*road)*episode+18*rush*(0.5+road)*episode+4*s(hPM25)+1.5*j(hPM25), 2, 80))
		ratio := 1.35 + 0.25*unit(hash(p.Seed, i, hPMRatio, -1)) + 0.1*s(hPM10)
		pm10 := round1(clamp(math.Max(pm25*ratio+2*rush+j(hPM10), pm25), pm25, 160))
		no2 := round1(clamp((10+15*road+55*rush*(0.4+road))*(0.8+0.2*episode)+8*s(hNO2)+3*j(hNO2), 5, 120))
		tempOff := 2*unit(hash(p.Seed, i, hTempOffset, -1)) - 1
		temp := round1(clamp(season+5*heat+weather+tempOff+0.5*s(hTemp)+0.3*j(hTemp), -5, 35))
		hum := round1(clamp(68-18*heat-1.5*weather+8*s(hHumidity)+2*j(hHumidity), 20, 100))
		laeq := round1(clamp(42+8*road+18*daylight+7*rush+2*s(hLAeq)+1.5*j(hLAeq), 35, 85))

		add("air", district, id,
			protocols.Field{Key: "pm25", Value: protocols.Float(pm25)},
			protocols.Field{Key: "pm10", Value: protocols.Float(pm10)},
			protocols.Field{Key: "no2", Value: protocols.Float(no2)},
			protocols.Field{Key: "temperature", Value: protocols.Float(temp)},
			protocols.Field{Key: "humidity", Value: protocols.Float(hum)},
		)
		add("noise", district, id, protocols.Field{Key: "laeq", Value: protocols.Float(laeq)})
		if HasTraffic(i) {
			// Vehicles per 15 minutes, so the value does not depend on the
			// configured interval.
			capacity := 150 + 200*unit(hash(p.Seed, i, hCapacity, -1))
			count := capacity * (0.03 + 0.25*daylight + 0.75*rush) * (1 + 0.1*s(hCount) + 0.08*j(hCount))
			add("traffic", district, id, protocols.Field{Key: "count", Value: protocols.Int(int64(math.Round(clamp(count, 0, 400))))})
		}
		if tick == 0 {
			add("station", district, id,
				protocols.Field{Key: "lat", Value: protocols.Float(lat)},
				protocols.Field{Key: "lon", Value: protocols.Float(lon)},
			)
		}
	}
	return pts
}

// StationID returns the id of station i (1-based): s0001, s0002, …
func StationID(i int) string {
	s := strconv.Itoa(i)
	for len(s) < 4 {
		s = "0" + s
	}
	return "s" + s
}

// HasTraffic reports whether station i (1-based) has a traffic counter:
// every third station, starting with the first.
func HasTraffic(i int) bool { return (i-1)%3 == 0 }

// Position returns the latitude and longitude of station i, rounded to five
// decimals (about a metre).
func Position(seed int64, i int) (lat, lon float64) {
	lat = latMin + (latMax-latMin)*unit(hash(seed, i, hLat, -1))
	lon = lonMin + (lonMax-lonMin)*unit(hash(seed, i, hLon, -1))
	return math.Round(lat*1e5) / 1e5, math.Round(lon*1e5) / 1e5
}

// District names the district of a position: a 4×2 grid over the box,
// d01…d04 west to east in the north half, d05…d08 in the south half.
func District(lat, lon float64) string {
	col := int((lon - lonMin) / ((lonMax - lonMin) / 4))
	col = max(0, min(3, col))
	row := 0
	if lat < (latMin+latMax)/2 {
		row = 1
	}
	return "d0" + strconv.Itoa(row*4+col+1)
}

// hash mixes (seed, station, field, index) with the splitmix64 finalizer.
func hash(seed int64, station, field int, index int64) uint64 {
	h := mix(uint64(seed) + 0x9e3779b97f4a7c15)
	h = mix(h ^ uint64(station))
	h = mix(h ^ uint64(field))
	return mix(h ^ uint64(index))
}

func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// bell maps a hash to [-1, 1], bell-shaped (sum of three uniforms), so that
// extremes are rare as in real sensor noise.
func bell(h uint64) float64 {
	const m = 1<<21 - 1
	a, b, c := float64(h&m), float64(h>>21&m), float64(h>>42&m)
	return (a+b+c)/(1.5*m) - 1
}

// slow is value noise in [-1, 1]: hashed knots every period of simulated
// time, joined by cosine interpolation, so values drift instead of jumping
// from tick to tick.
func slow(seed int64, station, field int, ts int64, period time.Duration) float64 {
	k := floorDiv(ts, int64(period))
	frac := float64(ts-k*int64(period)) / float64(period)
	a := bell(hash(seed, station, field, k))
	b := bell(hash(seed, station, field, k+1))
	w := (1 - math.Cos(math.Pi*frac)) / 2
	return a + (b-a)*w
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func mod(a, b int64) int64 { return a - floorDiv(a, b)*b }

func sq(x float64) float64 { return x * x }

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }

// round1 rounds to one decimal and turns -0 into 0, which would otherwise
// show up as "-0" on the wire and in charts.
func round1(x float64) float64 {
	r := math.Round(x*10) / 10
	if r == 0 {
		return 0
	}
	return r
}

// Interface guards.
var (
	_ protocols.Input        = (*Input)(nil)
	_ protocols.SampleConfig = (*Input)(nil)
)
