package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// coapClient returns Debian libcoap3-bin's client (coap-client-notls, or
// one of its TLS builds).
func coapClient(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"coap-client-notls", "coap-client-openssl", "coap-client-gnutls", "coap-client"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return needPeer(t, "coap-client-notls", "libcoap3-bin")
}

// TestProtocols_CoAP: coap-client posts JSON and line protocol as
// confirmable requests to the agent's coap input; the answers are 2.04
// (4.00 naming the bad line) and the exact points reach the collector.
func TestProtocols_CoAP(t *testing.T) {
	client := coapClient(t)
	_, httpC, natsC := startCollector(t, t.TempDir())
	listen := freeAddr(t) // a free TCP port; the UDP one is almost always free too
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-coap
inputs:
  - type: coap
    listen: %s
    tags: {district: d05}
`, listen))
	start(t, "citysense-agent", "run", "-c", cfg, "--data-dir", t.TempDir(), "--http", freeAddr(t), "--collector", "nats://"+natsC, "--log-format", "json")
	host, port, _ := net.SplitHostPort(listen)
	post := func(path, format, payload string) string {
		t.Helper()
		args := []string{"-m", "post", "-B", "5", "-e", payload}
		if format != "" {
			args = append(args, "-t", format)
		}
		out, err := exec.Command(client, append(args, fmt.Sprintf("coap://%s:%s%s", host, port, path))...).CombinedOutput()
		if err != nil {
			t.Fatalf("coap-client %s: %v: %s", path, err, out)
		}
		return string(out)
	}
	base := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC).Unix()
	// The input may need a moment to bind; a POST that times out returns nothing.
	waitFor(t, "the coap input", 20*time.Second, func() (bool, error) {
		out := post("/air?station=s0001", "json", fmt.Sprintf(`{"pm25":12.5,"meta":{"battery":90},"time":%d}`, base))
		return !strings.Contains(out, "4.") && !strings.Contains(out, "5."), fmt.Errorf("answer %q", out)
	})
	post("/air?station=s0001", "json", fmt.Sprintf(`{"pm25":13,"meta":{"battery":89},"time":"%s"}`, time.Unix(base+60, 0).UTC().Format(time.RFC3339)))
	if out := post("/write?precision=s", "text/plain", fmt.Sprintf("noise,station=s0002 laeq=61.5 %d\nnoise,station=s0002 laeq= %d\nnoise,station=s0002 laeq=63 %d", base, base+30, base+60)); !strings.Contains(out, "line 2") {
		t.Fatalf("partial line protocol: answer %q, want 4.00 naming line 2", out)
	}
	b := float64(base)
	assertSeries(t, httpC, map[seriesKey][][2]float64{
		{"air", "s0001", "pm25"}:         {{b, 12.5}, {b + 60, 13}},
		{"air", "s0001", "meta_battery"}: {{b, 90}, {b + 60, 89}},
		{"noise", "s0002", "laeq"}:       {{b, 61.5}, {b + 60, 63}},
	}, base-1, base+3600, 30*time.Second)
}
