package mqtt

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/goleak"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
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

func qos(n int) *int { return &n }

func TestInput_Init(t *testing.T) {
	tests := []struct {
		name      string
		modify    func(*Input)
		wantPaths []string
	}{
		{"minimal", func(*Input) {}, nil},
		{"every format", func(in *Input) {
			in.Topics = append(in.Topics,
				Topic{Filter: "lp/#", Format: "line", Precision: "ms"},
				Topic{Filter: "v/+/+", Template: "v/{station}/{_field}", Format: "value", DataType: "int", QoS: qos(2)},
				Topic{Filter: "t/+", Format: "template", ValueTemplate: "{a};{b}"},
				Topic{Filter: "spBv1.0/#", Format: "sparkplug_b"},
			)
		}, nil},
		{"top level wrong", func(in *Input) {
			in.Broker = "http://x"
			in.QoS = 3
			in.MaxBatch = 0
			in.KeepAlive = 0
			in.ReconnectMax = confx.Duration(time.Millisecond)
			in.TLS.Cert = "c.pem"
			in.Password = "p"
			in.Measurement = ""
		}, []string{"broker", "keep_alive", "max_batch", "measurement", "password", "qos", "reconnect_max", "tls"}},
		{"no topics", func(in *Input) { in.Topics = nil }, []string{"topics"}},
		{"topic wrong", func(in *Input) {
			in.Topics = []Topic{
				{Filter: "a/#/b", Template: "a/{x}{y}", QoS: qos(-1), Format: "json", Field: "f", JSON: JSONOptions{TimeFormat: "whenever"}},
				{Filter: "b", Format: "value", DataType: "complex", ValueTemplate: "{x}"},
				{Filter: "c", Format: "template", ValueTemplate: "none"},
				{Filter: "d", Format: "line", Precision: "h", JSON: JSONOptions{Fields: []string{"x"}}},
				{Filter: "d", Format: "xml"},
			}
		}, []string{"topics[0].field", "topics[0].filter", "topics[0].json.time_format", "topics[0].json.time_format", "topics[0].qos", "topics[0].template",
			"topics[1].data_type", "topics[1].value_template", "topics[2].value_template", "topics[3].json", "topics[3].precision", "topics[4].filter", "topics[4].format"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := New()
			in.Broker = "tcp://127.0.0.1:1883"
			in.Topics = []Topic{{Filter: "sensors/+/+/air", Template: "sensors/{district}/{station}/{_measurement}"}}
			tt.modify(in)
			got := problemPaths(t, in.Init(nil))
			if !reflect.DeepEqual(got, tt.wantPaths) {
				t.Fatalf("problems at %v, want %v (err: %v)", got, tt.wantPaths, in.Init(nil))
			}
		})
	}
}

