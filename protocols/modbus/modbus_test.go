package modbus

import (
	"bytes"
	"context"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func fp(f float64) *float64 { return &f }
func ip(i int) *int         { return &i }

// testRegs is the holding map served by testdata/modbus_server.py for unit 1.
func testRegs() []uint16 {
	hr := make([]uint16, 64)
	hr[0] = 0xFF85
	hr[1] = 500
	f := math.Float32bits(21.5)
	hr[2], hr[3] = uint16(f), uint16(f>>16)
	hr[4], hr[5] = 0xFFFE, 0x7960
	hr[6], hr[7] = 0x7011, 0x0100
	hr[8], hr[9], hr[10], hr[11] = 0x4093, 0x4A45, 0x6D5C, 0xFAAD
	hr[16], hr[17] = 0x4353, 0x3031
	hr[18] = 0x0008
	return hr
}

// testProfile is the register map of the test server.
func testProfile() Profile {
	return Profile{Measurement: "meter", Registers: []Register{
		{Name: "i16", Address: 0, Type: TypeInt16},
		{Name: "u16", Address: 1, Type: TypeUint16, Scale: fp(0.1), Unit: "V"},
		{Name: "temp", Address: 2, Type: TypeFloat32, Order: OrderCDAB},
		{Name: "i32", Address: 4, Type: TypeInt32},
		{Name: "u32", Address: 6, Type: TypeUint32, Order: OrderDCBA},
		{Name: "f64", Address: 8, Type: TypeFloat64},
		{Name: "model", Address: 16, Type: TypeString, Length: 2},
		{Name: "alarm", Address: 18, Type: TypeBool, Bit: ip(3)},
		{Name: "bad", Address: 20, Type: TypeUint16},
		{Name: "volts", Kind: KindInput, Address: 0},
		{Name: "relay", Kind: KindCoil, Address: 0},
	}}
}

func testInput(fd *fakeDevice) *Input {
	in := New()
	in.MaxGap = 2
	in.Jitter = 0
	in.Interval = confx.Duration(50 * time.Millisecond)
	in.BackoffMax = confx.Duration(time.Second)
	in.Profiles = map[string]Profile{"m": testProfile()}
	in.Devices = []Device{{Address: "tcp://127.0.0.1:1502", UnitIDs: []int{1}, Profile: "m", Tags: map[string]string{"station": "s1"}}}
	in.newClient = func(BusConfig) (Client, error) { return fd, nil }
	return in
}

// fakeDevice serves registers; reads touching bad answer exception 2;
// down makes every request fail as a dead link would.
type fakeDevice struct {
	mu    sync.Mutex
	regs  []uint16
	bad   []uint16
	down  bool
	reads int
	opens int
}

func (f *fakeDevice) Open() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	if f.down {
		return errors.New("connection refused")
	}
	return nil
}
func (f *fakeDevice) Close() error          { return nil }
func (f *fakeDevice) SetUnitID(uint8) error { return nil }
func (f *fakeDevice) ReadRegisters(addr, count uint16, input bool) ([]uint16, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.down {
		return nil, errors.New("i/o timeout")
	}
	if input {
		return slices.Repeat([]uint16{230}, int(count)), nil
	}
	for a := addr; a < addr+count; a++ {
		if slices.Contains(f.bad, a) {
			return nil, &ExceptionError{Code: 2, Err: errors.New("illegal data address")}
		}
	}
	return slices.Clone(f.regs[addr : addr+count]), nil
}
func (f *fakeDevice) ReadBits(addr, count uint16, discrete bool) ([]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	out := make([]bool, count)
	out[0] = addr == 0
	return out, nil
}

func wantFields() []protocols.Field {
	return []protocols.Field{
		{Key: "i16", Value: protocols.Int(-123)},
		{Key: "u16", Value: protocols.Float(50)},
		{Key: "temp", Value: protocols.Float(21.5)},
		{Key: "i32", Value: protocols.Int(-100000)},
		{Key: "u32", Value: protocols.Int(70000)},
		{Key: "f64", Value: protocols.Float(1234.5678)},
		{Key: "model", Value: protocols.String("CS01")},
		{Key: "alarm", Value: protocols.Bool(true)},
		{Key: "volts", Value: protocols.Int(230)},
		{Key: "relay", Value: protocols.Bool(true)},
	}
}

func TestDevice_poll_exceptionCostsOneField(t *testing.T) {
	fd := &fakeDevice{regs: testRegs(), bad: []uint16{20, 21}}
	in := testInput(fd)
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	d := in.devices[0]
	fields, ferrs, err := d.poll()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fields, wantFields()) {
		t.Fatalf("fields\n got %v\nwant %v", fields, wantFields())
	}
	if len(ferrs) != 1 || ferrs[0].Field != "bad" || ferrs[0].Address != 20 {
		t.Fatalf("field errors %v, want one for bad@20", ferrs)
	}
	var ex *ExceptionError
	if !errors.As(ferrs[0], &ex) || ex.Code != 2 {
		t.Fatalf("error %v is not exception 2", ferrs[0])
	}
	// Requests: holding 0-11, holding 16-21 (refused, then 16-17, 18, 20
	// one by one), input 0, coil 0.
	if fd.reads != 7 {
		t.Fatalf("%d reads, want 7", fd.reads)
	}
}

func TestDevice_poll_transportError(t *testing.T) {
	fd := &fakeDevice{regs: testRegs(), down: true}
	in := testInput(fd)
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := in.devices[0].poll(); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Fatalf("err = %v, want a connect error", err)
	}
}

type recorder struct {
	mu  sync.Mutex
	pts []protocols.Point
}

func (r *recorder) Write(_ context.Context, pts []protocols.Point) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pts = append(r.pts, pts...)
	return nil
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pts)
}

