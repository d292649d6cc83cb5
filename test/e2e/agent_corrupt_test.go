package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgent_CorruptSegment writes garbage into one of the buffer's segment
// files while the agent is stopped. The agent must start anyway, move the
// bad file to quarantine/, say so in a metric, and deliver the other
// segments.
func TestAgent_CorruptSegment(t *testing.T) {
	const stations, ticks = 50, 200
	c := agCollectorAddrs(t)
	dataDir := t.TempDir()
	config := func(input string) string {
		return writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-corrupt
  data_dir: %s
inputs:
%s
buffer:
  segment_size: 64KiB
outputs:
  - type: nats
    url: nats://%s
    reconnect_wait: 100ms
    max_backoff: 500ms
    backfill_rate: 0
`, dataDir, input, c.nats))
	}
	// First run: the collector is away, the sim's points fill several
	// segments.
	httpA := freeAddr(t)
	fill := config(fmt.Sprintf(`  - type: sim
    stations: %d
    seed: 4
    interval: 10s
    start: %s
    ticks: %d
    realtime: false`, stations, time.Now().UTC().Add(-2*24*time.Hour).Truncate(time.Hour).Format(time.RFC3339), ticks))
	p := start(t, "citysense-agent", "run", "-c", fill, "--http", httpA, "--log-format", "json")
	st := agWaitStatus(t, httpA, "the sim to be buffered", time.Minute, func(st agStatus) bool { return st.InputsDone })
	total := st.PointsBuffered
	p.stop(t, 30*time.Second)

	// What an installer sees on site, and which segment to damage.
	var stats struct {
		Points   int64 `json:"points"`
		Segments []struct {
			File   string `json:"file"`
			Points int64  `json:"points"`
		} `json:"segments"`
	}
	if err := json.Unmarshal([]byte(agStdout(t, "citysense-agent", "buffer", "stats", "--data-dir", dataDir, "--json")), &stats); err != nil {
		t.Fatal(err)
	}
	if len(stats.Segments) < 3 || stats.Points != total {
		t.Fatalf("buffer stats: %d segments holding %d points; want several holding %d", len(stats.Segments), stats.Points, total)
	}
	bad := stats.Segments[1]
	path := filepath.Join(dataDir, "buffer", bad.File)
	garbage := []byte(strings.Repeat("this is not a bbolt page; ", 1000))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(garbage, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// Second run: the collector is there; the input emits nothing (its
	// first tick is decades away) so that only the buffer is delivered.
	c.start(t)
	httpA = freeAddr(t)
	idle := config(`  - type: sim
    stations: 1
    start: 2099-01-01T00:00:00Z
    realtime: true`)
	p = start(t, "citysense-agent", "run", "-c", idle, "--http", httpA, "--log-format", "json")
	waitFor(t, "the agent to be ready", 30*time.Second, func() (bool, error) { return httpOK("http://" + httpA + "/readyz") })
	if n, _ := agMetric(t, httpA, "citysense_agent_buffer_segments_quarantined_total"); n != 1 {
		t.Fatalf("citysense_agent_buffer_segments_quarantined_total = %v, want 1", n)
	}
	q, _ := filepath.Glob(filepath.Join(dataDir, "quarantine", bad.File+".*"))
	var kept []byte
	for _, f := range q {
		if !strings.HasSuffix(f, ".txt") {
			kept, _ = os.ReadFile(f)
		}
	}
	if len(q) != 2 || len(kept) < len(garbage) || string(kept[:len(garbage)]) != string(garbage) {
		t.Fatalf("quarantine holds %v; want %s as it was, with a .txt saying why", q, bad.File)
	}
	if lines := agLogLines(t, p, "BUFFER SEGMENT UNREADABLE: moved to quarantine, the rest of the buffer is kept"); len(lines) != 1 || lines[0]["level"] != "ERROR" {
		t.Fatalf("want one ERROR log naming the quarantined segment, got %v", lines)
	}
	agWaitStatus(t, httpA, "the rest of the buffer to drain", time.Minute, func(st agStatus) bool { return st.PendingBatches == 0 })
	var arrived float64
	want := total - bad.Points
	waitFor(t, "the collector to ingest the good segments", time.Minute, func() (bool, error) {
		arrived, _ = agMetric(t, c.http, `citysense_ingest_points_total{stream="CS_RAW"}`)
		return int64(arrived) >= want, fmt.Errorf("ingested %v of %d", arrived, want)
	})
	if int64(arrived) != want {
		t.Fatalf("the collector ingested %v points, want %d: all but the %d of the bad segment", arrived, want, bad.Points)
	}
	resp, err := client.Get("http://" + httpA + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz = %d %q", resp.StatusCode, body)
	}
	t.Logf("%d segments; %s with %d points quarantined, the other %d points delivered", len(stats.Segments), bad.File, bad.Points, want)
	p.stop(t, 30*time.Second)
	c.stop(t)
}
