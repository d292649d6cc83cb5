package e2e

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols/sim"
)

// TestAgent_BufferBound fills a 5 MiB buffer with the collector down until
// it overflows (policy drop_oldest), then brings the collector up. The data
// directory stays within the bound plus one segment, the agent's drop
// counter equals the points that never arrived, and the newest data
// arrives.
func TestAgent_BufferBound(t *testing.T) {
	const (
		stations = 1000
		ticks    = 400 // about 8 MB of merged batches: twice what fits
		maxBytes = 5 << 20
	)
	// Recent, but past: the collector refuses readings from the future.
	startT := time.Now().UTC().Add(-3 * 24 * time.Hour).Truncate(time.Hour)
	params := sim.Params{Stations: stations, Seed: 3, Interval: 10 * time.Second, Start: startT}
	c := agCollectorAddrs(t)
	dataDir, httpA := t.TempDir(), freeAddr(t)
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-bound
  data_dir: %s
  http: %s
inputs:
  - type: sim
    stations: %d
    seed: 3
    interval: 10s
    start: %s
    ticks: %d
    realtime: false
buffer:
  max_bytes: 5MiB
  policy: drop_oldest
outputs:
  - type: nats
    url: nats://%s
    reconnect_wait: 100ms
    max_backoff: 500ms
    backfill_rate: 0
`, dataDir, httpA, stations, startT.Format(time.RFC3339), ticks, c.nats))
	agent := start(t, "citysense-agent", "run", "-c", cfg, "--log-format", "json")

	st := agWaitStatus(t, httpA, "the sim to overflow the buffer", 2*time.Minute, func(st agStatus) bool { return st.InputsDone })
	_, total := agExpected(params, agTicks(ticks))
	dropped := st.PointsDropped["max_bytes"]
	// A segment is at most max_bytes/8; one may be in the making.
	const segment = maxBytes / 8
	du := agDiskUsage(t, dataDir)
	t.Logf("%d points made, %d dropped, %d kept; data dir %d bytes on disk, buffer %d bytes (bound %d + segment %d)",
		total, dropped, st.PendingPoints, du, st.Buffer.Bytes, maxBytes, segment)
	if st.PointsBuffered != int64(total) || dropped == 0 || dropped+st.PendingPoints != int64(total) {
		t.Fatalf("buffered %d, dropped %d, pending %d of %d points", st.PointsBuffered, dropped, st.PendingPoints, total)
	}
	if du > maxBytes+segment || st.Buffer.Bytes > maxBytes+segment {
		t.Fatalf("data dir holds %d bytes (buffer says %d), more than the bound %d plus a segment", du, st.Buffer.Bytes, maxBytes)
	}

	c.start(t)
	agWaitStatus(t, httpA, "the buffer to drain", 2*time.Minute, func(st agStatus) bool { return st.PendingBatches == 0 })
	var arrived float64
	waitFor(t, "the collector to ingest what was kept", time.Minute, func() (bool, error) {
		arrived, _ = agMetric(t, c.http, `citysense_ingest_points_total{stream="CS_RAW"}`)
		return int64(arrived) >= int64(total)-dropped, fmt.Errorf("ingested %v of %d", arrived, int64(total)-dropped)
	})
	if int64(arrived)+dropped != int64(total) {
		t.Fatalf("arrived %v + dropped %d != %d made", arrived, dropped, total)
	}
	// Whole ticks were dropped, the oldest: what arrived is the last ones,
	// up to the newest.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	last := startT.Add((ticks - 1) * 10 * time.Second)
	q := url.Values{"station": {sim.StationID(stations)}, "field": {"laeq"},
		"from": {fmt.Sprint(startT.Unix())}, "to": {fmt.Sprint(last.Unix())}}
	var ans struct {
		Series []struct {
			Points [][2]float64 `json:"points"`
		} `json:"series"`
	}
	waitFor(t, "the newest tick in the store", time.Minute, func() (bool, error) {
		if err := getJSON(ctx, "http://"+c.http+"/api/v1/series?"+q.Encode(), &ans); err != nil {
			return false, err
		}
		n := 0
		if len(ans.Series) == 1 {
			n = len(ans.Series[0].Points)
		}
		return n > 0 && int64(ans.Series[0].Points[n-1][0]) == last.Unix(), fmt.Errorf("%d points", n)
	})
	kept := len(ans.Series[0].Points)
	perTick := agPointsPerTick(stations)
	if int64(kept*perTick) != int64(total)-dropped {
		t.Fatalf("the last station has %d ticks stored; %d points per tick make %d, want %d arrived", kept, perTick, kept*perTick, int64(total)-dropped)
	}
	t.Logf("the newest %d of %d ticks arrived, the oldest %d were dropped and counted", kept, ticks, ticks-kept)
	agent.stop(t, 30*time.Second)
	c.stop(t)
}

func agTicks(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
