package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols/sim"
)

// TestAgent_CrashWhileBuffering kills the agent with SIGKILL ten times at
// random moments while the collector is down and a real-time simulation
// keeps producing, then starts the collector and the agent once more and
// lets it drain.
//
// What "acknowledged" means for the sim: a tick is acknowledged when the
// buffer's Append returned nil for it, which is the moment a device would
// get its PUBACK. The agent logs each acknowledged write at debug level
// ("points buffered", with the tick's time) right after that; so every
// logged tick must be in the store exactly once. A kill can land between
// the commit and the log line, or during a commit that reaches the disk: a
// tick the agent never acknowledged may arrive too (its device would have
// resent it), but only the one tick after the last logged one of a run.
// Nothing else may arrive, and nothing may arrive twice: the store is
// checked per series, and the collector's ingest counter must equal the
// points that arrived, so a batch published twice under different ids
// would show.
func TestAgent_CrashWhileBuffering(t *testing.T) {
	const (
		stations = 5
		interval = 100 * time.Millisecond
		kills    = 10
	)
	c := agCollectorAddrs(t) // down until the end
	dataDir := t.TempDir()
	config := func(ticks int) string {
		return writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-crash
  data_dir: %s
inputs:
  - type: sim
    stations: %d
    seed: 5
    interval: %s
    ticks: %d
    realtime: true
outputs:
  - type: nats
    url: nats://%s
    timeout: 2s
    reconnect_wait: 100ms
    max_backoff: 500ms
    backfill_rate: 0
`, dataDir, stations, interval, ticks, c.nats))
	}
	forever := config(0)

	type run struct {
		start  time.Time // the sim's tick 0
		logged []int64   // tick times acknowledged, in order
	}
	var runs []run
	collect := func(p *proc) {
		t.Helper()
		starts := agLogLines(t, p, "sim started")
		if len(starts) != 1 {
			t.Fatalf("run %d: %d sim starts logged", len(runs)+1, len(starts))
		}
		st, err := time.Parse(time.RFC3339Nano, fmt.Sprint(starts[0]["start"]))
		if err != nil {
			t.Fatal(err)
		}
		r := run{start: st}
		for _, l := range agLogLines(t, p, "points buffered") {
			lo, hi := int64(l["min_time"].(float64)), int64(l["max_time"].(float64))
			if lo != hi {
				t.Fatalf("a write spans %d..%d; the sim writes one tick at a time", lo, hi)
			}
			r.logged = append(r.logged, lo)
		}
		runs = append(runs, r)
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for i := range kills {
		httpA := freeAddr(t)
		p := start(t, "citysense-agent", "run", "-c", forever, "--http", httpA, "--log-format", "json", "--log-level", "debug")
		agWaitStatus(t, httpA, "the agent to buffer something", 30*time.Second, func(st agStatus) bool { return st.PointsBuffered > 0 })
		time.Sleep(time.Duration(rng.Int64N(int64(time.Second))))
		agKill(t, p)
		collect(p)
		t.Logf("kill %d: %d ticks acknowledged", i+1, len(runs[len(runs)-1].logged))
		// The next run's ticks must not share a time with this run's:
		// its tick 0 is "now" aligned down to the interval.
		time.Sleep(2 * interval)
	}

	// The collector comes back; one more run, finite, drains it all.
	c.start(t)
	httpA := freeAddr(t)
	p := start(t, "citysense-agent", "run", "-c", config(20), "--http", httpA, "--log-format", "json", "--log-level", "debug")
	agWaitStatus(t, httpA, "the agent to drain", 90*time.Second, func(st agStatus) bool {
		return st.InputsDone && st.PendingBatches == 0
	})
	p.stop(t, 30*time.Second)
	collect(p)

	// What must arrive, and what may.
	params := func(r run) sim.Params {
		return sim.Params{Stations: stations, Seed: 5, Interval: interval, Start: r.start}
	}
	var must []int64
	may := map[int64]run{}
	tickOf := func(r run, ts int64) int { return int((ts - r.start.UnixNano()) / int64(interval)) }
	for i, r := range runs {
		for j, ts := range r.logged {
			if tickOf(r, ts) != j {
				t.Fatalf("run %d acknowledged tick %d as its %dth write; the sim writes ticks in order", i+1, tickOf(r, ts), j)
			}
		}
		must = append(must, r.logged...)
		may[r.start.UnixNano()+int64(len(r.logged))*int64(interval)] = r
	}
	sort.Slice(must, func(i, j int) bool { return must[i] < must[j] })
	for i := 1; i < len(must); i++ {
		if must[i] == must[i-1] {
			t.Fatalf("two runs acknowledged a tick at the same time %d; the test cannot tell them apart", must[i])
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	from, to := runs[0].start.Add(-time.Second).Unix(), time.Now().Add(time.Minute).Unix()
	var stored map[agSeriesKey][]int64
	expect := func() (map[agSeriesKey][]int64, int) {
		// Exactly the acknowledged ticks, plus those of the unacknowledged
		// ones that did arrive.
		want := map[agSeriesKey][]int64{}
		points := 0
		probe := agSeriesKey{"s0001", "laeq"}
		have := map[int64]bool{}
		for _, ts := range stored[probe] {
			have[ts] = true
		}
		add := func(r run, ts int64) {
			w, n := agExpected(params(r), []int{tickOf(r, ts)})
			for k, v := range w {
				want[k] = append(want[k], v...)
			}
			points += n
		}
		for _, r := range runs {
			for _, ts := range r.logged {
				add(r, ts)
			}
		}
		for ts, r := range may {
			if have[ts] {
				add(r, ts)
			}
		}
		return want, points
	}
	var diff string
	var want map[agSeriesKey][]int64
	var points int
	waitFor(t, "the collector to store every acknowledged point", 60*time.Second, func() (bool, error) {
		stored = agStored(ctx, t, c.http, agFields, from, to)
		want, points = expect()
		diff = agCompare(stored, want)
		return diff == "", fmt.Errorf("%s", diff)
	})
	extra := 0
	for ts := range may {
		for _, got := range stored[agSeriesKey{"s0001", "laeq"}] {
			if got == ts {
				extra++
			}
		}
	}
	if ingested, ok := agMetric(t, c.http, `citysense_ingest_points_total{stream="CS_RAW"}`); ok && int(ingested) != points {
		t.Fatalf("the collector ingested %v points, %d arrived: something was delivered twice", ingested, points)
	}
	t.Logf("%d kills; %d ticks acknowledged across %d runs, all stored exactly once (%d points); %d unacknowledged ticks arrived as well",
		kills, len(must), len(runs), points, extra)
	c.stop(t)
}