func TestInput_Run_profilePerUnitAndBackoff(t *testing.T) {
	good := &fakeDevice{regs: testRegs(), bad: []uint16{20}}
	dead := &fakeDevice{down: true}
	in := testInput(good)
	in.Devices[0].UnitIDs = []int{1, 2}
	in.Devices = append(in.Devices, Device{Address: "tcp://127.0.0.1:1503", UnitID: ip(9), Profile: "m"})
	in.newClient = func(c BusConfig) (Client, error) {
		if strings.HasSuffix(c.URL, "1503") {
			return dead, nil
		}
		return good, nil
	}
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	acc := &recorder{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, acc) }()
	deadline := time.Now().Add(5 * time.Second)
	for acc.len() < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	units := map[string]int{}
	for _, p := range acc.snapshot() {
		u, _ := p.Tag("unit_id")
		units[u]++
		if p.Measurement != "meter" || !reflect.DeepEqual(p.Fields, wantFields()) || p.Time%int64(50*time.Millisecond) != 0 {
			t.Fatalf("unexpected point %v", p)
		}
		if st, _ := p.Tag("station"); st != "s1" {
			t.Fatalf("tags %v", p.Tags)
		}
	}
	if units["1"] < 3 || units["2"] < 3 || units["9"] != 0 {
		t.Fatalf("points per unit %v: want both units of the live bus polled and none from the dead one", units)
	}
	// In ~0.6 s at a 50ms interval the dead device, backing off 50, 100,
	// 200, 400ms, is tried about 4 times, not 12.
	if dead.opens > 6 {
		t.Fatalf("dead device tried %d times; no backoff", dead.opens)
	}
}

func (r *recorder) snapshot() []protocols.Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pts)
}

func problemPaths(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var paths []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var p confx.Problem
		if !errors.As(e, &p) {
			t.Fatalf("error %v is not a confx.Problem", e)
		}
		paths = append(paths, p.Path)
	}
	slices.Sort(paths)
	return paths
}

func TestInput_Init(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Input)
		want   []string
	}{
		{"valid", func(*Input) {}, nil},
		{"rtu", func(in *Input) { in.Devices[0].Address = "rtu:///dev/ttyUSB0?baud=19200&parity=E" }, nil},
		{"top level", func(in *Input) {
			in.Interval = 0
			in.Timeout = 0
			in.MaxGap = -1
			in.Measurement = ""
		}, []string{"interval", "max_gap", "measurement", "timeout"}},
		{"devices", func(in *Input) {
			in.Devices = []Device{
				{Address: "udp://x", Profile: "nope"},
				{Address: "rtu:///dev/ttyS0?baud=1&parity=X"},
				{Address: "tcp://h", UnitIDs: []int{300}, Profile: "m"},
				{Address: "tcp://h:502", UnitID: ip(1), Profile: "m"},
				{Address: "tcp://h", UnitID: ip(1), Profile: "m"},
			}
		}, []string{"devices[0].address", "devices[0].profile", "devices[1]", "devices[1].address", "devices[2].unit_ids", "devices[4]"}},
		{"registers", func(in *Input) {
			in.Devices[0].Registers = []Register{
				{Name: "", Kind: "analog"},
				{Name: "x", Kind: KindCoil, Type: TypeFloat32},
				{Name: "y", Type: "int24", Order: "ACBD"},
				{Name: "s", Type: TypeString},
				{Name: "z", Type: TypeUint16, Bit: ip(3), Scale: fp(0)},
				{Name: "w", Address: 65535, Type: TypeFloat32},
				{Name: "temp"},
			}
		}, []string{"devices[0]", "devices[0].registers[0].kind", "devices[0].registers[0].name", "devices[0].registers[1].type",
			"devices[0].registers[2].order", "devices[0].registers[2].type", "devices[0].registers[3].length", "devices[0].registers[4].bit",
			"devices[0].registers[4].scale", "devices[0].registers[5].address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(&fakeDevice{})
			tt.modify(in)
			if got := problemPaths(t, in.Init(nil)); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("problems at %v, want %v\n%v", got, tt.want, in.Init(nil))
			}
		})
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
	if blocks[0].Type != "modbus" || in.Interval != def.Interval || in.Jitter != def.Jitter || in.Timeout != def.Timeout || in.BackoffMax != def.BackoffMax || in.MaxGap != 0 || in.Measurement != def.Measurement {
		t.Fatal("sample does not show the defaults")
	}
	if len(in.devices) != 4 {
		t.Fatalf("sample has %d devices, want 4 (3 units of a profile + 1)", len(in.devices))
	}
	if f, ok := protocols.Lookup("modbus"); !ok {
		t.Fatal("modbus is not registered")
	} else if _, ok := f().(*Input); !ok {
		t.Fatalf("factory returns %T", f())
	}
}

func TestProbe_fake(t *testing.T) {
	fd := &fakeDevice{regs: testRegs(), bad: []uint16{20}}
	var out bytes.Buffer
	err := Probe(t.Context(), &out, ProbeOptions{Address: "tcp://127.0.0.1:1502", UnitID: 1, Kind: KindHolding, Start: 0, Count: 22,
		newClient: func(BusConfig) (Client, error) { return fd, nil }})
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"tcp://127.0.0.1:1502 unit 1, holding 0–21", "float32 CDAB", "21.5", "-100000", "1234.5678", "CS", "illegal data address"} {
		if !strings.Contains(s, want) {
			t.Errorf("probe output lacks %q:\n%s", want, s)
		}
	}
	if err := Probe(t.Context(), &out, ProbeOptions{Address: "ftp://x", Kind: "x", Count: 0}); err == nil || strings.Count(err.Error(), "\n") < 2 {
		t.Fatalf("bad options: %v, want every problem", err)
	}
}
