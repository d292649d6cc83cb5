package modbus

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

// startPymodbus runs testdata/modbus_server.py (Debian python3-pymodbus)
// on a free loopback port and returns its address.
func startPymodbus(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import pymodbus").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-pymodbus is required under CI: %v: %s", err, out)
		}
		t.Skipf("python3-pymodbus not installed (Debian: apt-get install python3-pymodbus): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	script, _ := filepath.Abs("testdata/modbus_server.py")
	cmd := exec.Command(py, script, port)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("pymodbus log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(8 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("pymodbus did not listen on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestInput_pymodbus polls both units of the real server with the real
// client: every type and order decodes exactly, the register that answers
// exception 2 costs only its own field.
func TestInput_pymodbus(t *testing.T) {
	addr := startPymodbus(t)
	in := New()
	in.MaxGap = 2
	in.Jitter = 0
	in.Interval = confx.Duration(100 * time.Millisecond)
	in.Profiles = map[string]Profile{"m": testProfile()}
	in.Devices = []Device{{Address: "tcp://" + addr, UnitIDs: []int{1, 2}, Profile: "m", Tags: map[string]string{"station": "s1"}}}
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	for i, d := range in.devices {
		fields, ferrs, err := d.poll()
		if err != nil {
			t.Fatal(err)
		}
		want := wantFields()
		want[2].Value = protocols.Float(20.5 + float64(i+1)) // 21.5 for unit 1, 22.5 for unit 2
		if !reflect.DeepEqual(fields, want) {
			t.Fatalf("unit %d fields\n got %v\nwant %v", d.unit, fields, want)
		}
		if len(ferrs) != 1 || ferrs[0].Field != "bad" || !strings.Contains(ferrs[0].Error(), "illegal data address") {
			t.Fatalf("unit %d field errors %v, want bad@20 illegal data address", d.unit, ferrs)
		}
	}
	in.buses["tcp://"+addr].close()
}

func TestProbe_pymodbus(t *testing.T) {
	addr := startPymodbus(t)
	var out bytes.Buffer
	if err := Probe(t.Context(), &out, ProbeOptions{Address: "tcp://" + addr, UnitID: 1, Kind: KindHolding, Start: 0, Count: 22, Timeout: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	lines := strings.Split(s, "\n")
	row := func(addr int) string {
		for _, l := range lines {
			if strings.HasPrefix(l, strconv.Itoa(addr)+" ") {
				return l
			}
		}
		return ""
	}
	// Register 2 as float32 CDAB is 21.5; register 20 answers an exception.
	if r := row(2); !strings.Contains(r, "21.5") {
		t.Errorf("row 2 lacks 21.5: %q", r)
	}
	if r := row(20); !strings.Contains(r, "illegal data address") {
		t.Errorf("row 20 lacks the exception: %q", r)
	}
	if r := row(16); !strings.Contains(r, "CS") {
		t.Errorf("row 16 lacks the text: %q", r)
	}
	if t.Failed() {
		t.Log(s)
	}
	var bits bytes.Buffer
	if err := Probe(t.Context(), &bits, ProbeOptions{Address: "tcp://" + addr, UnitID: 1, Kind: KindCoil, Start: 0, Count: 2}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(bits.String(), "0     true") || !strings.Contains(bits.String(), "1     false") {
		t.Errorf("coils:\n%s", bits.String())
	}
}
