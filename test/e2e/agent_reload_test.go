package e2e

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestAgent_ReloadOnSIGHUP edits the agent's file while it runs: a file
// with a mistake is refused and the running configuration stays; a good
// one adds an input without a restart, and nothing is lost or sent twice.
func TestAgent_ReloadOnSIGHUP(t *testing.T) {
	// Past days: the collector refuses readings from the future.
	day := func(n int) string {
		return time.Now().UTC().Add(time.Duration(n) * 24 * time.Hour).Truncate(time.Hour).Format(time.RFC3339)
	}
	c := agStartCollector(t)
	httpA := freeAddr(t)
	base := fmt.Sprintf(`
agent:
  id: e2e-reload
  data_dir: %s
  http: %s
inputs:
  - type: sim
    stations: 2
    start: %s
    ticks: 3
    realtime: false
%%s
outputs:
  - type: nats
    url: nats://%s
`, t.TempDir(), httpA, day(-2), c.nats)
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(base, ""))
	p := start(t, "citysense-agent", "run", "-c", cfg, "--log-format", "json")
	first := agWaitStatus(t, httpA, "the first input delivered", 30*time.Second, func(st agStatus) bool {
		return st.InputsDone && st.PendingBatches == 0 && st.PointsSent > 0
	})
	hup := func(text string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	hup(fmt.Sprintf(base, "  - type: sim\n    statoins: 2\n"))
	waitFor(t, "the bad file to be refused", 10*time.Second, func() (bool, error) {
		n := len(agLogLines(t, p, "configuration not reloaded; the running one stays"))
		return n == 1, fmt.Errorf("%d refusals logged", n)
	})
	if ok, err := httpOK("http://" + httpA + "/healthz"); !ok {
		t.Fatalf("agent gone after a bad reload: %v", err)
	}

	hup(fmt.Sprintf(base, "  - type: sim\n    stations: 1\n    seed: 9\n    start: "+day(-1)+"\n    ticks: 2\n    realtime: false\n"))
	// One station, two ticks: 3 points each, plus its position at tick 0.
	st := agWaitStatus(t, httpA, "the added input delivered", 30*time.Second, func(st agStatus) bool {
		return st.InputsDone && st.PendingBatches == 0 && st.PointsSent == first.PointsSent+7
	})
	if st.PointsBuffered != st.PointsSent {
		t.Fatalf("buffered %d, sent %d", st.PointsBuffered, st.PointsSent)
	}
	if n := len(agLogLines(t, p, "configuration reloaded")); n != 1 {
		t.Fatalf("%d reloads logged, want 1", n)
	}
	p.stop(t, 30*time.Second)
	c.stop(t)
}
