package system

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func field(p protocols.Point, k string) (float64, bool) {
	v, ok := p.Field(k)
	if !ok {
		return 0, false
	}
	x, _ := v.AsFloat()
	return x, true
}

func TestInput_Gather_fakeTree(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"proc/loadavg":                         "0.50 0.25 0.10 2/100 1234\n",
		"proc/uptime":                          "3600.50 7000.00\n",
		"proc/stat":                            "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\ncpu1 50 0 50 350 50 0 0 0 0 0\nintr 1\n",
		"proc/meminfo":                         "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\nSwapTotal:       200 kB\nSwapFree:        150 kB\n",
		"sys/class/thermal/thermal_zone0/temp": "45123\n",
		"sys/class/thermal/thermal_zone0/type": "cpu-thermal\n",
		"sys/class/thermal/thermal_zone1/type": "sleeping", // no temp: skipped
	})
	in := New()
	in.root = root
	in.Tags = map[string]string{"gateway": "gw-1"}
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pts, err := in.Gather(at)
	if err != nil {
		t.Fatal(err)
	}
	gw := protocols.Tag{Key: "gateway", Value: "gw-1"}
	wantSys := protocols.Point{Measurement: "system", Tags: []protocols.Tag{gw}, Time: at.UnixNano(), Fields: []protocols.Field{
		{Key: "load1", Value: protocols.Float(0.5)}, {Key: "load5", Value: protocols.Float(0.25)}, {Key: "load15", Value: protocols.Float(0.1)},
		{Key: "uptime_s", Value: protocols.Float(3600.5)}, {Key: "cpus", Value: protocols.Int(2)},
		{Key: "mem_total_bytes", Value: protocols.Int(1024000)}, {Key: "mem_available_bytes", Value: protocols.Int(256000)},
		{Key: "mem_used_percent", Value: protocols.Float(75)}, {Key: "swap_total_bytes", Value: protocols.Int(204800)},
		{Key: "swap_used_bytes", Value: protocols.Int(51200)},
	}}
	wantTemp := protocols.Point{Measurement: "temperature", Time: at.UnixNano(),
		Tags:   []protocols.Tag{gw, {Key: "type", Value: "cpu-thermal"}, {Key: "zone", Value: "thermal_zone0"}},
		Fields: []protocols.Field{{Key: "celsius", Value: protocols.Float(45.123)}}}
	if len(pts) != 3 || !reflect.DeepEqual(pts[0], wantSys) || !reflect.DeepEqual(pts[2], wantTemp) {
		t.Fatalf("got %v\nwant %v, disk, %v", pts, wantSys, wantTemp)
	}
	if pts[1].Measurement != "disk" || len(pts[1].Tags) != 2 || pts[1].Tags[1] != (protocols.Tag{Key: "path", Value: "/"}) {
		t.Fatalf("disk point %v", pts[1])
	}

	// Second poll: 1000 jiffies later, 500 busy, 200 iowait (counted as not busy).
	writeTree(t, root, map[string]string{"proc/stat": "cpu  400 0 300 1000 300 0 0 0 0 0\ncpu0 1\ncpu1 1\n"})
	pts, err = in.Gather(at.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := field(pts[0], "cpu_usage_percent"); u != 50 {
		t.Fatalf("cpu_usage_percent = %v, want 50", u)
	}
	if w, _ := field(pts[0], "cpu_iowait_percent"); w != 20 {
		t.Fatalf("cpu_iowait_percent = %v, want 20", w)
	}
}

// TestInput_Gather_thisMachine reads the real /proc and /sys: exact field
// names and plausible ranges.
func TestInput_Gather_thisMachine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	in := New()
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Gather(time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	pts, err := in.Gather(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sys := pts[0]
	var names []string
	for _, f := range sys.Fields {
		names = append(names, f.Key)
	}
	want := []string{"load1", "load5", "load15", "uptime_s", "cpus", "cpu_usage_percent", "cpu_iowait_percent",
		"mem_total_bytes", "mem_available_bytes", "mem_used_percent", "swap_total_bytes", "swap_used_bytes"}
	if sys.Measurement != "system" || !reflect.DeepEqual(names, want) {
		t.Fatalf("system fields %v, want %v", names, want)
	}
	ranges := map[string][2]float64{
		"load1": {0, 1000}, "load5": {0, 1000}, "load15": {0, 1000}, "uptime_s": {1, 1e10}, "cpus": {1, 4096},
		"cpu_usage_percent": {0, 100}, "cpu_iowait_percent": {0, 100}, "mem_total_bytes": {1 << 24, 1 << 50},
		"mem_available_bytes": {1, 1 << 50}, "mem_used_percent": {0, 100}, "swap_total_bytes": {0, 1 << 50}, "swap_used_bytes": {0, 1 << 50},
	}
	for k, r := range ranges {
		if x, _ := field(sys, k); x < r[0] || x > r[1] {
			t.Errorf("%s = %v, outside [%v, %v]", k, x, r[0], r[1])
		}
	}
	if x, _ := field(sys, "cpus"); int(x) != runtime.NumCPU() && int(x) < runtime.NumCPU() {
		t.Errorf("cpus = %v, fewer than Go sees (%d)", x, runtime.NumCPU())
	}
	disk := pts[1]
	total, _ := field(disk, "total_bytes")
	free, _ := field(disk, "free_bytes")
	if disk.Measurement != "disk" || total <= 0 || free < 0 || free > total {
		t.Errorf("disk %v", disk)
	}
	zones, _ := filepath.Glob("/sys/class/thermal/thermal_zone*/temp")
	temps := pts[2:]
	if len(zones) == 0 && len(temps) != 0 {
		t.Errorf("no thermal zones here, but %d temperature points", len(temps))
	}
	for _, p := range temps {
		if c, _ := field(p, "celsius"); p.Measurement != "temperature" || c < -40 || c > 150 {
			t.Errorf("temperature %v", p)
		}
	}
	t.Logf("this machine: %d thermal zones, system %v", len(zones), sys.Fields)
}

func TestInput_Init(t *testing.T) {
	in := New()
	in.Interval = confx.Duration(time.Millisecond)
	in.Disks = []string{"/", "data"}
	in.Tags = map[string]string{"": "x"}
	err := in.Init(nil)
	var paths []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var p confx.Problem
		if !errors.As(e, &p) {
			t.Fatal(e)
		}
		paths = append(paths, p.Path)
	}
	if strings.Join(paths, " ") != "interval disks[1] tags" {
		t.Fatalf("problems at %v", paths)
	}
}

func TestInput_SampleConfig(t *testing.T) {
	var blocks []struct {
		Type  string `yaml:"type"`
		Input `yaml:",inline"`
	}
	if _, err := confx.Load("sample.yaml", []byte(New().SampleConfig()), &blocks); err != nil {
		t.Fatal(err)
	}
	in := &blocks[0].Input
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	def := New()
	if blocks[0].Type != "system" || in.Interval != def.Interval || !reflect.DeepEqual(in.Disks, def.Disks) || in.Temperature != def.Temperature {
		t.Fatal("sample does not show the defaults")
	}
	if f, ok := protocols.Lookup("system"); !ok {
		t.Fatal("system is not registered")
	} else if _, ok := f().(*Input); !ok {
		t.Fatalf("factory returns %T", f())
	}
}

func BenchmarkInput_Gather(b *testing.B) {
	in := New()
	if err := in.Init(nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.Gather(time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
