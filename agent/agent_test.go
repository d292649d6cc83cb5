package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/citysense/citysense/agent/internal/config"
	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startCollector runs an embedded JetStream server with a CS_RAW stream, as
// the collector would (test only: the agent never links nats-server).
func startCollector(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		ServerName: "agent-test", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: "CS_RAW", Subjects: []string{"cs.raw.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s.ClientURL()
}

// rawPoints returns every point in the CS_RAW stream, in order, and the
// message ids.
func rawPoints(t *testing.T, url string) (pts []protocols.Point, ids []string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(t.Context(), "CS_RAW")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(t.Context())
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	type batch struct {
		id  string
		seq int // the agent's batch number, from the id
		pts []protocols.Point
	}
	var batches []batch
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		id := m.Header.Get("Nats-Msg-Id")
		lp, err := dec.DecodeAll(m.Data, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := protocols.DecodeAll(lp, protocols.DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
		batches = append(batches, batch{id, n, got})
	}
	// In batch order, not stream order: with several batches in flight, a
	// publish that timed out on a loaded machine is sent again after the
	// next one landed (the stream's dedupe keeps one copy of each).
	slices.SortStableFunc(batches, func(a, b batch) int { return cmp.Compare(a.seq, b.seq) })
	for _, b := range batches {
		ids = append(ids, b.id)
		pts = append(pts, b.pts...)
	}
	return pts, ids
}

func loadConfig(t *testing.T, yaml string) config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return *c
}

func simConfig(dataDir, httpAddr, url string) string {
	return fmt.Sprintf(`agent:
  id: gw-test
  data_dir: %s
  http: %q
inputs:
  - type: sim
    stations: 4
    seed: 5
    interval: 1m
    start: 2025-01-01T00:00:00Z
    ticks: 3
    realtime: false
buffer:
  batch_points: 7
  flush_interval: 1ms
outputs:
  - type: nats
    url: %s
    timeout: 2s
    reconnect_wait: 50ms
    max_backoff: 200ms
`, dataDir, httpAddr, url)
}

// run starts a in the background and returns a function that stops it and
// returns Run's error.
func run(t *testing.T, a *Agent) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	var err error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				err = fmt.Errorf("Run did not return after cancel")
			}
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestAgent_Run_simToJetStream(t *testing.T) {
	url := startCollector(t)
	a, err := New(loadConfig(t, simConfig(t.TempDir(), "", url)), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := a.Handler()
	if code, _ := get(t, h, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before Run = %d", code)
	}
	stop := run(t, a)
	waitFor(t, "the finite sim to be sent", func() bool {
		st := a.Status()
		return st.InputsDone && st.BufferPendingBatches == 0 && st.PointsSent == st.PointsRead
	})
	if code, body := get(t, h, "/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/readyz = %d %q", code, body)
	}

	p := sim.Params{Stations: 4, Seed: 5, Interval: time.Minute, Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	var want []protocols.Point
	for tick := range 3 {
		want = append(want, sim.Generate(p, tick)...)
	}
	// 4 stations: 4 air + 4 noise + 2 traffic (+ 4 station at tick 0) per tick.
	if len(want) != 14+10+10 {
		t.Fatalf("test assumes 34 points, sim made %d", len(want))
	}

	code, body := get(t, h, "/status")
	if code != http.StatusOK {
		t.Fatalf("/status = %d", code)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	// batch_points 7 splits each tick: 14 → 2 batches, 10 → 2, 10 → 2.
	// The skeleton's keys keep their meaning; more follow.
	wantStatus := map[string]any{
		"agent_id": "gw-test", "points_read": 34.0, "points_buffered": 34.0, "points_sent": 34.0,
		"batches_sent": 6.0, "buffer_pending_batches": 0.0, "buffer_pending_points": 0.0, "inputs_done": true,
		"ready": "ok",
	}
	for k, v := range wantStatus {
		if !reflect.DeepEqual(st[k], v) {
			t.Fatalf("/status %s = %v, want %v in\n%s", k, st[k], v, body)
		}
	}
	outs, _ := st["outputs"].([]any)
	if len(outs) != 1 || outs[0].(map[string]any)["id"] != "nats" || outs[0].(map[string]any)["pending_points"] != 0.0 {
		t.Fatalf("/status outputs = %v", st["outputs"])
	}

	got, ids := rawPoints(t, url)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the stream holds %d points that differ from the %d the sim made", len(got), len(want))
	}
	if want := []string{"gw-test-1", "gw-test-2", "gw-test-3", "gw-test-4", "gw-test-5", "gw-test-6"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("message ids %v, want %v", ids, want)
	}

	_, m := get(t, h, "/metrics")
	for _, line := range []string{
		"citysense_agent_points_read_total 34", `citysense_agent_output_batches_sent_total{output="nats"} 6`,
		`citysense_agent_output_points_sent_total{output="nats"} 34`, `citysense_agent_output_errors_total{output="nats"} 0`,
		"citysense_agent_buffer_pending_batches 0", `citysense_agent_output_connected{output="nats"} 1`,
		`citysense_agent_points_dropped_total{reason="max_bytes"} 0`, "citysense_agent_buffer_segments 1",
		`citysense_agent_output_latency_seconds_count{output="nats"} 6`, "citysense_agent_ready 1",
		"go_goroutines ",
	} {
		if !strings.Contains(m, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if code, _ := get(t, h, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz after Run = %d", code)
	}
}

func TestAgent_Run_collectorDownKeepsData(t *testing.T) {
	// Nothing listens on this port: the agent must buffer and stay up.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "nats://" + ln.Addr().String()
	ln.Close()

	dataDir := t.TempDir()
	a, err := New(loadConfig(t, simConfig(dataDir, "", deadURL)), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, a)
	waitFor(t, "the sim to finish", func() bool { return a.Status().InputsDone })
	if st := a.Status(); st.PointsBuffered != 34 || st.BufferPendingPoints != 34 || st.PointsSent != 0 {
		t.Fatalf("status %+v", st)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}

	// The next run, with the collector back, sends what was kept; the
	// sim's ticks are sent again too, as new batches.
	url := startCollector(t)
	cfg := loadConfig(t, simConfig(dataDir, "", url))
	a, err = New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop = run(t, a)
	waitFor(t, "both runs' points to be sent", func() bool {
		st := a.Status()
		return st.InputsDone && st.BufferPendingBatches == 0 && st.PointsSent == 68
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got, ids := rawPoints(t, url)
	// Live first: the second run's batches may overtake the first run's.
	slices.SortFunc(ids, func(x, y string) int { return cmp.Compare(len(x), len(y))*2 + strings.Compare(x, y) })
	want := make([]string, 12)
	for i := range want {
		want[i] = fmt.Sprintf("gw-test-%d", i+1)
	}
	slices.SortFunc(want, func(x, y string) int { return cmp.Compare(len(x), len(y))*2 + strings.Compare(x, y) })
	// Batches that waited unclaimed may have been merged into their
	// first part's number (buffer/merge.go): fewer ids, none twice, none
	// outside 1..12.
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] || !slices.Contains(want, id) {
			t.Fatalf("stream ids %v; want each at most once, within %v", ids, want)
		}
		seen[id] = true
	}
	if len(got) != 68 || len(ids) < 6 {
		t.Fatalf("stream: %d points in batches %v; want 68, numbered on across the restart", len(got), ids)
	}
}

func TestAgent_Run_servesHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	url := startCollector(t)
	a, err := New(loadConfig(t, simConfig(t.TempDir(), addr, url)), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, a)
	waitFor(t, "readiness over HTTP", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Fatalf("/healthz = %d %q", resp.StatusCode, body)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("HTTP still served after Run returned")
	}
}

func TestAgent_Run_bufferLocked(t *testing.T) {
	dataDir := t.TempDir()
	url := startCollector(t)
	a1, err := New(loadConfig(t, simConfig(dataDir, "", url)), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, a1)
	waitFor(t, "the first agent to be ready", func() bool { code, _ := get(t, a1.Handler(), "/readyz"); return code == 200 })
	a2, _ := New(loadConfig(t, simConfig(dataDir, "", url)), nil)
	err = a2.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second agent on the same data_dir: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestNew_invalidConfig(t *testing.T) {
	c := loadConfig(t, simConfig(t.TempDir(), "", "nats://127.0.0.1:4222"))
	c.Agent.ID = "bad id"
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "agent.id") {
		t.Fatalf("New with a bad id: %v", err)
	}
}

func TestAgent_Run_processors(t *testing.T) {
	url := startCollector(t)
	cfg := loadConfig(t, fmt.Sprintf(`agent:
  id: gw-test
  data_dir: %s
  http: ""
inputs:
  - type: sim
    stations: 4
    seed: 5
    interval: 1m
    start: 2025-01-01T00:00:00Z
    ticks: 3
    realtime: false
    processors:
      - type: filter
        exclude:
          measurement: [traffic, station]
processors:
  - type: tags
    add: {gateway: gw-test}
buffer:
  flush_interval: 1ms
outputs:
  - type: nats
    url: %s
`, t.TempDir(), url))
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, a)
	waitFor(t, "the sim to be sent", func() bool {
		st := a.Status()
		return st.InputsDone && st.BufferPendingBatches == 0 && st.PointsSent > 0
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	p := sim.Params{Stations: 4, Seed: 5, Interval: time.Minute, Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	var want []protocols.Point
	for tick := range 3 {
		for _, pt := range sim.Generate(p, tick) {
			if pt.Measurement == "traffic" || pt.Measurement == "station" {
				continue
			}
			pt.SetTag("gateway", "gw-test")
			want = append(want, pt)
		}
	}
	got, _ := rawPoints(t, url)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the stream holds %d points, want %d: the input's filter, then the global tags", len(got), len(want))
	}
	if st := a.Status(); st.PointsRead != 34 || st.PointsBuffered != uint64(len(want)) {
		t.Fatalf("read %d buffered %d, want 34 and %d", st.PointsRead, st.PointsBuffered, len(want))
	}
}

func TestAgent_Run_readyzDegradedWhileBuffering(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "nats://" + ln.Addr().String()
	ln.Close()
	a, err := New(loadConfig(t, simConfig(t.TempDir(), "", deadURL)), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, a)
	defer stop()
	waitFor(t, "the sim to be buffered", func() bool { return a.Status().InputsDone })
	code, body := get(t, a.Handler(), "/readyz")
	if code != http.StatusOK || !strings.HasPrefix(body, "degraded: buffering") || !strings.Contains(body, "nats") {
		t.Fatalf("/readyz while the collector is away = %d %q", code, body)
	}
}

func TestAgent_Reload(t *testing.T) {
	url := startCollector(t)
	dataDir := t.TempDir()
	a, err := New(loadConfig(t, simConfig(dataDir, "", url)), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, a)
	defer stop()
	waitFor(t, "the first sim", func() bool { st := a.Status(); return st.InputsDone && st.PointsSent == 34 })

	// A bad configuration changes nothing.
	bad := loadConfig(t, simConfig(dataDir, "", url))
	bad.Outputs[0].MaxInflight = 5000
	if err := a.Reload(bad); err == nil {
		t.Fatal("Reload accepted an invalid configuration")
	}

	// A second input and a changed output; the unchanged input is kept
	// (it is done and is not run again: its 34 points stay 34).
	yaml := simConfig(dataDir, "", url) + `    max_inflight: 8
`
	yaml = strings.Replace(yaml, "inputs:\n", `inputs:
  - type: sim
    stations: 1
    seed: 9
    interval: 1m
    start: 2025-06-01T00:00:00Z
    ticks: 2
    realtime: false
`, 1)
	if err := a.Reload(loadConfig(t, yaml)); err != nil {
		t.Fatal(err)
	}
	// 1 station: 1 air + 1 noise + 1 traffic per tick, + 1 station at tick 0.
	waitFor(t, "the new input's points", func() bool {
		st := a.Status()
		return st.InputsDone && st.PointsSent == 34+7 && st.BufferPendingBatches == 0
	})
	st := a.Status()
	if st.Reloads != 1 || len(st.Inputs) != 2 || st.Outputs[0].ID != "nats" {
		t.Fatalf("status after reload: %+v", st)
	}
	got, _ := rawPoints(t, url)
	if len(got) != 41 {
		t.Fatalf("stream holds %d points, want 41 (nothing sent twice, nothing lost)", len(got))
	}

	// Keys only a restart can change are reported and kept.
	moved := loadConfig(t, yaml)
	moved.Agent.HTTP = "127.0.0.1:1"
	if err := a.Reload(moved); !errors.Is(err, ErrNeedsRestart) {
		t.Fatalf("Reload with a new http address = %v", err)
	}
}

func TestAgent_Reload_globalProcessors(t *testing.T) {
	url := startCollector(t)
	dataDir := t.TempDir()
	yaml := func(tag string, seed int) string {
		return fmt.Sprintf(`agent:
  id: gw-test
  data_dir: %s
  http: ""
inputs:
  - type: sim
    stations: 1
    seed: %d
    interval: 1m
    start: 2025-01-01T00:00:00Z
    ticks: 1
    realtime: false
processors:
  - type: tags
    add: {site: %s}
buffer:
  flush_interval: 1ms
outputs:
  - type: nats
    url: %s
`, dataDir, seed, tag, url)
	}
	a, err := New(loadConfig(t, yaml("old", 1)), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, a)
	defer stop()
	waitFor(t, "the first tick", func() bool { st := a.Status(); return st.InputsDone && st.PointsSent == 4 })
	// New processors and a new input (another seed): its points get the new tag.
	if err := a.Reload(loadConfig(t, yaml("new", 2))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second tick", func() bool { st := a.Status(); return st.InputsDone && st.PointsSent == 8 })
	got, _ := rawPoints(t, url)
	sites := map[string]int{}
	for _, p := range got {
		v, _ := p.Tag("site")
		sites[v]++
	}
	if sites["old"] != 4 || sites["new"] != 4 {
		t.Fatalf("site tags %v, want 4 old and 4 new", sites)
	}
}
