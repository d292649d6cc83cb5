package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols/sim"
)

// TestAgent_OutputsToCollector runs both outputs against the real
// collector: nats with the NKey seed `citysense-collector agent add`
// issued, and influx (v2 write API) with a token from `token add`. Each
// output delivers everything under its own id; the store holds each point
// once. A second agent writes readings the collector's write API refuses
// (older than its max_past): the batches go to the agent's quarantine with
// the collector's answer instead of being retried forever.
func TestAgent_OutputsToCollector(t *testing.T) {
	const stations, ticks = 3, 5
	c := agCollectorAddrs(t)
	if out, code := runCmd(t, "citysense-collector", "agent", "add", "e2e-outputs", "--data-dir", c.dataDir); code != 0 {
		t.Fatalf("agent add: exit %d\n%s", code, out)
	}
	creds := filepath.Join(c.dataDir, "agents", "e2e-outputs.creds")
	token := strings.TrimSpace(agStdout(t, "citysense-collector", "token", "add", "e2e-influx", "--data-dir", c.dataDir))
	if !strings.HasPrefix(token, "cs_") {
		t.Fatalf("token add printed %q", token)
	}
	c.start(t)

	startT := time.Now().UTC().Add(-24 * time.Hour).Truncate(time.Hour)
	httpA := freeAddr(t)
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-outputs
  data_dir: %s
  http: %s
inputs:
  - type: sim
    stations: %d
    seed: 8
    interval: 10s
    start: %s
    ticks: %d
    realtime: false
outputs:
  - type: nats
    url: nats://%s
    creds: %s
    timeout: 2s
  - type: influx
    id: collector-http
    url: http://%s
    api: v2
    org: city
    bucket: sensors
    token: ${E2E_TOKEN}
    timeout: 2s
`, t.TempDir(), httpA, stations, startT.Format(time.RFC3339), ticks, c.nats, creds, c.http))
	t.Setenv("E2E_TOKEN", token) // the agent inherits it: ${E2E_TOKEN} in its file
	cmd := start(t, "citysense-agent", "run", "-c", cfg, "--log-format", "json")
	st := agWaitStatus(t, httpA, "both outputs to deliver everything", time.Minute, func(st agStatus) bool {
		return st.InputsDone && st.PendingBatches == 0
	})
	if len(st.Outputs) != 2 {
		t.Fatalf("outputs %+v", st.Outputs)
	}
	for _, o := range st.Outputs {
		if o.PointsSent != st.PointsBuffered || o.Rejected != 0 {
			t.Fatalf("output %s sent %d of %d points (%d batches refused)", o.ID, o.PointsSent, st.PointsBuffered, o.Rejected)
		}
	}
	want, points := agExpected(sim.Params{Stations: stations, Seed: 8, Interval: 10 * time.Second, Start: startT}, agTicks(ticks))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var diff string
	waitFor(t, "the store to hold every point once", 30*time.Second, func() (bool, error) {
		diff = agCompare(agStored(ctx, t, c.http, agFields, startT.Unix(), startT.Add(ticks*10*time.Second).Unix()), want)
		return diff == "", fmt.Errorf("%s", diff)
	})
	cmd.stop(t, 30*time.Second)

	// Readings the write API refuses for good.
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	dataDir, httpB := t.TempDir(), freeAddr(t)
	cfg = writeFile(t, "old.yaml", fmt.Sprintf(`
agent:
  id: e2e-old
  data_dir: %s
  http: %s
inputs:
  - type: sim
    stations: 1
    start: %s
    ticks: 2
    realtime: false
outputs:
  - type: influx
    url: http://%s
    bucket: sensors
    token: %s
    timeout: 2s
`, dataDir, httpB, old.Format(time.RFC3339), c.http, token))
	cmd = start(t, "citysense-agent", "run", "-c", cfg, "--log-format", "json")
	st = agWaitStatus(t, httpB, "the refused batches to be set aside", time.Minute, func(st agStatus) bool {
		return st.InputsDone && st.PendingBatches == 0
	})
	if o := st.Outputs[0]; o.Rejected == 0 || o.PointsSent != 0 || st.PointsDropped["rejected"] != st.PointsBuffered {
		t.Fatalf("output %+v, dropped %v: want every batch refused and counted", o, st.PointsDropped)
	}
	q, _ := filepath.Glob(filepath.Join(dataDir, "quarantine", "rejected-influx-*.txt"))
	if len(q) == 0 {
		t.Fatal("no refused batch in the quarantine")
	}
	why, _ := os.ReadFile(q[0])
	if !strings.Contains(string(why), "400") {
		t.Fatalf("quarantine note %q lacks the collector's answer", why)
	}
	t.Logf("%d points delivered once through nats (NKey) and influx (token); %d old points refused by the write API and quarantined: %s",
		points, st.PointsBuffered, strings.TrimSpace(string(why)))
	cmd.stop(t, 30*time.Second)
	c.stop(t)
}
