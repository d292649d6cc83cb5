package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/citysense/citysense/protocols/sim"
)

// startCollector runs a collector on loopback with its data in dataDir and
// waits until it is ready.
func startCollector(t *testing.T, dataDir string) (p *proc, httpAddr, natsAddr string) {
	t.Helper()
	httpAddr, natsAddr = freeAddr(t), freeAddr(t)
	p = start(t, "citysense-collector", "run", "--data-dir", dataDir, "--http", httpAddr, "--nats", natsAddr, "--log-format", "json")
	waitFor(t, "collector /readyz", 30*time.Second, func() (bool, error) { return httpOK("http://" + httpAddr + "/readyz") })
	return p, httpAddr, natsAddr
}

// curl posts the file at path with the real curl binary and returns the
// status code and the answer's body.
func curl(t *testing.T, target, path string, headers ...string) (int, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "answer")
	args := []string{"-sS", "-o", out, "-w", "%{http_code}", "-X", "POST", "--data-binary", "@" + path, "--max-time", "60"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	cmd := exec.Command("curl", append(args, target)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	code, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s: %v: %s", target, err, stderr.String())
	}
	n, err := strconv.Atoi(string(code))
	if err != nil {
		t.Fatalf("curl status %q", code)
	}
	body, _ := os.ReadFile(out)
	return n, string(body)
}