func TestInput_Init_defaultClientIDStable(t *testing.T) {
	mk := func(filter string) string {
		in := New()
		in.Broker = "tcp://127.0.0.1:1883"
		in.Topics = []Topic{{Filter: filter}}
		if err := in.Init(nil); err != nil {
			t.Fatal(err)
		}
		return in.clientID
	}
	if a, b, c := mk("a/#"), mk("a/#"), mk("b/#"); a != b || a == c || !strings.HasPrefix(a, "citysense-") {
		t.Fatalf("client ids %q %q %q: want stable per config, distinct between configs", a, b, c)
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
	if len(blocks) != 1 || blocks[0].Type != "mqtt" {
		t.Fatalf("sample has %d blocks", len(blocks))
	}
	in := &blocks[0].Input
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	def := New()
	if in.QoS != def.QoS || in.KeepAlive != def.KeepAlive || in.ReconnectMax != def.ReconnectMax || in.MaxBatch != def.MaxBatch ||
		in.Measurement != def.Measurement || in.CleanSession || in.ConnectTimeout != def.ConnectTimeout || in.ReconnectMin != def.ReconnectMin {
		t.Fatalf("sample does not show the defaults")
	}
	if len(in.Topics) != 5 {
		t.Fatalf("sample has %d topics", len(in.Topics))
	}
}

func TestRegistered(t *testing.T) {
	f, ok := protocols.Lookup("mqtt")
	if !ok {
		t.Fatal("mqtt is not registered")
	}
	if _, ok := f().(*Input); !ok {
		t.Fatalf("factory returns %T", f())
	}
}

// fakeMsg records its acknowledgement.
type fakeMsg struct {
	topic   string
	payload string
	acked   chan struct{}
	once    sync.Once
}

func newMsg(topic, payload string) *fakeMsg {
	return &fakeMsg{topic: topic, payload: payload, acked: make(chan struct{})}
}
func (m *fakeMsg) Topic() string   { return m.topic }
func (m *fakeMsg) Payload() []byte { return []byte(m.payload) }
func (m *fakeMsg) Ack()            { m.once.Do(func() { close(m.acked) }) }
func (m *fakeMsg) isAcked() bool {
	select {
	case <-m.acked:
		return true
	default:
		return false
	}
}

// fakeClient hands the messages given to deliver to the input.
type fakeClient struct {
	cfg       ClientConfig
	connected chan struct{}
}

func (c *fakeClient) Connect(ctx context.Context) error { close(c.connected); return nil }
func (c *fakeClient) Disconnect()                       {}
func (c *fakeClient) deliver(ms ...*fakeMsg) {
	for _, m := range ms {
		c.cfg.Handle(m)
	}
}

// gate is an Accumulator whose writes block until released and can fail.
type gate struct {
	mu      sync.Mutex
	pts     []protocols.Point
	calls   int
	entered chan struct{}
	release chan error
}

func (g *gate) Write(ctx context.Context, pts []protocols.Point) error {
	g.entered <- struct{}{}
	select {
	case err := <-g.release:
		g.mu.Lock()
		defer g.mu.Unlock()
		g.calls++
		if err == nil {
			g.pts = append(g.pts, pts...)
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func startInput(t *testing.T, in *Input, acc protocols.Accumulator) (*fakeClient, *metrics.Set, func()) {
	t.Helper()
	fc := &fakeClient{connected: make(chan struct{})}
	in.newClient = func(cfg ClientConfig) (Client, error) { fc.cfg = cfg; return fc, nil }
	in.writeRetry = time.Millisecond
	set := metrics.NewSet()
	in.SetMetrics(set)
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, acc) }()
	<-fc.connected
	return fc, set, func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
	}
}

func TestInput_Run_acksOnlyAfterWrite(t *testing.T) {
	in := New()
	in.Broker = "tcp://127.0.0.1:1883"
	in.Tags = map[string]string{"site": "x"}
	in.Topics = []Topic{
		{Filter: "sensors/+/+/+", Template: "sensors/{district}/{station}/{_measurement}", JSON: JSONOptions{TimePath: "ts"}},
		{Filter: "lp/#", Format: "line"},
	}
	g := &gate{entered: make(chan struct{}, 10), release: make(chan error, 10)}
	fc, set, stop := startInput(t, in, g)
	defer stop()

	m1 := newMsg("sensors/d01/s0001/air", `{"ts":1735689600,"pm25":12.5}`)
	fc.deliver(m1)
	<-g.entered
	if m1.isAcked() {
		t.Fatal("acknowledged before the write returned")
	}
	g.release <- errors.New("buffer full") // refused: kept, offered again
	<-g.entered
	if m1.isAcked() {
		t.Fatal("acknowledged after a refused write")
	}
	g.release <- nil
	<-m1.acked

	// A bad payload is acknowledged with the good ones of its batch.
	m2 := newMsg("sensors/d01/s0002/air", `{"ts":`)
	m3 := newMsg("lp/x", "noise,station=s3 laeq=55 1735689600000000000")
	m4 := newMsg("elsewhere", "1")
	fc.deliver(m2, m3, m4)
	<-g.entered
	g.release <- nil
	for _, m := range []*fakeMsg{m2, m3, m4} {
		<-m.acked
	}
	want := []protocols.Point{
		pt("air", tags("district", "d01", "site", "x", "station", "s0001"), 1735689600e9, "pm25", 12.5),
		pt("noise", tags("site", "x", "station", "s3"), 1735689600e9, "laeq", 55.0),
	}
	g.mu.Lock()
	got := g.pts
	g.mu.Unlock()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, line := range []string{
		`citysense_input_messages_total{input="mqtt",client_id="` + in.clientID + `"} 4`,
		`citysense_input_parse_errors_total{input="mqtt",client_id="` + in.clientID + `"} 1`,
		`citysense_input_unmatched_messages_total{input="mqtt",client_id="` + in.clientID + `"} 1`,
		`citysense_input_writes_refused_total{input="mqtt",client_id="` + in.clientID + `"} 1`,
		`citysense_input_points_total{input="mqtt",client_id="` + in.clientID + `"} 2`,
	} {
		if !strings.Contains(sb.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, sb.String())
		}
	}
}

