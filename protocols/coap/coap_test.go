package coap

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	"go.uber.org/goleak"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type recorder struct {
	mu     sync.Mutex
	pts    []protocols.Point
	refuse bool
	gate   chan struct{} // if set, Write waits for it
}

func (r *recorder) Write(ctx context.Context, pts []protocols.Point) error {
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse {
		return errors.New("buffer full")
	}
	r.pts = append(r.pts, pts...)
	return nil
}

func (r *recorder) snapshot() []protocols.Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]protocols.Point(nil), r.pts...)
}

func f(k string, v float64) protocols.Field {
	return protocols.Field{Key: k, Value: protocols.Float(v)}
}

func TestInput_Handle(t *testing.T) {
	gw := protocols.Tag{Key: "gateway", Value: "gw1"}
	st := protocols.Tag{Key: "station", Value: "s1"}
	tests := []struct {
		name    string
		path    string
		queries []string
		cf      int
		body    string
		refuse  bool
		code    codes.Code
		msg     string
		want    []protocols.Point
	}{
		{"json", "/air", []string{"station=s1"}, int(message.AppJSON), `{"pm25":12.5,"meta":{"battery":90},"ok":true,"note":"x","time":1735689600}`, false, codes.Changed, "",
			[]protocols.Point{{Measurement: "air", Tags: []protocols.Tag{gw, st}, Fields: []protocols.Field{f("meta_battery", 90), f("ok", 0), f("pm25", 12.5)}, Time: 1735689600e9}}},
		{"json array rfc3339", "air", []string{"station=s1"}, -1, `[{"v":1,"time":"2025-01-01T00:00:00.5Z"},{"v":2,"time":1735689601.25}]`, false, codes.Changed, "",
			[]protocols.Point{
				{Measurement: "air", Tags: []protocols.Tag{gw, st}, Fields: []protocols.Field{f("v", 1)}, Time: 1735689600500000000},
				{Measurement: "air", Tags: []protocols.Tag{gw, st}, Fields: []protocols.Field{f("v", 2)}, Time: 1735689601250000000},
			}},
		{"line protocol partial", "/write", []string{"precision=s"}, int(message.TextPlain), "air,station=s1 v=1 1\nair v= 2\n", false, codes.BadRequest, "line 2:",
			[]protocols.Point{{Measurement: "air", Tags: []protocols.Tag{gw, st}, Fields: []protocols.Field{f("v", 1)}, Time: 1e9}}},
		{"bad json", "/air", nil, -1, `{"v":`, false, codes.BadRequest, "json", nil},
		{"no fields", "/air", nil, -1, `{"note":"x"}`, false, codes.BadRequest, "no fields", nil},
		{"refused", "/air", nil, -1, `{"v":1}`, true, codes.ServiceUnavailable, "buffer full", nil},
		{"too large", "/air", nil, -1, `{"v":"` + strings.Repeat("x", 300) + `"}`, false, codes.RequestEntityTooLarge, "max_body", nil},
		{"not found", "/a/b", nil, -1, `{}`, false, codes.NotFound, "", nil},
		{"media type", "/air", nil, int(message.AppCBOR), `{}`, false, codes.UnsupportedMediaType, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := New()
			in.MaxBody = 256
			in.Tags = map[string]string{"gateway": "gw1"}
			if err := in.Init(nil); err != nil {
				t.Fatal(err)
			}
			acc := &recorder{refuse: tt.refuse}
			code, msg := in.Handle(t.Context(), acc, tt.path, tt.queries, tt.cf, []byte(tt.body))
			if code != tt.code || !strings.Contains(msg, tt.msg) {
				t.Fatalf("got %v %q, want %v containing %q", code, msg, tt.code, tt.msg)
			}
			// Booleans compare by kind; fix the expected "ok" field.
			for i := range tt.want {
				for j, fl := range tt.want[i].Fields {
					if fl.Key == "ok" {
						tt.want[i].Fields[j].Value = protocols.Bool(true)
					}
				}
			}
			if got := acc.snapshot(); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("points\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestInput_Init(t *testing.T) {
	in := New()
	in.Listen = "nope"
	in.Precision = "h"
	in.MaxBody = 1
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
	if strings.Join(paths, " ") != "listen precision max_body tags" {
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
	if blocks[0].Type != "coap" || in.Listen != def.Listen || in.Precision != def.Precision || in.MaxBody != def.MaxBody {
		t.Fatal("sample does not show the defaults")
	}
	if fn, ok := protocols.Lookup("coap"); !ok {
		t.Fatal("coap is not registered")
	} else if _, ok := fn().(*Input); !ok {
		t.Fatalf("factory returns %T", fn())
	}
}

// TestInput_Run_ackAfterWrite: a confirmable POST over real UDP with the
// go-coap client is answered only after the write returned.
func TestInput_Run_ackAfterWrite(t *testing.T) {
	in := New()
	in.Listen = "127.0.0.1:0"
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	acc := &recorder{gate: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, acc) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for in.Addr() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var periodic sync.WaitGroup
	defer periodic.Wait()
	cctx, ccancel := context.WithCancel(t.Context())
	defer ccancel()
	co, err := udp.Dial(in.Addr().String(), options.WithPeriodicRunner(periodicRunner(cctx, &periodic)))
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	type result struct {
		code codes.Code
		err  error
	}
	res := make(chan result, 1)
	go func() {
		rctx, rcancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer rcancel()
		resp, err := co.Post(rctx, "/noise", message.AppJSON, bytes.NewReader([]byte(`{"laeq":55.5,"time":1735689600}`)),
			message.Option{ID: message.URIQuery, Value: []byte("station=s3")})
		if err != nil {
			res <- result{err: err}
			return
		}
		res <- result{code: resp.Code()}
	}()
	select {
	case r := <-res:
		t.Fatalf("answered %v (%v) before the write returned", r.code, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	close(acc.gate)
	r := <-res
	if r.err != nil || r.code != codes.Changed {
		t.Fatalf("answer %v, %v; want 2.04 Changed", r.code, r.err)
	}
	want := []protocols.Point{{Measurement: "noise", Tags: []protocols.Tag{{Key: "station", Value: "s3"}}, Fields: []protocols.Field{f("laeq", 55.5)}, Time: 1735689600e9}}
	if got := acc.snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func BenchmarkInput_Handle_json(b *testing.B) {
	in := New()
	if err := in.Init(nil); err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"pm25":12.3,"pm10":20.1,"no2":31,"temperature":4.5,"humidity":81.2,"time":1735689600}`)
	acc := &discard{}
	b.ReportAllocs()
	for b.Loop() {
		if code, msg := in.Handle(context.Background(), acc, "/air", []string{"station=s1"}, -1, body); code != codes.Changed {
			b.Fatal(code, msg)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
}

type discard struct{}

func (*discard) Write(context.Context, []protocols.Point) error { return nil }

type quarantining struct {
	recorder
	sources []string
}

func (q *quarantining) Quarantine(_ context.Context, source string, raw []byte, reason error) error {
	q.sources = append(q.sources, source+": "+string(raw))
	return nil
}

func TestInput_Handle_quarantine(t *testing.T) {
	in := New()
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	acc := &quarantining{}
	if code, _ := in.Handle(t.Context(), acc, "/air", nil, -1, []byte(`{"v":`)); code != codes.BadRequest {
		t.Fatalf("code %v", code)
	}
	if !reflect.DeepEqual(acc.sources, []string{`coap /air: {"v":`}) {
		t.Fatalf("quarantined %q", acc.sources)
	}
}
