package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStore_crashLosesNothingAcknowledged writes through the Influx API
// from several writers at once, kills the collector with SIGKILL in the
// middle, starts it again on the same data directory and checks that every
// point a writer got a 204 for is there, exactly once, with its value.
// Points of requests the kill interrupted may or may not be there, but never
// twice.
func TestStore_crashLosesNothingAcknowledged(t *testing.T) {
	const (
		writers  = 4
		stations = 25 // per writer
		ingest   = 4 * time.Second
	)
	dataDir := t.TempDir()
	out, err := exec.Command(filepath.Join(binDir, "citysense-collector"), "token", "add", "crash", "--data-dir", dataDir).Output()
	if err != nil {
		t.Fatalf("token add: %v", err)
	}
	token := strings.TrimSpace(string(out))
	runCollector := func() (*proc, string) {
		httpC, natsC := freeAddr(t), freeAddr(t)
		p := start(t, "citysense-collector", "run", "--data-dir", dataDir, "--http", httpC, "--nats", natsC, "--log-format", "json")
		waitFor(t, "collector /readyz", 30*time.Second, func() (bool, error) { return httpOK("http://" + httpC + "/readyz") })
		return p, httpC
	}
	collector, httpC := runCollector()

	// Each writer owns its stations; batch k of writer w holds one point
	// of every station at base + k ms, value k + 0.5.
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	type ack struct{ w, k int }
	var (
		mu    sync.Mutex
		acked []ack
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wc := &http.Client{Timeout: 5 * time.Second}
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				var body bytes.Buffer
				ts := base.Add(time.Duration(k) * time.Millisecond).UnixNano()
				for s := range stations {
					fmt.Fprintf(&body, "crash,station=w%d-%02d v=%d.5,n=%di %d\n", w, s, k, k, ts)
				}
				req, _ := http.NewRequest(http.MethodPost, "http://"+httpC+"/api/v2/write?org=e2e&bucket=e2e&precision=ns", &body)
				req.Header.Set("Authorization", "Token "+token)
				resp, err := wc.Do(req)
				if err != nil {
					return // the collector is gone
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					return
				}
				mu.Lock()
				acked = append(acked, ack{w, k})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(ingest)
	if err := collector.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-collector.done
	close(stop)
	wg.Wait()
	mu.Lock()
	want := map[string]map[int]bool{} // station → acknowledged k
	for _, a := range acked {
		for s := range stations {
			st := fmt.Sprintf("w%d-%02d", a.w, s)
			if want[st] == nil {
				want[st] = map[int]bool{}
			}
			want[st][a.k] = true
		}
	}
	n := len(acked)
	mu.Unlock()
	if n < 50 {
		t.Fatalf("only %d batches were acknowledged before the kill; the test needs heavy ingest", n)
	}
	t.Logf("%d batches (%d points) acknowledged before SIGKILL", n, n*stations*2)

	collector, httpC = runCollector()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type answer struct {
		Series []struct {
			Field  string            `json:"field"`
			Tags   map[string]string `json:"tags"`
			Points [][2]any          `json:"points"`
		} `json:"series"`
	}
	from, to := base.Add(-time.Second).Format(time.RFC3339Nano), base.Add(time.Hour).Format(time.RFC3339Nano)
	// After the restart the replay may still be under way: wait until
	// every station has at least every acknowledged point, then check.
	var problems []string
	waitFor(t, "every acknowledged point after the restart", 2*time.Minute, func() (bool, error) {
		problems = problems[:0]
		for _, field := range []string{"v", "n"} {
			q := url.Values{"measurement": {"crash"}, "field": {field}, "from": {from}, "to": {to}, "time_format": {"rfc3339"}}
			var a answer
			if err := getJSON(ctx, "http://"+httpC+"/api/v1/series?"+q.Encode(), &a); err != nil {
				return false, err
			}
			got := map[string]map[int]int{} // station → k → times seen
			for _, s := range a.Series {
				st := s.Tags["station"]
				got[st] = map[int]int{}
				for _, p := range s.Points {
					tm, err := time.Parse(time.RFC3339Nano, fmt.Sprint(p[0]))
					if err != nil {
						return false, err
					}
					k := int(tm.Sub(base) / time.Millisecond)
					got[st][k]++
					if v := fmt.Sprint(p[1]); v != fmt.Sprintf("%d.5", k) && v != fmt.Sprint(k) {
						problems = append(problems, fmt.Sprintf("%s %s at k=%d: value %v", st, field, k, v))
					}
				}
			}
			for st, ks := range want {
				for k := range ks {
					if got[st][k] == 0 {
						return false, fmt.Errorf("%s %s: acknowledged point k=%d missing", st, field, k)
					}
				}
			}
			for st, ks := range got {
				for k, c := range ks {
					if c > 1 {
						problems = append(problems, fmt.Sprintf("%s %s: point k=%d answered %d times", st, field, k, c))
					}
				}
			}
		}
		return true, nil
	})
	if len(problems) > 0 {
		t.Errorf("%d problems, first: %s", len(problems), strings.Join(problems[:min(5, len(problems))], "; "))
	}
	collector.stop(t, 30*time.Second)
}
