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
	base := recentBase()
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

// coapServer runs Debian libcoap3-bin's example server (coap-server-notls,
// or a TLS build) on a free loopback port and returns its address. Its
// /example_data resource keeps what a PUT sends (with its Content-Format),
// answers GET with it, and notifies its observers of each PUT.
func coapServer(t *testing.T) string {
	t.Helper()
	bin := ""
	for _, name := range []string{"coap-server-notls", "coap-server-openssl", "coap-server-gnutls", "coap-server"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		bin = needPeer(t, "coap-server-notls", "libcoap3-bin")
	}
	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	srv := exec.Command(bin, "-A", host, "-p", port)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	return addr
}

// TestProtocols_CoAPPollObserve: the agent's coap input reads a real CoAP
// server (libcoap's coap-server) itself, once by polling /example_data with
// GET and once by observing it (RFC 7641). coap-client PUTs three readings;
// each reaches the collector exactly, through both paths.
func TestProtocols_CoAPPollObserve(t *testing.T) {
	client := coapClient(t)
	srv := coapServer(t)
	_, httpC, natsC := startCollector(t, t.TempDir())
	put := func(payload string) {
		t.Helper()
		out, err := exec.Command(client, "-m", "put", "-B", "5", "-t", "json", "-e", payload, "coap://"+srv+"/example_data").CombinedOutput()
		if err != nil || strings.Contains(string(out), "4.") || strings.Contains(string(out), "5.") {
			t.Fatalf("coap-client put: %v: %s", err, out)
		}
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Minute).Unix()
	reading := func(i int) (string, [2]float64) {
		v := 10.5 + float64(i)
		return fmt.Sprintf(`{"pm25":%g,"time":%d}`, v, base+int64(i)*60), [2]float64{float64(base + int64(i)*60), v}
	}
	first, _ := reading(0)
	waitFor(t, "coap-server", 10*time.Second, func() (bool, error) {
		out, err := exec.Command(client, "-m", "put", "-B", "2", "-t", "json", "-e", first, "coap://"+srv+"/example_data").CombinedOutput()
		return err == nil && len(out) == 0, fmt.Errorf("%v: %q", err, out)
	})
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-coap-poll
inputs:
  - type: coap
    listen: ""
    tags: {district: d07}
    poll:
      - url: coap://%[1]s/example_data
        measurement: air
        format: json
        interval: 300ms
        jitter: 100ms
        tags: {station: s-poll}
      - url: coap://%[1]s/example_data
        measurement: air
        observe: true
        interval: 5s
        tags: {station: s-obs}
`, srv))
	start(t, "citysense-agent", "run", "-c", cfg, "--data-dir", t.TempDir(), "--http", freeAddr(t), "--collector", "nats://"+natsC, "--log-format", "json")

	want := func(n int) map[seriesKey][][2]float64 {
		var pts [][2]float64
		for i := range n {
			_, p := reading(i)
			pts = append(pts, p)
		}
		return map[seriesKey][][2]float64{{"air", "s-poll", "pm25"}: pts, {"air", "s-obs", "pm25"}: pts}
	}
	assertSeries(t, httpC, want(1), base-1, base+3600, 30*time.Second)
	// Each new state reaches both: the observer by notification, the
	// poller at its next GET.
	for i := 1; i < 3; i++ {
		payload, _ := reading(i)
		put(payload)
		assertSeries(t, httpC, want(i+1), base-1, base+3600, 30*time.Second)
	}
	var ans seriesAnswer
	if err := getJSON(t.Context(), fmt.Sprintf("http://%s/api/v1/series?measurement=air&field=pm25&station=s-obs&from=%d&to=%d", httpC, base-1, base+3600), &ans); err != nil {
		t.Fatal(err)
	}
	if len(ans.Series) != 1 || ans.Series[0].Tags["district"] != "d07" {
		t.Fatalf("tags %+v, want the input's district d07", ans.Series)
	}
}
