package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProtocols_System: the agent's system input on this machine; the
// memory size in the collector is exactly /proc/meminfo's, and the other
// readings are plausible.
func TestProtocols_System(t *testing.T) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatalf("read /proc/meminfo (the system input needs Linux): %v", err)
	}
	var memKB int64
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			memKB, _ = strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
		}
	}
	_, httpC, natsC := startCollector(t, t.TempDir())
	cfg := writeFile(t, "agent.yaml", `
agent:
  id: e2e-system
inputs:
  - type: system
    interval: 1s
    tags: {station: gw-e2e}
`)
	start(t, "citysense-agent", "run", "-c", cfg, "--data-dir", t.TempDir(), "--http", freeAddr(t), "--collector", "nats://"+natsC, "--log-format", "json")
	from, to := time.Now().Add(-time.Minute).Unix(), time.Now().Add(5*time.Minute).Unix()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	check := func(field string, ok func(float64) bool) {
		k := seriesKey{"system", "gw-e2e", field}
		waitFor(t, fmt.Sprintf("%v", k), 30*time.Second, func() (bool, error) {
			pts, err := querySeries(ctx, httpC, k, from, to)
			if err != nil || len(pts) == 0 {
				return false, fmt.Errorf("%d points, %v", len(pts), err)
			}
			for _, p := range pts {
				if !ok(p[1]) {
					t.Fatalf("%v: implausible %v", k, p)
				}
			}
			return true, nil
		})
	}
	check("mem_total_bytes", func(v float64) bool { return v == float64(memKB*1024) })
	check("load1", func(v float64) bool { return v >= 0 && v < 1000 })
	check("uptime_s", func(v float64) bool { return v > 0 })
	check("cpu_usage_percent", func(v float64) bool { return v >= 0 && v <= 100 })
	k := seriesKey{"disk", "gw-e2e", "used_percent"}
	waitFor(t, "disk", 20*time.Second, func() (bool, error) {
		pts, err := querySeries(ctx, httpC, k, from, to)
		return err == nil && len(pts) > 0 && pts[0][1] >= 0 && pts[0][1] <= 100, fmt.Errorf("%v %v", pts, err)
	})
}
