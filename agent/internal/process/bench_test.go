package process

import (
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

// replay hands out copies of simulator ticks, in a loop with times moving
// on, in buffers it reuses: the stages change points in place, and
// allocating fresh copies would bury the stages' own allocations.
type replay struct {
	src      [][]protocols.Point
	span     int64 // time covered by src
	work     []protocols.Point
	tags     []protocols.Tag
	fields   []protocols.Field
	interval time.Duration
	start    time.Time
}

func newReplay(stations, ticks int) *replay {
	p := sim.Params{Stations: stations, Seed: 1, Interval: 10 * time.Second, Start: t0}
	r := &replay{interval: p.Interval, start: p.Start, span: int64(ticks) * int64(p.Interval)}
	for tick := 1; tick <= ticks; tick++ { // tick 0 carries positions
		r.src = append(r.src, sim.Generate(p, tick))
	}
	return r
}

// next returns tick i (counting on past the end of src) and its time.
func (r *replay) next(i int) ([]protocols.Point, time.Time) {
	src := r.src[i%len(r.src)]
	shift := int64(i/len(r.src)) * r.span
	r.work, r.tags, r.fields = r.work[:0], r.tags[:0], r.fields[:0]
	for _, p := range src {
		t0, f0 := len(r.tags), len(r.fields)
		r.tags = append(r.tags, p.Tags...)
		r.fields = append(r.fields, p.Fields...)
		p.Tags = r.tags[t0:len(r.tags):len(r.tags)]
		p.Fields = r.fields[f0:len(r.fields):len(r.fields)]
		p.Time += shift
		r.work = append(r.work, p)
	}
	return r.work, r.start.Add(time.Duration(i+1)*r.interval + time.Duration(shift))
}

// BenchmarkStage runs each stage over the simulator's 1,000 stations, one
// tick (2,334 points, 6,334 values) per op, as the agent calls the chain:
// Process, then Flush when NextFlush has come.
func BenchmarkStage(b *testing.B) {
	cases := []struct{ name, list string }{
		{"filter", "  - {type: filter, include: {measurement: [air, noise, traffic]}, exclude: {tags: {station: [test-*]}, fields: [debug_*]}, range: {pm25: [0, 1000], 'pm*': [0, 2000]}}\n"},
		{"tags", "  - {type: tags, add: {site: depot-3}, rename: {district: area}}\n"},
		{"deadband", "  - {type: deadband, absolute: 0.5, heartbeat: 10m}\n"},
		{"aggregate", "  - {type: aggregate, window: 1m, functions: [mean, max]}\n"},
		{"aggregate-all-functions", "  - {type: aggregate, window: 1m, functions: [mean, min, max, count, sum, first, last, stddev, p50, p95, p99]}\n"},
		{"scale", "  - {type: scale, fields: {temperature: {factor: 1.8, offset: 32, rename: temperature_f}, 'pm*': {factor: 0.001}}}\n"},
		{"rename", "  - {type: rename, measurement: {air: air_quality}, fields: {laeq: noise_db}}\n"},
		{"worked-example", workedExample},
	}
	r := newReplay(1000, 60)
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			env, clk := testEnv()
			c := mustParse(b, tc.list, env)
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				pts, now := r.next(i)
				clk.Set(now)
				n += len(pts)
				b.StartTimer()
				c.Process(pts)
				if next := c.NextFlush(); !next.IsZero() && !now.Before(next) {
					c.Flush(false)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "points/s")
		})
	}
}

// BenchmarkReduction measures what the worked example of
// docs/agent-processing.md saves on the uplink: 100 simulated stations
// for a day, every 10 s. Run it with -benchtime 1x; the ratios are input
// over output.
func BenchmarkReduction(b *testing.B) {
	cases := []struct{ name, list string }{
		{"aggregate-1m-mean", "  - {type: aggregate, window: 1m, functions: [mean], suffix: false}\n"},
		{"deadband-only", workedExample[len("  - type: aggregate\n    window: 1m\n    functions: [mean]\n    suffix: false\n"):]},
		{"worked-example", workedExample},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var in, out volume
			for i := 0; i < b.N; i++ {
				in, out = measureReduction(b, tc.list, 100, 24*time.Hour)
			}
			b.ReportMetric(float64(in.points)/float64(out.points), "points-ratio")
			b.ReportMetric(float64(in.values)/float64(out.values), "values-ratio")
			b.ReportMetric(float64(in.bytes)/float64(out.bytes), "lp-bytes-ratio")
			b.ReportMetric(float64(in.zstd)/float64(out.zstd), "zstd-bytes-ratio")
			b.ReportMetric(float64(out.zstd)/1e6, "zstd-MB/day")
		})
	}
}
