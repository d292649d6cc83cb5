package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// startPymodbus runs protocols/modbus/testdata/modbus_server.py on Debian's
// python3-pymodbus and returns its address.
func startPymodbus(t *testing.T) string {
	t.Helper()
	py := needPeer(t, "/usr/bin/python3", "python3")
	if out, err := exec.Command(py, "-c", "import pymodbus").CombinedOutput(); err != nil {
		needPeer(t, "python3-pymodbus-missing", "python3-pymodbus: "+string(out))
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "protocols", "modbus", "testdata", "modbus_server.py")
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(py, script, port)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "pymodbus to listen", 10*time.Second, func() (bool, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false, err
		}
		c.Close()
		return true, nil
	})
	return addr
}

// TestProtocols_Modbus: a pymodbus TCP server with a known register map
// (float32 in CDAB order, a register that answers exception 2) polled by
// the agent through a device profile instantiated for two unit ids; the
// exact values reach the collector, the refused register costs only its
// own field, and `probe modbus`-style decoding is covered by the package.
func TestProtocols_Modbus(t *testing.T) {
	server := startPymodbus(t)
	_, httpC, natsC := startCollector(t, t.TempDir())
	httpA := freeAddr(t)
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-modbus
inputs:
  - type: modbus
    interval: 1s
    jitter: 0s
    timeout: 1s
    max_gap: 2
    profiles:
      testmeter:
        measurement: meter
        registers:
          - {name: i16, address: 0, type: int16}
          - {name: u16, address: 1, type: uint16, scale: 0.1}
          - {name: temp, address: 2, type: float32, order: CDAB, unit: °C}
          - {name: i32, address: 4, type: int32}
          - {name: u32, address: 6, type: uint32, order: DCBA}
          - {name: f64, address: 8, type: float64}
          - {name: bad, address: 20}
          - {name: volts, kind: input, address: 0}
    devices:
      - address: tcp://%s
        unit_ids: [1, 2]
        profile: testmeter
        tags: {station: "meter-{unit_id}"}
`, server))
	start(t, "citysense-agent", "run", "-c", cfg, "--data-dir", t.TempDir(), "--http", httpA, "--collector", "nats://"+natsC, "--log-format", "json")

	from := time.Now().Add(-time.Minute).Unix()
	to := time.Now().Add(5 * time.Minute).Unix()
	want := map[string]float64{"i16": -123, "u16": 50, "i32": -100000, "u32": 70000, "f64": 1234.5678, "volts": 230}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	for unit := 1; unit <= 2; unit++ {
		st := fmt.Sprintf("meter-%d", unit)
		w := map[string]float64{"temp": 20.5 + float64(unit)}
		for k, v := range want {
			w[k] = v
		}
		// Each series holds several polls, every one with the exact value,
		// on whole seconds (the 1s interval, aligned).
		for field, v := range w {
			k := seriesKey{"meter", st, field}
			waitFor(t, fmt.Sprintf("%v to hold 2 polls", k), 30*time.Second, func() (bool, error) {
				pts, err := querySeries(ctx, httpC, k, from, to)
				if err != nil {
					return false, err
				}
				for _, p := range pts {
					if p[1] != v || p[0] != float64(int64(p[0])) {
						t.Fatalf("%v: point %v, want value %v on a whole second", k, p, v)
					}
				}
				return len(pts) >= 2, fmt.Errorf("%d points", len(pts))
			})
		}
		if pts, err := querySeries(ctx, httpC, seriesKey{"meter", st, "bad"}, from, to); err != nil || len(pts) != 0 {
			t.Fatalf("the register answering an exception produced %v (%v)", pts, err)
		}
	}
}