func TestInput_Run_unackedOnStop(t *testing.T) {
	in := New()
	in.Broker = "tcp://127.0.0.1:1883"
	in.Topics = []Topic{{Filter: "#", Format: "value"}}
	g := &gate{entered: make(chan struct{}, 10), release: make(chan error, 10)}
	fc, _, stop := startInput(t, in, g)
	m := newMsg("a", "1")
	fc.deliver(m)
	<-g.entered
	stop() // the write is cut short by the context
	if m.isAcked() {
		t.Fatal("a message whose write never completed was acknowledged")
	}
}

func TestInput_Run_groupCommit(t *testing.T) {
	in := New()
	in.Broker = "tcp://127.0.0.1:1883"
	in.MaxBatch = 100
	in.Topics = []Topic{{Filter: "#", Format: "value"}}
	g := &gate{entered: make(chan struct{}, 10), release: make(chan error, 10)}
	fc, _, stop := startInput(t, in, g)
	defer stop()
	first := newMsg("a", "0")
	fc.deliver(first)
	<-g.entered // the first write is in progress; the next 50 queue up
	var ms []*fakeMsg
	for i := range 50 {
		ms = append(ms, newMsg("a", string(rune('1'+i%9))))
	}
	fc.deliver(ms...)
	g.release <- nil
	<-g.entered
	g.release <- nil
	for _, m := range ms {
		<-m.acked
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.calls != 2 || len(g.pts) != 51 {
		t.Fatalf("%d writes with %d points, want 2 writes with 51", g.calls, len(g.pts))
	}
}

// quarantining is an accumulator that keeps a quarantine.
type quarantining struct {
	gate
	qmu     sync.Mutex
	sources []string
	raws    []string
}

func (q *quarantining) Quarantine(_ context.Context, source string, raw []byte, reason error) error {
	q.qmu.Lock()
	defer q.qmu.Unlock()
	q.sources = append(q.sources, source)
	q.raws = append(q.raws, string(raw))
	return nil
}

func TestInput_Run_quarantinesBadPayload(t *testing.T) {
	in := New()
	in.Broker = "tcp://127.0.0.1:1883"
	in.Topics = []Topic{{Filter: "#", Format: "value"}}
	q := &quarantining{gate: gate{entered: make(chan struct{}, 10), release: make(chan error, 10)}}
	fc, _, stop := startInput(t, in, q)
	defer stop()
	bad, good := newMsg("a/b", "twelve"), newMsg("a/c", "12")
	fc.deliver(bad, good)
	<-q.entered
	q.release <- nil
	<-bad.acked
	<-good.acked
	q.qmu.Lock()
	defer q.qmu.Unlock()
	if !reflect.DeepEqual(q.sources, []string{"mqtt a/b"}) || !reflect.DeepEqual(q.raws, []string{"twelve"}) {
		t.Fatalf("quarantined %v %v", q.sources, q.raws)
	}
}
