package process

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
)

func TestAggregate_Flush_functions(t *testing.T) {
	// Arrival order differs from time order: first and last go by time.
	const in = `
m v=4 30
m v=1 10
m v=3 50
m v=2 20
m v=10 0
m v=5 40
`
	tests := []struct {
		fn, want string
	}{
		{"mean", "m v_mean=4.166666666666667 0"},
		{"min", "m v_min=1 0"},
		{"max", "m v_max=10 0"},
		{"count", "m v_count=6i 0"},
		{"sum", "m v_sum=25 0"},
		{"first", "m v_first=10 0"},
		{"last", "m v_last=3 0"},
		{"stddev", "m v_stddev=2.9107081994288304 0"}, // population
		{"p50", "m v_p50=3.5 0"},                      // between 3 and 4
		{"p95", "m v_p95=8.75 0"},                     // 5 + 0.75 × (10 - 5)
		{"p99", "m v_p99=9.75 0"},
	}
	for _, tt := range tests {
		t.Run(tt.fn, func(t *testing.T) {
			env, clk := testEnv()
			c := mustParse(t, "  - {type: aggregate, window: 1m, functions: ["+tt.fn+"]}\n", env)
			if got := c.Process(points(t, in)); len(got) != 0 {
				t.Fatalf("Process passed %v", lines(got))
			}
			clk.Set(t0.Add(time.Minute))
			equalLines(t, "Flush", c.Flush(false), tt.want)
		})
	}
}

func TestAggregate_Flush_windows(t *testing.T) {
	env, clk := testEnv()
	c := mustParse(t, `  - type: aggregate
    window: 1m
    grace: 5s
    functions: [mean, count]
`, env)
	// The window of a time is aligned to the clock: 59.999 s is in the
	// first minute, 60 s starts the second; strings pass on alone.
	in := points(t, `
air,station=s1 pm25=10,pm10=20,note="x" 0
air,station=s2 pm25=30 30
air,station=s1 pm25=20 59
air,station=s1 pm25=40 60
`)
	in[2].Time += int64(999 * time.Millisecond)
	out := c.Process(in)
	equalLines(t, "Process", out, `air,station=s1 note="x" 0`)
	if got, want := c.NextFlush(), t0.Add(65*time.Second); !got.Equal(want) {
		t.Errorf("NextFlush = %v, want end of the first window plus grace %v", got, want)
	}
	clk.Set(t0.Add(64 * time.Second))
	equalLines(t, "Flush inside grace", c.Flush(false), "")
	clk.Set(t0.Add(65 * time.Second))
	equalLines(t, "Flush", c.Flush(false), `
air,station=s1 pm25_mean=15,pm25_count=2i,pm10_mean=20,pm10_count=1i 0
air,station=s2 pm25_mean=30,pm25_count=1i 0
`)
	if got, want := c.NextFlush(), t0.Add(125*time.Second); !got.Equal(want) {
		t.Errorf("NextFlush = %v, want %v", got, want)
	}
	equalLines(t, "final Flush", c.Flush(true), "air,station=s1 pm25_mean=40,pm25_count=1i 60")
}

func TestAggregate_Process_late(t *testing.T) {
	tests := []struct {
		name, opts      string
		wantLate        string
		dropped, passed uint64
	}{
		{"drop by default", "", "", 1, 0},
		{"pass", "late: pass", "m,s=1 v=5 30", 0, 1},
		{"drop_original false passes the original anyway", "drop_original: false", "m,s=1 v=5 30", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, clk := testEnv()
			c := mustParse(t, "  - {type: aggregate, window: 1m, functions: [max], suffix: false, "+tt.opts+"}\n", env)
			c.Process(points(t, "m,s=1 v=1 0"))
			c.Process(points(t, "m,s=1 v=2 70"))
			clk.Set(t0.Add(time.Minute))
			equalLines(t, "first window", c.Flush(false), "m,s=1 v=1 0")
			// The first window is closed for s=1; the second still open
			// takes a reading older than the newest one.
			equalLines(t, "late point", c.Process(points(t, "m,s=1 v=5 30")), tt.wantLate)
			c.Process(points(t, "m,s=1 v=3 65"))
			// A new series has no closed window: its old point is welcome.
			c.Process(points(t, "m,s=2 v=9 10"))
			equalLines(t, "final", c.Flush(true), "m,s=1 v=3 60\nm,s=2 v=9 0")
			if got := dropped(env.Metrics, "processors-0", "late"); got != tt.dropped {
				t.Errorf("dropped{late} = %d, want %d", got, tt.dropped)
			}
			if got := passed(env.Metrics, "processors-0", "late"); got != tt.passed {
				t.Errorf("passed{late} = %d, want %d", got, tt.passed)
			}
		})
	}
}

func TestAggregate_Process_dropOriginal(t *testing.T) {
	env, clk := testEnv()
	c := mustParse(t, "  - {type: aggregate, window: 1m, functions: [min], fields: [pm*], measurement: [air], drop_original: false}\n", env)
	in := `
air pm25=3,temp=20 0
noise laeq=50 0
air pm25=1,temp=21 10
`
	equalLines(t, "Process", c.Process(points(t, in)), in)
	clk.Set(t0.Add(time.Minute))
	equalLines(t, "Flush", c.Flush(false), "air pm25_min=1 0")
}

