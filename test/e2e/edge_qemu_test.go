package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols/sim"
)

// edgeQEMU returns the path of qemu-user's static emulator for an arch
// ("aarch64", "arm"). The tests call it explicitly instead of relying on a
// binfmt_misc registration, which containers often lack.
func edgeQEMU(t *testing.T, arch string) string {
	t.Helper()
	return needPeer(t, "qemu-"+arch+"-static", "qemu-user-static")
}

// edgeStartEmulated starts a foreign-architecture binary under qemu-user,
// as the harness's start does for the native ones.
func edgeStartEmulated(t *testing.T, qemu, bin string, args ...string) *proc {
	t.Helper()
	name := filepath.Base(bin)
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(qemu, append([]string{bin}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s under %s: %v", name, qemu, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("---- %s log (tail) ----\n%s", name, b)
		}
	})
	return p
}

// TestEdge_AgentUnderQEMU cross-builds the agent for linux/arm64 and
// linux/arm/v7, runs each under qemu-user against a native collector and
// checks that every simulated point arrives with its time and value, once.
func TestEdge_AgentUnderQEMU(t *testing.T) {
	for _, c := range []struct{ name, goarch, goarm, qemu, platform string }{
		{"arm64", "arm64", "", "aarch64", "linux/arm64"},
		{"armv7", "arm", "7", "arm", "linux/arm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			qemu := edgeQEMU(t, c.qemu)
			bin := edgeCrossBuild(t, "agent", c.goarch, c.goarm)

			// The binary really is foreign: it reports its platform under qemu.
			out, err := exec.Command(qemu, bin, "version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "platform:   "+c.platform) {
				t.Fatalf("%s version under qemu: %v\n%s", c.name, err, out)
			}
			edgeSimToCollector(t, qemu, bin, "e2e-"+c.name)
		})
	}
}

// edgeSimToCollector runs a finite simulation in an emulated agent against
// a native collector and compares the API's answer with the generator's.
func edgeSimToCollector(t *testing.T, qemu, bin, id string) {
	const (
		stations = 5
		ticks    = 40
		seed     = 9
	)
	startT := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	params := sim.Params{Stations: stations, Seed: seed, Interval: 10 * time.Second, Start: startT}
	col := agStartCollector(t)

	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: %s
inputs:
  - type: sim
    stations: %d
    seed: %d
    interval: 10s
    start: %s
    ticks: %d
    realtime: false
`, id, stations, seed, startT.Format(time.RFC3339), ticks))
	httpA := freeAddr(t)
	began := time.Now()
	agent := edgeStartEmulated(t, qemu, bin, "run", "-c", cfg,
		"--data-dir", t.TempDir(), "--http", httpA, "--collector", "nats://"+col.nats, "--log-format", "json")

	type key struct{ station, field string }
	want := map[key][][2]float64{}
	wantPoints, wantValues := 0, 0
	for tick := 0; tick < ticks; tick++ {
		for _, p := range sim.Generate(params, tick) {
			wantPoints++
			st, _ := p.Tag("station")
			for _, f := range p.Fields {
				v, ok := f.Value.AsFloat()
				if !ok {
					t.Fatalf("sim produced a non-numeric field %v", f)
				}
				want[key{st, f.Key}] = append(want[key{st, f.Key}], [2]float64{float64(p.Time / 1e9), v})
				wantValues++
			}
		}
	}

	// Emulation is slow to start; the agent's own account comes first.
	st := agWaitStatus(t, httpA, "the emulated agent to send everything", 120*time.Second, func(s agStatus) bool {
		return s.InputsDone && s.PendingBatches == 0 && s.PointsSent >= int64(wantPoints)
	})
	if st.PointsRead != int64(wantPoints) || st.PointsSent != int64(wantPoints) {
		t.Fatalf("agent read %d and sent %d points, the simulation has %d", st.PointsRead, st.PointsSent, wantPoints)
	}
	delivered := time.Since(began)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	from, to := startT.Unix(), startT.Add(ticks*10*time.Second).Unix()
	query := func(k key) ([][2]float64, error) {
		q := url.Values{"station": {k.station}, "field": {k.field}, "from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)}}
		var ans seriesAnswer
		if err := getJSON(ctx, "http://"+col.http+"/api/v1/series?"+q.Encode(), &ans); err != nil {
			return nil, err
		}
		switch len(ans.Series) {
		case 0:
			return nil, nil
		case 1:
			if ans.Partial || ans.Series[0].Tags["station"] != k.station {
				return nil, fmt.Errorf("%v: answer labelled %v partial=%v", k, ans.Series[0].Tags, ans.Partial)
			}
			return ans.Series[0].Points, nil
		}
		return nil, fmt.Errorf("%v: %d series, want 1", k, len(ans.Series))
	}
	last := key{fmt.Sprintf("s%04d", stations), "laeq"}
	waitFor(t, "the collector to store the last series", 30*time.Second, func() (bool, error) {
		pts, err := query(last)
		return err == nil && len(pts) == len(want[last]), fmt.Errorf("%d of %d points (%v)", len(pts), len(want[last]), err)
	})
	got := 0
	for k, w := range want {
		pts, err := query(k)
		if err != nil {
			t.Fatal(err)
		}
		if len(pts) != len(w) {
			t.Fatalf("%v: %d points stored, want %d", k, len(pts), len(w))
		}
		for i := range w {
			if pts[i] != w[i] {
				t.Fatalf("%v point %d = %v, want %v", k, i, pts[i], w[i])
			}
		}
		got += len(pts)
	}
	if got != wantValues {
		t.Fatalf("the API returned %d values, want %d", got, wantValues)
	}
	t.Logf("%s under %s: sent %d points, all %d values stored exactly; delivered %s after start",
		id, filepath.Base(qemu), st.PointsSent, got, delivered.Round(100*time.Millisecond))

	agent.stop(t, 60*time.Second)
	col.stop(t)
}