func gzipFile(t *testing.T, name, content string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	io.WriteString(zw, content)
	zw.Close()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// series fetches /api/v1/series and returns its points for one station.
func series(ctx context.Context, httpAddr, station, field string, from, to int64) ([][2]float64, error) {
	q := url.Values{"station": {station}, "field": {field}, "from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)}}
	var ans seriesAnswer
	if err := getJSON(ctx, "http://"+httpAddr+"/api/v1/series?"+q.Encode(), &ans); err != nil {
		return nil, err
	}
	var pts [][2]float64
	for _, s := range ans.Series {
		pts = append(pts, s.Points...)
	}
	return pts, nil
}

// metric returns the sum of every sample of a metric on /metrics.
func metric(t *testing.T, httpAddr, name string) float64 {
	t.Helper()
	resp, err := client.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// TestIngest_InfluxWrite drives the Influx v2 write API with curl, the way
// an operator tries it: a token created while the collector runs, a gzip'd
// body, a batch with one bad line, a body over the limit, no token.
func TestIngest_InfluxWrite(t *testing.T) {
	dataDir := t.TempDir()
	collector, httpC, _ := startCollector(t, dataDir)
	out, code := runCmd(t, "citysense-collector", "token", "add", "e2e-writer", "--data-dir", dataDir)
	token := regexp.MustCompile(`(?m)^cs_[A-Za-z0-9_-]{43}$`).FindString(out)
	if code != 0 || token == "" {
		t.Fatalf("token add (exit %d):\n%s", code, out)
	}
	writeURL := "http://" + httpC + "/api/v2/write?org=city&bucket=sensors&precision=s"
	auth := "Authorization: Token " + token
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).Unix()
	good := gzipFile(t, "good.lp.gz", fmt.Sprintf(
		"air,district=d07,station=w0001 pm25=11.5,no2=20 %d\nair,district=d07,station=w0001 pm25=12.25 %d\nair,district=d07,station=w0002 pm25=3 %d\n",
		t0, t0+10, t0))
	// The collector picks the new token up within a second of its creation.
	var status int
	var body string
	waitFor(t, "the collector to accept the new token", 10*time.Second, func() (bool, error) {
		status, body = curl(t, writeURL, good, auth, "Content-Encoding: gzip")
		return status != 401, fmt.Errorf("status %d: %s", status, body)
	})
	if status != 204 {
		t.Fatalf("gzip write: status %d: %s", status, body)
	}
	check := func(station, field string, want [][2]float64) {
		t.Helper()
		var got [][2]float64
		waitFor(t, station+" "+field+" to be stored", 15*time.Second, func() (bool, error) {
			var err error
			got, err = series(ctx, httpC, station, field, t0-60, t0+60)
			return err == nil && len(got) >= len(want), fmt.Errorf("%v %v", got, err)
		})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s %s = %v, want %v", station, field, got, want)
		}
	}
	check("w0001", "pm25", [][2]float64{{float64(t0), 11.5}, {float64(t0 + 10), 12.25}})
	check("w0001", "no2", [][2]float64{{float64(t0), 20}})
	check("w0002", "pm25", [][2]float64{{float64(t0), 3}})

	// A single node publishes a batch as one CS_SERIES message, however
	// many partitions its series fall in (forty stations span all 16).
	before := metric(t, httpC, "citysense_series_messages_published_total")
	var many strings.Builder
	for i := range 40 {
		fmt.Fprintf(&many, "air,district=d07,station=m%04d pm25=%d %d\n", i, i, t0)
	}
	if status, body = curl(t, writeURL, writeFile(t, "many.lp", many.String()), auth); status != 204 {
		t.Fatalf("40-station write: status %d: %s", status, body)
	}
	if d := metric(t, httpC, "citysense_series_messages_published_total") - before; d != 1 {
		t.Errorf("a 40-station batch was published as %v CS_SERIES messages, want 1", d)
	}
	check("m0000", "pm25", [][2]float64{{float64(t0), 0}})
	check("m0039", "pm25", [][2]float64{{float64(t0), 39}})

	// One bad line: 400 naming it, and the other lines still land.
	mixed := writeFile(t, "mixed.lp", fmt.Sprintf("air,station=w0003 pm25=1 %d\nair,station=w0003 pm25=oops %d\nair,station=w0003 pm25=3 %d\n", t0, t0+10, t0+20))
	status, body = curl(t, writeURL, mixed, auth)
	if status != 400 || !strings.Contains(body, `"code":"invalid"`) || !strings.Contains(body, "line 2:") || strings.Contains(body, "line 1:") {
		t.Errorf("batch with a bad line: %d %s, want 400 naming line 2 only", status, body)
	}
	check("w0003", "pm25", [][2]float64{{float64(t0), 1}, {float64(t0 + 20), 3}})

	// 50 MB: refused before it is read, and the collector goes on serving.
	big := filepath.Join(t.TempDir(), "big.lp")
	line := []byte(fmt.Sprintf("air,station=w0009 pm25=1 %d\n", t0))
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for n := 0; n < 50<<20; n += len(line) {
		w.Write(line)
	}
	w.Flush()
	f.Close()
	if status, body = curl(t, writeURL, big, auth); status != 413 || !strings.Contains(body, "request too large") {
		t.Errorf("50 MB body: %d %.200s, want 413", status, body)
	}
	if ok, err := httpOK("http://" + httpC + "/readyz"); !ok {
		t.Fatalf("collector not ready after the 413: %v", err)
	}
	if status, body = curl(t, writeURL, good, auth, "Content-Encoding: gzip"); status != 204 {
		t.Errorf("write after the 413: %d %s", status, body)
	}

	// No token, a wrong token.
	for _, h := range []string{"X-No-Auth: 1", "Authorization: Token cs_wrong"} {
		if status, body = curl(t, writeURL, good, h, "Content-Encoding: gzip"); status != 401 || !strings.Contains(body, `"code":"unauthorized"`) {
			t.Errorf("%s: %d %s, want 401", h, status, body)
		}
	}
	if pts, _ := series(ctx, httpC, "w0009", "pm25", t0-60, t0+60); len(pts) != 0 {
		t.Errorf("points from the refused 50 MB body were stored: %v", pts)
	}
	collector.stop(t, 20*time.Second)
}

// TestIngest_AgentEnrollment enrolls two agents while the collector runs.
// The enrolled agent delivers; an agent that publishes as another agent
// with that agent's credentials, and agents with garbage or unknown
// credentials, are refused: nothing they sent is stored, and the
// collector's metrics count the refusals.
func TestIngest_AgentEnrollment(t *testing.T) {
	dataDir := t.TempDir()
	collector, httpC, natsC := startCollector(t, dataDir)
	if v := metric(t, httpC, "citysense_bus_dev_mode"); v != 1 {
		t.Fatalf("citysense_bus_dev_mode = %v before any enrollment, want 1", v)
	}
	for _, id := range []string{"gw-a", "gw-b"} {
		out, code := runCmd(t, "citysense-collector", "agent", "add", id, "--data-dir", dataDir)
		if code != 0 || !strings.Contains(out, "creds: ") {
			t.Fatalf("agent add %s (exit %d):\n%s", id, code, out)
		}
	}
	credsA := filepath.Join(dataDir, "agents", "gw-a.creds")
	waitFor(t, "development mode to end", 10*time.Second, func() (bool, error) {
		v := metric(t, httpC, "citysense_bus_dev_mode")
		return v == 0, fmt.Errorf("citysense_bus_dev_mode %v", v)
	})

	garbage := writeFile(t, "garbage.creds", "this is not a credentials file\n")
	stranger, _ := nkeys.CreateUser()
	seed, _ := stranger.Seed()
	unknown := writeFile(t, "unknown.creds", "-----BEGIN USER NKEY SEED-----\n"+string(seed)+"\n------END USER NKEY SEED------\n")

	// Each agent simulates the same stations on its own day (within the
	// default raw retention), so whatever is stored tells whose it was.
	type agentRun struct {
		id, creds string
		day       time.Time
		delivers  bool
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	runs := []agentRun{
		{"gw-a", credsA, today.AddDate(0, 0, -10), true},
		{"gw-b", credsA, today.AddDate(0, 0, -11), false},  // gw-a's key publishing to cs.raw.gw-b
		{"gw-c", garbage, today.AddDate(0, 0, -12), false}, // not a creds file at all
		{"gw-d", unknown, today.AddDate(0, 0, -13), false}, // a key the collector never enrolled
	}
	const stations, ticks = 3, 6
	agents := map[string]*proc{}
	httpAgents := map[string]string{}
	for _, r := range runs {
		cfg := writeFile(t, r.id+".yaml", fmt.Sprintf(`
agent:
  id: %s
inputs:
  - type: sim
    stations: %d
    seed: 7
    interval: 10s
    start: %s
    ticks: %d
    realtime: false
outputs:
  - type: nats
    url: nats://%s
    creds: %s
    timeout: 2s
`, r.id, stations, r.day.Format(time.RFC3339), ticks, natsC, r.creds))
		httpAgents[r.id] = freeAddr(t)
		agents[r.id] = start(t, "citysense-agent", "run", "-c", cfg, "--id", r.id,
			"--data-dir", t.TempDir(), "--http", httpAgents[r.id], "--log-format", "json")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dayRange := func(d time.Time) (int64, int64) {
		return d.Unix(), d.Unix() + ticks*10
	}
	// gw-a delivers every point, exactly.
	params := sim.Params{Stations: stations, Seed: 7, Interval: 10 * time.Second, Start: runs[0].day}
	var want [][2]float64
	for tick := range ticks {
		for _, p := range sim.Generate(params, tick) {
			if st, _ := p.Tag("station"); st == "s0003" && p.Measurement == "air" {
				v, _ := p.Field("pm25")
				want = append(want, [2]float64{float64(p.Time / 1e9), v.FloatV()})
			}
		}
	}
	from, to := dayRange(runs[0].day)
	var got [][2]float64
	waitFor(t, "gw-a's points in the store", 60*time.Second, func() (bool, error) {
		var err error
		got, err = series(ctx, httpC, "s0003", "pm25", from, to)
		return err == nil && len(got) >= len(want), fmt.Errorf("%d of %d points (%v)", len(got), len(want), err)
	})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("gw-a s0003 pm25 = %v, want %v", got, want)
	}

	// The refusals are counted by the collector.
	waitFor(t, "the collector to count the refused agents", 30*time.Second, func() (bool, error) {
		viol := metric(t, httpC, "citysense_bus_permission_violations_total")
		fails := metric(t, httpC, "citysense_bus_auth_failures_total")
		return viol >= 1 && fails >= 1, fmt.Errorf("permission violations %v, auth failures %v", viol, fails)
	})
	// gw-b kept trying for a while; nothing of its, gw-c's or gw-d's landed.
	time.Sleep(2 * time.Second)
	for _, r := range runs[1:] {
		from, to := dayRange(r.day)
		for _, st := range []string{"s0001", "s0002", "s0003"} {
			if pts, err := series(ctx, httpC, st, "pm25", from, to); err != nil || len(pts) != 0 {
				t.Errorf("%s (refused) got %d points of %s stored (%v)", r.id, len(pts), st, err)
			}
		}
	}
	var st agentStatus
	if err := getJSON(ctx, "http://"+httpAgents["gw-b"]+"/status", &st); err == nil && st.PointsSent != 0 {
		t.Errorf("gw-b reports %d points sent; the collector must never have acknowledged any", st.PointsSent)
	}
	for _, r := range runs {
		select {
		case err := <-agents[r.id].done:
			// It gave up on its own, e.g. on unreadable credentials.
			t.Logf("%s exited by itself: %v", r.id, err)
			agents[r.id].done <- err
		default:
			agents[r.id].stop(t, 20*time.Second)
		}
	}
	collector.stop(t, 20*time.Second)
}
