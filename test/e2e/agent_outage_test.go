package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols/sim"
)

// TestAgent_Outage stops the collector for 20 s while a real-time
// simulation keeps the agent busy, then starts it again on the same data
// directory and ports. Every point of every tick must arrive exactly once,
// and the agent must say it was buffering meanwhile.
func TestAgent_Outage(t *testing.T) {
	const (
		stations = 10
		interval = 200 * time.Millisecond
		ticks    = 400              // 80 s of readings: the sim runs on through the whole outage
		outage   = 60 * time.Second // as issue 4 asks
	)
	c := agStartCollector(t)
	// A start a little ahead, on the interval, so the test knows every
	// tick's time; the sim waits for it.
	startT := time.Now().Add(2 * time.Second).Truncate(interval)
	params := sim.Params{Stations: stations, Seed: 11, Interval: interval, Start: startT}
	httpA := freeAddr(t)
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-outage
  data_dir: %s
  http: %s
inputs:
  - type: sim
    stations: %d
    seed: 11
    interval: %s
    start: %s
    ticks: %d
    realtime: true
outputs:
  - type: nats
    url: nats://%s
    timeout: 2s
    reconnect_wait: 250ms
    max_backoff: 1s
    backfill_rate: 2000
`, t.TempDir(), httpA, stations, interval, startT.Format(time.RFC3339Nano), ticks, c.nats))
	agent := start(t, "citysense-agent", "run", "-c", cfg, "--log-format", "json")

	agWaitStatus(t, httpA, "the first ticks delivered", 30*time.Second, func(st agStatus) bool {
		return st.PointsSent >= 5*int64(agPointsPerTick(stations))
	})
	c.stop(t)
	downAt := time.Now()
	st := agWaitStatus(t, httpA, "the agent to buffer while the collector is away", 30*time.Second, func(st agStatus) bool {
		return st.PendingPoints > 0 && strings.HasPrefix(st.Ready, "degraded: buffering")
	})
	resp, err := client.Get("http://" + httpA + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "degraded: buffering") {
		t.Fatalf("/readyz during the outage = %d %q, want 200 degraded", resp.StatusCode, body)
	}
	time.Sleep(time.Until(downAt.Add(outage)))
	st, _ = agGetStatus(t.Context(), httpA)
	t.Logf("after %s without a collector: %d points pending", outage, st.PendingPoints)
	c.start(t)

	st = agWaitStatus(t, httpA, "every tick buffered and delivered", 90*time.Second, func(st agStatus) bool {
		return st.InputsDone && st.PendingBatches == 0 && st.Ready == "ok"
	})
	all := make([]int, ticks)
	for i := range all {
		all[i] = i
	}
	want, points := agExpected(params, all)
	if st.PointsBuffered != int64(points) {
		t.Fatalf("agent buffered %d points, the sim made %d", st.PointsBuffered, points)
	}
	from, to := startT.Add(-time.Second).Unix(), startT.Add(ticks*interval+time.Second).Unix()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var diff string
	waitFor(t, "the collector to store every point", 60*time.Second, func() (bool, error) {
		diff = agCompare(agStored(ctx, t, c.http, agFields, from, to), want)
		return diff == "", fmt.Errorf("%s", diff)
	})
	o := st.Outputs[0]
	if o.BacklogPoints == 0 {
		t.Errorf("no backlog was sent after the outage: %+v", o)
	}
	t.Logf("%d points in %d series arrived exactly once; %d of them sent as backlog after the outage, %d batches resent as duplicates",
		points, len(want), o.BacklogPoints, o.Duplicates)
	agent.stop(t, 30*time.Second)
	c.stop(t)
}