// History replayed faster than the clock (a backlog after an outage)
// comes out in whole windows although every window is long past by the
// clock and flushes come in between: a window closes when the series has
// moved past it.
func TestAggregate_Flush_replay(t *testing.T) {
	env, clk := testEnv()
	clk.Set(t0.Add(24 * time.Hour))
	c := mustParse(t, "  - {type: aggregate, window: 1m, functions: [count, first]}\n", env)
	var out []protocols.Point
	for i := range 30 { // 5 minutes every 10 s, flushing after every batch of 4
		c.Process(points(t, fmt.Sprintf("m v=%d %d", i, 10*i)))
		if i%4 == 3 {
			out = append(out, c.Flush(false)...)
		}
	}
	equalLines(t, "during the replay", out, `
m v_count=6i,v_first=0 0
m v_count=6i,v_first=6 60
m v_count=6i,v_first=12 120
m v_count=6i,v_first=18 180
`)
	// The last window waits for a reading past it, or for the series to
	// be quiet for QuietClose.
	if got, want := c.NextFlush(), clk.Now().Add(QuietClose); !got.Equal(want) {
		t.Errorf("NextFlush = %v, want %v", got, want)
	}
	clk.Set(clk.Now().Add(QuietClose))
	equalLines(t, "quiet", c.Flush(false), "m v_count=6i,v_first=24 240")
	if got := dropped(env.Metrics, "processors-0", "late"); got != 0 {
		t.Errorf("dropped{late} = %d, want 0", got)
	}
}

// Live, a window closes by the clock even when the series' next reading
// has not come yet (it falls silent, or arrives a little after the end).
func TestAggregate_Flush_quietSeries(t *testing.T) {
	env, clk := testEnv()
	c := mustParse(t, "  - {type: aggregate, window: 1m, functions: [count]}\n", env)
	for i := range 6 {
		clk.Set(t0.Add(time.Duration(10*i) * time.Second))
		c.Process(points(t, fmt.Sprintf("m v=1 %d", 10*i)))
	}
	// Last reading at 0:50, so the series is quiet long before 1:00.
	if got, want := c.NextFlush(), t0.Add(time.Minute); !got.Equal(want) {
		t.Errorf("NextFlush = %v, want %v", got, want)
	}
	clk.Set(t0.Add(time.Minute))
	equalLines(t, "Flush", c.Flush(false), "m v_count=6i 0")
	if !c.NextFlush().IsZero() {
		t.Errorf("NextFlush = %v, want zero", c.NextFlush())
	}
}

func TestAggregate_Process_maxSeries(t *testing.T) {
	env, clk := testEnv()
	c := mustParse(t, "  - {type: aggregate, window: 1m, functions: [count], suffix: false, max_series: 2}\n", env)
	equalLines(t, "fits", c.Process(points(t, "m,s=1 a=1,b=1 0")), "")
	equalLines(t, "full", c.Process(points(t, "m,s=2 a=1 0\nm,s=1 c=1 0")), "m,s=2 a=1 0\nm,s=1 c=1 0")
	if got := passed(env.Metrics, "processors-0", "max_series"); got != 2 {
		t.Errorf("passed{max_series} = %d, want 2", got)
	}
	clk.Set(t0.Add(time.Minute))
	equalLines(t, "flush", c.Flush(false), "m,s=1 a=1i,b=1i 0")
	// s=1 has no open window now; it is forgotten to make room for s=2,
	// and its first minute, already emitted, stays closed.
	equalLines(t, "room again", c.Process(points(t, "m,s=2 a=1 60")), "")
	equalLines(t, "forgotten series is late", c.Process(points(t, "m,s=1 a=1 30")), "")
	if got := dropped(env.Metrics, "processors-0", "late"); got != 1 {
		t.Errorf("dropped{late} = %d, want 1", got)
	}
}

func TestAggregate_Process_maxValues(t *testing.T) {
	env, clk := testEnv()
	c := mustParse(t, "  - {type: aggregate, window: 1h, functions: [count, min, max, p50], max_values: 500}\n", env)
	const n = 20000
	vals := rand.New(rand.NewPCG(3, 4)).Perm(n)
	pts := make([]protocols.Point, n)
	for i, v := range vals {
		pts[i] = protocols.Point{Measurement: "m", Fields: []protocols.Field{{Key: "v", Value: protocols.Int(int64(v))}},
			Time: t0.Add(time.Duration(i) * 100 * time.Millisecond).UnixNano()}
	}
	c.Process(pts)
	clk.Set(t0.Add(time.Hour))
	out := c.Flush(false)
	if len(out) != 1 {
		t.Fatalf("got %d points", len(out))
	}
	get := func(k string) float64 { v, _ := out[0].Field(k); x, _ := v.AsFloat(); return x }
	// Count, min and max stay exact; the median comes from a uniform sample
	// of 500 values: within a few percent of the true 9999.5.
	if get("v_count") != n || get("v_min") != 0 || get("v_max") != n-1 {
		t.Errorf("count/min/max = %v/%v/%v", get("v_count"), get("v_min"), get("v_max"))
	}
	if p50 := get("v_p50"); math.Abs(p50-(n-1)/2.0) > 0.05*n {
		t.Errorf("p50 = %v, want about %v", p50, (n-1)/2.0)
	}
	if got := counter(env.Metrics, `citysense_agent_process_percentile_sampled_total{stage="processors-0"}`); got != n-500 {
		t.Errorf("sampled = %d, want %d", got, n-500)
	}
}

