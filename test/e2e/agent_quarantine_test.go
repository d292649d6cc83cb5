package e2e

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// quarantineListAnswer is `citysense-agent quarantine list --json`.
type quarantineListAnswer struct {
	Stats struct {
		Entries int `json:"entries"`
	} `json:"stats"`
	Entries []struct {
		ID     uint64 `json:"id"`
		Input  string `json:"input"`
		Source string `json:"source"`
		Reason string `json:"reason"`
		Size   int    `json:"size"`
	} `json:"entries"`
}

// TestAgent_QuarantineMQTT: mosquitto_pub sends valid JSON and garbage to
// the agent's mqtt input. The valid readings reach the collector; the
// garbage is listed by `citysense-agent quarantine list` while the agent
// runs (asked over its HTTP API, as the agent holds the file), `show`
// gives back its exact bytes, `purge` empties the store, and after the
// agent stops the command reads the file itself.
func TestAgent_QuarantineMQTT(t *testing.T) {
	broker := startMosquitto(t, "")
	_, httpC, natsC := startCollector(t, t.TempDir())
	httpA, dataA := freeAddr(t), t.TempDir()
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-quarantine
inputs:
  - type: mqtt
    broker: tcp://%s
    client_id: e2e-quarantine-agent
    qos: 1
    topics:
      - filter: q/+
        template: q/{station}
        measurement: air
        json: {time_path: ts}
      - filter: probe
        format: value
        measurement: probe
`, broker))
	agent := start(t, "citysense-agent", "run", "-c", cfg, "--data-dir", dataA, "--http", httpA, "--collector", "nats://"+natsC, "--log-format", "json")
	waitSubscribed(t, broker, httpA)

	base := time.Now().Add(-time.Hour).Truncate(time.Minute).Unix()
	garbage := []struct{ topic, payload string }{
		{"q/s0001", `{"ts":1772323260,"pm25":`},   // cut short
		{"q/s0002", "pm25 is twelve"},             // not JSON
		{"q/s0001", "\x00\xff\x10binary\r\njunk"}, // bytes no sensor should send
	}
	host, port, _ := net.SplitHostPort(broker)
	pub := needPeer(t, "mosquitto_pub", "mosquitto-clients")
	want := map[seriesKey][][2]float64{}
	for i := range 4 {
		st := fmt.Sprintf("s%04d", i%2+1)
		ts := base + int64(i)*60
		mosquittoPub(t, broker, "q/"+st, fmt.Sprintf(`{"ts":%d,"pm25":%d.5}`, ts, 10+i), 1)
		want[seriesKey{"air", st, "pm25"}] = append(want[seriesKey{"air", st, "pm25"}], [2]float64{float64(ts), float64(10+i) + 0.5})
		if i < len(garbage) {
			// -f sends the file's bytes as they are.
			f := filepath.Join(t.TempDir(), "payload")
			if err := os.WriteFile(f, []byte(garbage[i].payload), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", garbage[i].topic, "-f", f).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub: %v: %s", err, out)
			}
		}
	}
	assertSeries(t, httpC, want, base-1, base+3600, 30*time.Second)

	dirArgs := []string{"--data-dir", dataA, "--http", httpA}
	list := func() quarantineListAnswer {
		t.Helper()
		out := agStdout(t, "citysense-agent", append([]string{"quarantine", "list", "--json"}, dirArgs...)...)
		var l quarantineListAnswer
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("quarantine list --json: %v: %s", err, out)
		}
		return l
	}
	var l quarantineListAnswer
	waitFor(t, "three quarantined payloads", 20*time.Second, func() (bool, error) {
		l = list()
		return len(l.Entries) == len(garbage), fmt.Errorf("%+v", l)
	})
	for i, e := range l.Entries {
		g := garbage[i]
		if e.ID != uint64(i+1) || e.Input != "inputs[0]" || e.Source != "mqtt "+g.topic || e.Size != len(g.payload) || !strings.HasPrefix(e.Reason, "json") {
			t.Errorf("entry %d = %+v, want id %d from mqtt %s, %d bytes, a json reason", i, e, i+1, g.topic, len(g.payload))
		}
		raw := agStdout(t, "citysense-agent", append([]string{"quarantine", "show", "--raw", fmt.Sprint(e.ID)}, dirArgs...)...)
		if raw != g.payload {
			t.Errorf("show --raw %d = %q, want %q", e.ID, raw, g.payload)
		}
		shown := agStdout(t, "citysense-agent", append([]string{"quarantine", "show", fmt.Sprint(e.ID)}, dirArgs...)...)
		if !strings.Contains(shown, "source  mqtt "+g.topic+"\n") || !strings.HasSuffix(shown, "\n\n"+hex.Dump([]byte(g.payload))) {
			t.Errorf("show %d:\n%s\nwant the hex dump\n%s", e.ID, shown, hex.Dump([]byte(g.payload)))
		}
	}
	// The JSON form carries the bytes too.
	var e struct{ Raw string }
	if err := json.Unmarshal([]byte(agStdout(t, "citysense-agent", append([]string{"quarantine", "show", "--json", "3"}, dirArgs...)...)), &e); err != nil {
		t.Fatal(err)
	}
	if b, _ := base64.StdEncoding.DecodeString(e.Raw); string(b) != garbage[2].payload {
		t.Errorf("show --json 3: raw %q", b)
	}
	if v, _ := agMetric(t, httpA, `citysense_agent_quarantined_payloads_total{input="inputs[0]",type="mqtt"}`); v != 3 {
		t.Errorf("citysense_agent_quarantined_payloads_total = %v, want 3", v)
	}
	if v, _ := agMetric(t, httpA, "citysense_agent_quarantine_entries"); v != 3 {
		t.Errorf("citysense_agent_quarantine_entries = %v, want 3", v)
	}
	// One line per 10 s per input: the three came within a few seconds.
	if n := len(agLogLines(t, agent, "unreadable payload quarantined")); n == 0 || n >= len(garbage) {
		t.Errorf("%d log lines about %d quarantined payloads, want fewer (rate-limited) but some", n, len(garbage))
	}

	// Purge while the agent runs: nothing is older than a day, then all.
	if out := agStdout(t, "citysense-agent", append([]string{"quarantine", "purge", "--before", "24h"}, dirArgs...)...); out != "purged 0 entries\n" {
		t.Fatalf("purge --before 24h: %q", out)
	}
	if out := agStdout(t, "citysense-agent", append([]string{"quarantine", "purge"}, dirArgs...)...); out != "purged 3 entries\n" {
		t.Fatalf("purge: %q", out)
	}
	if l := list(); len(l.Entries) != 0 || l.Stats.Entries != 0 {
		t.Fatalf("after purge: %+v", l)
	}

	// One more, then stop the agent: the command reads the file itself.
	mosquittoPub(t, broker, "q/s0003", "{oops}", 1)
	waitFor(t, "the fourth payload", 20*time.Second, func() (bool, error) {
		l := list()
		return len(l.Entries) == 1, fmt.Errorf("%+v", l)
	})
	agent.stop(t, 30*time.Second)
	out := agStdout(t, "citysense-agent", "quarantine", "list", "--data-dir", dataA)
	if !strings.Contains(out, filepath.Join(dataA, "quarantine.db")) || !strings.Contains(out, "kept        1 entries") || !strings.Contains(out, "mqtt q/s0003") {
		t.Fatalf("quarantine list of the stopped agent:\n%s", out)
	}
	if raw := agStdout(t, "citysense-agent", "quarantine", "show", "--raw", "4", "--data-dir", dataA); raw != "{oops}" {
		t.Fatalf("show --raw 4 of the stopped agent: %q", raw)
	}
}
