package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/agent/internal/quarantine"
	_ "github.com/citysense/citysense/protocols/httplp"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestAccumulator_Quarantine_httpInput(t *testing.T) {
	url := startCollector(t)
	dataDir, httpA, httpIn := t.TempDir(), freePort(t), freePort(t)
	a, err := New(loadConfig(t, fmt.Sprintf(`agent:
  id: gw-quarantine
  data_dir: %s
  http: %q
inputs:
  - type: http
    listen: %q
    precision: s
buffer:
  flush_interval: 1ms
outputs:
  - type: nats
    url: %s
`, dataDir, httpA, httpIn, url)), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, a)
	waitFor(t, "the http input", func() bool {
		c, err := net.Dial("tcp", httpIn)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	// One good line, one bad: the good one is stored, the body quarantined.
	body := []byte("air,station=s1 pm25=12 1735689600\nair,station=s1 pm25=\x01oops 1735689660\n")
	resp, err := http.Post("http://"+httpIn+"/write", "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("POST /write = %d, want 400", resp.StatusCode)
	}
	getJSON := func(path string, v any) int {
		resp, err := http.Get("http://" + httpA + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK && v != nil {
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatalf("%s: %v: %s", path, err, b)
			}
		}
		return resp.StatusCode
	}
	var list QuarantineList
	if code := getJSON("/quarantine", &list); code != http.StatusOK || len(list.Entries) != 1 {
		t.Fatalf("GET /quarantine = %d %+v", code, list)
	}
	e0 := list.Entries[0]
	if e0.Input != "inputs[0]" || !strings.HasPrefix(e0.Source, "http /write from 127.0.0.1:") || e0.Size != len(body) || !strings.Contains(e0.Reason, "line 2") {
		t.Fatalf("entry %+v", e0)
	}
	var e quarantine.Entry
	if code := getJSON(fmt.Sprintf("/quarantine/%d", e0.ID), &e); code != http.StatusOK || !bytes.Equal(e.Raw, body) {
		t.Fatalf("GET /quarantine/%d = %d, raw %q", e0.ID, code, e.Raw)
	}
	if code := getJSON("/quarantine/99", nil); code != http.StatusNotFound {
		t.Fatalf("GET /quarantine/99 = %d, want 404", code)
	}
	if code := getJSON("/quarantine/x", nil); code != http.StatusBadRequest {
		t.Fatalf("GET /quarantine/x = %d, want 400", code)
	}
	_, metricsText := get(t, a.Handler(), "/metrics")
	for _, want := range []string{
		`citysense_agent_quarantined_payloads_total{input="inputs[0]",type="http"} 1`,
		`citysense_agent_quarantine_entries 1`,
		`citysense_agent_quarantine_skipped_total{input="inputs[0]",type="http"} 0`,
	} {
		if !strings.Contains(metricsText, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if st := a.Status(); st.PointsRead != 1 || st.Quarantine == nil || st.Quarantine.Entries != 1 {
		t.Errorf("status: points read %d (want the one good line), quarantine %+v", st.PointsRead, st.Quarantine)
	}
	// Purge over the API, then the store is empty.
	req, _ := http.NewRequest(http.MethodDelete, "http://"+httpA+"/quarantine?before="+time.Now().Add(time.Minute).UTC().Format(time.RFC3339), nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != `{
  "purged": 1
}` {
		t.Fatalf("DELETE /quarantine = %d %s", resp.StatusCode, b)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Stopped, the file opens for another process.
	q, err := quarantine.Open(filepath.Join(dataDir, quarantine.FileName), quarantine.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if l, _ := q.List(); len(l) != 0 {
		t.Fatalf("after purge: %+v", l)
	}
}

func TestQuarantineLimiter_take(t *testing.T) {
	lim := quarantineLimiter{tokens: quarantineBurst}
	t0 := time.Unix(1000, 0)
	stored, logged := 0, 0
	for range quarantineBurst + 10 {
		s, l, _ := lim.take(t0)
		if s {
			stored++
		}
		if l {
			logged++
		}
	}
	if stored != quarantineBurst || logged != 1 {
		t.Fatalf("burst: stored %d, logged %d; want %d, 1", stored, logged, quarantineBurst)
	}
	// One second later the bucket holds quarantineRate tokens again, and
	// the next log line reports what it suppressed.
	stored = 0
	for range quarantineRate + 5 {
		if s, _, _ := lim.take(t0.Add(time.Second)); s {
			stored++
		}
	}
	_, l, suppressed := lim.take(t0.Add(quarantineLog))
	if stored != quarantineRate || !l || suppressed != quarantineBurst+10-1+quarantineRate+5 {
		t.Fatalf("refill: stored %d (want %d), log %v, suppressed %d", stored, quarantineRate, l, suppressed)
	}
}

func TestAgent_openQuarantine_corruptFileMovedAside(t *testing.T) {
	dataDir := t.TempDir()
	path := filepath.Join(dataDir, quarantine.FileName)
	garbage := bytes.Repeat([]byte("not a bbolt file "), 512)
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(loadConfig(t, simConfig(dataDir, "", "nats://127.0.0.1:1")), nil)
	if err != nil {
		t.Fatal(err)
	}
	a.openQuarantine(dataDir)
	defer a.closeQuarantine()
	if a.quar.Load() == nil {
		t.Fatal("no quarantine store after a corrupt file")
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("moved aside: %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); !bytes.Equal(b, garbage) {
		t.Fatal("the corrupt file was not kept as it was")
	}
}
