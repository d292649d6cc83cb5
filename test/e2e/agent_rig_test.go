package e2e

// Helpers of the agent acceptance tests (agent_*_test.go). Names start with
// "ag" so that they stay clear of the other suites' helpers.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

// agStatus is the part of the agent's /status the tests read.
type agStatus struct {
	PointsRead     int64                  `json:"points_read"`
	PointsBuffered int64                  `json:"points_buffered"`
	PointsSent     int64                  `json:"points_sent"`
	PendingBatches int64                  `json:"buffer_pending_batches"`
	PendingPoints  int64                  `json:"buffer_pending_points"`
	InputsDone     bool                   `json:"inputs_done"`
	Ready          string                 `json:"ready"`
	PointsDropped  map[string]int64       `json:"points_dropped"`
	Buffer         *struct{ Bytes int64 } `json:"buffer"`
	Outputs        []struct {
		ID            string `json:"id"`
		Connected     bool   `json:"connected"`
		PointsSent    int64  `json:"points_sent"`
		BacklogPoints int64  `json:"backlog_points_sent"`
		Duplicates    int64  `json:"duplicates"`
		Rejected      int64  `json:"batches_rejected"`
		PendingPoints int64  `json:"pending_points"`
	} `json:"outputs"`
}

func agGetStatus(ctx context.Context, httpAddr string) (agStatus, error) {
	var st agStatus
	err := getJSON(ctx, "http://"+httpAddr+"/status", &st)
	return st, err
}

// agWaitStatus polls the agent's /status until cond holds.
func agWaitStatus(t *testing.T, httpAddr, what string, timeout time.Duration, cond func(agStatus) bool) agStatus {
	t.Helper()
	var st agStatus
	waitFor(t, what, timeout, func() (bool, error) {
		var err error
		st, err = agGetStatus(t.Context(), httpAddr)
		if err != nil {
			return false, err
		}
		return cond(st), fmt.Errorf("status %+v", st)
	})
	return st
}

// agCollector is a collector process that can be stopped and started again
// on the same data directory and ports.
type agCollector struct {
	p                   *proc
	dataDir, http, nats string
}

func agStartCollector(t *testing.T) *agCollector {
	t.Helper()
	c := &agCollector{dataDir: t.TempDir(), http: freeAddr(t), nats: freeAddr(t)}
	c.start(t)
	return c
}

// agCollectorAddrs reserves a collector's directory and ports without
// starting it: for tests where it is down from the beginning.
func agCollectorAddrs(t *testing.T) *agCollector {
	return &agCollector{dataDir: t.TempDir(), http: freeAddr(t), nats: freeAddr(t)}
}

func (c *agCollector) start(t *testing.T) {
	t.Helper()
	c.p = start(t, "citysense-collector", "run", "--data-dir", c.dataDir, "--http", c.http, "--nats", c.nats, "--log-format", "json")
	waitFor(t, "collector /readyz", 30*time.Second, func() (bool, error) { return httpOK("http://" + c.http + "/readyz") })
}

func (c *agCollector) stop(t *testing.T) {
	t.Helper()
	c.p.stop(t, 30*time.Second)
}

// agMetric returns the sum of the samples of a metric on /metrics at addr,
// and whether there was any.
func agMetric(t *testing.T, addr, name string) (float64, bool) {
	t.Helper()
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

// agSeriesKey is one series of the public API: a station's field.
type agSeriesKey struct{ station, field string }

// agStored returns, per station and field, the timestamps (ns) the
// collector's API holds for the given fields between from and to (Unix s).
// A timestamp stored twice would show twice.
func agStored(ctx context.Context, t *testing.T, httpAddr string, fields []string, from, to int64) map[agSeriesKey][]int64 {
	t.Helper()
	out := map[agSeriesKey][]int64{}
	for _, f := range fields {
		q := url.Values{"field": {f}, "from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)}, "time_format": {"rfc3339"}}
		var ans struct {
			Series []struct {
				Tags   map[string]string `json:"tags"`
				Points [][2]any          `json:"points"`
			} `json:"series"`
		}
		if err := getJSON(ctx, "http://"+httpAddr+"/api/v1/series?"+q.Encode(), &ans); err != nil {
			t.Fatal(err)
		}
		for _, s := range ans.Series {
			k := agSeriesKey{s.Tags["station"], f}
			for _, p := range s.Points {
				ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(p[0]))
				if err != nil {
					t.Fatalf("series %v: time %v: %v", k, p[0], err)
				}
				out[k] = append(out[k], ts.UnixNano())
			}
		}
	}
	return out
}

// agExpected returns, per station and field, the timestamps of the sim's
// points for the given ticks.
func agExpected(p sim.Params, ticks []int) (map[agSeriesKey][]int64, int) {
	out := map[agSeriesKey][]int64{}
	points := 0
	for _, tick := range ticks {
		for _, pt := range sim.Generate(p, tick) {
			points++
			st, _ := pt.Tag("station")
			for _, f := range pt.Fields {
				k := agSeriesKey{st, f.Key}
				out[k] = append(out[k], pt.Time)
			}
		}
	}
	return out, points
}

// agFields are the sim's field names.
var agFields = []string{"pm25", "pm10", "no2", "temperature", "humidity", "laeq", "count", "lat", "lon"}

// agCompare reports the first difference between what the store holds and
// what is expected, series by series; "" when equal.
func agCompare(got, want map[agSeriesKey][]int64) string {
	for k, w := range want {
		g := got[k]
		if len(g) != len(w) {
			return fmt.Sprintf("%v: %d points stored, want %d", k, len(g), len(w))
		}
		seen := map[int64]int{}
		for _, ts := range g {
			seen[ts]++
		}
		for _, ts := range w {
			if seen[ts] != 1 {
				return fmt.Sprintf("%v: the point at %s is stored %d times, want once", k, time.Unix(0, ts).UTC().Format(time.RFC3339Nano), seen[ts])
			}
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok && len(g) > 0 {
			return fmt.Sprintf("%v: %d points stored that were not expected", k, len(g))
		}
	}
	return ""
}

// agKill kills the agent with SIGKILL, as a power cut would stop it.
func agKill(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not die of SIGKILL")
	}
}

// agDiskUsage returns the bytes the files under dir occupy on disk (what
// du counts: a sparse file counts what is written, not its length).
func agDiskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// agLogLines returns the JSON log lines of a process whose msg is msg.
func agLogLines(t *testing.T, p *proc, msg string) []map[string]any {
	t.Helper()
	f, err := os.Open(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// agStdout runs a binary and returns its standard output alone.
func agStdout(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

// agPointsPerTick is how many points the sim emits per tick after tick 0.
func agPointsPerTick(stations int) int {
	return len(sim.Generate(sim.Params{Stations: stations, Seed: 1, Interval: time.Second, Start: time.Unix(0, 0)}, 1))
}

var _ = protocols.Point{}
