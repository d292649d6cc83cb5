package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestProtocols_HTTP: curl posts gzip'd line protocol with one bad line to
// the agent's http input (400 naming the line, the valid lines land), JSON
// to /api/v1/push (204), a body over max_body (413) and one without the
// token (401); the exact points reach the collector.
func TestProtocols_HTTP(t *testing.T) {
	needPeer(t, "curl", "curl")
	_, httpC, natsC := startCollector(t, t.TempDir())
	httpA, listen := freeAddr(t), freeAddr(t)
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-http
inputs:
  - type: http
    listen: %s
    max_body: 64KiB
    token: ${E2E_HTTP_TOKEN:-s3cret}
    tags: {district: d07}
`, listen))
	start(t, "citysense-agent", "run", "-c", cfg, "--data-dir", t.TempDir(), "--http", httpA, "--collector", "nats://"+natsC, "--log-format", "json")
	waitFor(t, "the http input", 20*time.Second, func() (bool, error) { return httpOK("http://" + listen + "/health") })

	base := recentBase()
	lp := fmt.Sprintf("air,station=s0001 pm25=12.5,no2=30 %d\nair,station=s0001 pm25=oops %d\nair,station=s0002 pm25=7 %d\n", base, base+60, base+60)
	code, body := curl(t, "http://"+listen+"/api/v2/write?org=x&bucket=y&precision=s", gzipFile(t, "lp.gz", lp),
		"Content-Encoding: gzip", "Authorization: Token s3cret")
	if code != 400 || !strings.Contains(body, "line 2:") || !strings.Contains(body, "2 points stored") {
		t.Fatalf("partial write: %d %s, want 400 naming line 2", code, body)
	}
	push := fmt.Sprintf(`[{"measurement":"noise","tags":{"station":"s0003"},"fields":{"laeq":61.5},"time":%d},
{"measurement":"noise","tags":{"station":"s0003"},"fields":{"laeq":63},"time":"%s"}]`, base, time.Unix(base+60, 0).UTC().Format(time.RFC3339))
	if code, body := curl(t, "http://"+listen+"/api/v1/push", writeFile(t, "push.json", push), "Authorization: Bearer s3cret", "Content-Type: application/json"); code != 204 {
		t.Fatalf("push: %d %s", code, body)
	}
	if code, body := curl(t, "http://"+listen+"/write?p=s3cret", writeFile(t, "big.lp", strings.Repeat("air,station=s0009 pm25=1\n", 4000))); code != 413 {
		t.Fatalf("oversized body: %d %s, want 413", code, body)
	}
	if code, body := curl(t, "http://"+listen+"/write", writeFile(t, "noauth.lp", "air,station=s0009 pm25=1\n")); code != 401 {
		t.Fatalf("no token: %d %s, want 401", code, body)
	}
	if code, body := curl(t, "http://"+listen+"/write?precision=s&p=s3cret", writeFile(t, "v1.lp", fmt.Sprintf("air,station=s0002 pm25=8 %d\n", base+120))); code != 204 {
		t.Fatalf("v1 write: %d %s", code, body)
	}

	b := float64(base)
	assertSeries(t, httpC, map[seriesKey][][2]float64{
		{"air", "s0001", "pm25"}:   {{b, 12.5}},
		{"air", "s0001", "no2"}:    {{b, 30}},
		{"air", "s0002", "pm25"}:   {{b + 60, 7}, {b + 120, 8}},
		{"noise", "s0003", "laeq"}: {{b, 61.5}, {b + 60, 63}},
		{"air", "s0009", "pm25"}:   nil,
	}, base-1, base+3600, 30*time.Second)
	// The input's tags were added to every point.
	var ans seriesAnswer
	if err := getJSON(t.Context(), fmt.Sprintf("http://%s/api/v1/series?measurement=noise&field=laeq&station=s0003&from=%d&to=%d", httpC, base-1, base+3600), &ans); err != nil {
		t.Fatal(err)
	}
	if len(ans.Series) != 1 || ans.Series[0].Tags["district"] != "d07" {
		t.Fatalf("noise series = %+v, want the district tag d07 from the input", ans.Series)
	}
}