// Property: whatever the arrival order and batching, each series' counts
// over all windows add up to its values, and per window
// min <= p50 <= max, mean × count = sum, first and last are the values at
// the earliest and latest time.
func TestAggregate_Flush_property(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 99))
		env, clk := testEnv()
		c := mustParse(t, "  - {type: aggregate, window: 10s, functions: [count, sum, mean, min, max, p50, first, last]}\n", env)
		type key struct {
			s   int
			win int64
		}
		truth := map[key][]float64{}
		times := map[key][]int64{}
		var all []protocols.Point
		for i := range 500 {
			s := rng.IntN(5)
			ts := t0.UnixNano() + int64(rng.IntN(60_000))*int64(time.Millisecond) + int64(i) // distinct times
			x := math.Round(rng.NormFloat64()*1000) / 10
			k := key{s, floorDiv(ts, int64(10*time.Second)) * int64(10*time.Second)}
			truth[k] = append(truth[k], x)
			times[k] = append(times[k], ts)
			all = append(all, protocols.Point{Measurement: "m", Tags: []protocols.Tag{{Key: "s", Value: fmt.Sprint(s)}},
				Fields: []protocols.Field{{Key: "v", Value: protocols.Float(x)}}, Time: ts})
		}
		for len(all) > 0 { // random batches, no flush in between
			n := min(len(all), 1+rng.IntN(50))
			c.Process(all[:n])
			all = all[n:]
		}
		clk.Set(t0.Add(time.Hour))
		out := c.Flush(false)
		if len(out) != len(truth) {
			t.Fatalf("seed %d: %d windows, want %d", seed, len(out), len(truth))
		}
		for _, p := range out {
			sv, _ := p.Tag("s")
			var s int
			fmt.Sscan(sv, &s)
			k := key{s, p.Time}
			vals, ts := truth[k], times[k]
			f := func(name string) float64 { v, _ := p.Field("v_" + name); x, _ := v.AsFloat(); return x }
			sorted := slices.Sorted(slices.Values(vals))
			first := vals[slices.Index(ts, slices.Min(ts))]
			last := vals[slices.Index(ts, slices.Max(ts))]
			if int(f("count")) != len(vals) || f("min") != sorted[0] || f("max") != sorted[len(sorted)-1] ||
				f("first") != first || f("last") != last ||
				math.Abs(f("mean")*f("count")-f("sum")) > 1e-9*math.Max(1, math.Abs(f("sum"))) ||
				f("p50") < f("min") || f("p50") > f("max") {
				t.Fatalf("seed %d window %v: got %v for values %v", seed, k, lines([]protocols.Point{p}), vals)
			}
		}
	}
}

func TestAggregate_Close_restart(t *testing.T) {
	dir := t.TempDir()
	list := "  - {type: aggregate, name: air1m, window: 1m, functions: [count, mean, p50], suffix: true}\n"
	start := func(now time.Duration) (*Chain, *clock) {
		env, clk := testEnv()
		env.StateDir = dir
		clk.Set(t0.Add(now))
		return mustParse(t, list, env), clk
	}

	// Stop at 0:30, half way through the window: the final flush emits
	// the window that is due, keeps the open one, and Close saves it.
	c1, _ := start(30 * time.Second)
	c1.Process(points(t, "m v=1 -10\nm v=2 0\nm v=4 20"))
	equalLines(t, "final flush of the first run", c1.Flush(true), "m v_count=1i,v_mean=1,v_p50=1 -60")
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "aggregate-air1m.json")); err != nil {
		t.Fatal(err)
	}

	// Back at 0:40: the window goes on where it stopped, and the minute
	// that was already emitted stays closed.
	c2, clk2 := start(40 * time.Second)
	if got := c2.Process(points(t, "m v=7 -50")); len(got) != 0 {
		t.Errorf("a reading of the emitted minute passed: %v", lines(got))
	}
	if got, want := c2.NextFlush(), t0.Add(time.Minute); !got.Equal(want) {
		t.Errorf("NextFlush after restart = %v, want %v", got, want)
	}
	c2.Process(points(t, "m v=6 45\nm v=9 -30"))
	clk2.Set(t0.Add(time.Minute))
	equalLines(t, "the window across the restart", c2.Flush(false), "m v_count=3i,v_mean=4,v_p50=4 0")
}
