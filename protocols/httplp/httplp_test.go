package httplp

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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

type recorder struct {
	mu     sync.Mutex
	pts    []protocols.Point
	refuse bool
}

func (r *recorder) Write(_ context.Context, pts []protocols.Point) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse {
		return errors.New("buffer full")
	}
	r.pts = append(r.pts, pts...)
	return nil
}

func f(k string, v float64) protocols.Field {
	return protocols.Field{Key: k, Value: protocols.Float(v)}
}

func gz(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	io.WriteString(zw, s)
	zw.Close()
	return b.Bytes()
}

func TestInput_Handler(t *testing.T) {
	st := []protocols.Tag{{Key: "site", Value: "gw"}, {Key: "station", Value: "s1"}}
	tests := []struct {
		name       string
		path       string
		header     map[string]string
		body       []byte
		refuse     bool
		wantStatus int
		wantBody   string // substring
		want       []protocols.Point
	}{
		{"v1 write seconds", "/write?db=x&precision=s", nil, []byte("air,station=s1 pm25=12.5 1735689600\n"), false, 204, "",
			[]protocols.Point{{Measurement: "air", Tags: st, Fields: []protocols.Field{f("pm25", 12.5)}, Time: 1735689600e9}}},
		{"v2 write gzip ms token", "/api/v2/write?org=o&bucket=b&precision=ms", map[string]string{"Content-Encoding": "gzip", "Authorization": "Token secret"},
			gz("air,station=s1 pm25=1 1735689600123"), false, 204, "",
			[]protocols.Point{{Measurement: "air", Tags: st, Fields: []protocols.Field{f("pm25", 1)}, Time: 1735689600123e6}}},
		{"tag in the line wins", "/write", nil, []byte("air,site=other,station=s1 pm25=2 5"), false, 204, "",
			[]protocols.Point{{Measurement: "air", Tags: []protocols.Tag{{Key: "site", Value: "other"}, {Key: "station", Value: "s1"}}, Fields: []protocols.Field{f("pm25", 2)}, Time: 5}}},
		{"partial write", "/write?precision=s", nil, []byte("air,station=s1 pm25=1 1\nair,station=s1 pm25= 2\nair,station=s1 pm25=3 3\n"), false, 400, `line 2:`,
			[]protocols.Point{
				{Measurement: "air", Tags: st, Fields: []protocols.Field{f("pm25", 1)}, Time: 1e9},
				{Measurement: "air", Tags: st, Fields: []protocols.Field{f("pm25", 3)}, Time: 3e9},
			}},
		{"bad precision", "/write?precision=h", nil, []byte("air v=1"), false, 400, "unknown precision", nil},
		{"too large", "/write", nil, bytes.Repeat([]byte("a"), 5000), false, 413, "max_body", nil},
		{"gzip bomb", "/write", map[string]string{"Content-Encoding": "gzip"}, gz(strings.Repeat("air v=1 1\n", 1000)), false, 413, "max_body", nil},
		{"bad gzip", "/write", map[string]string{"Content-Encoding": "gzip"}, []byte("nope"), false, 400, "gzip", nil},
		{"refused", "/write", nil, []byte("air v=1 1"), true, 503, "buffer full", nil},
		{"push one", "/api/v1/push", nil, []byte(`{"measurement":"air","tags":{"station":"s1"},"fields":{"pm25":12.5,"ok":true},"time":1735689600}`), false, 204, "",
			[]protocols.Point{{Measurement: "air", Tags: st, Fields: []protocols.Field{{Key: "ok", Value: protocols.Bool(true)}, f("pm25", 12.5)}, Time: 1735689600e9}}},
		{"push array rfc3339 default measurement", "/api/v1/push", nil, []byte(`[{"tags":{"station":"s1"},"fields":{"v":1},"time":"2025-01-01T00:00:00Z"},{"fields":{}},{"fields":{"v":"x"},"extra":1}]`), false, 400, "point 1: no fields",
			[]protocols.Point{{Measurement: "http", Tags: st, Fields: []protocols.Field{f("v", 1)}, Time: 1735689600e9}}},
		{"push ms", "/api/v1/push?precision=ms", nil, []byte(`{"tags":{"station":"s1"},"fields":{"v":1},"time":1735689600001}`), false, 204, "",
			[]protocols.Point{{Measurement: "http", Tags: st, Fields: []protocols.Field{f("v", 1)}, Time: 1735689600001e6}}},
		{"push not json", "/api/v1/push", nil, []byte(`[{`), false, 400, "body", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := New()
			in.MaxBody = 4096
			in.Tags = map[string]string{"site": "gw"}
			if strings.Contains(tt.name, "token") {
				in.Token = "secret"
			}
			if err := in.Init(nil); err != nil {
				t.Fatal(err)
			}
			acc := &recorder{refuse: tt.refuse}
			srv := httptest.NewServer(in.Handler(acc))
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+tt.path, bytes.NewReader(tt.body))
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantBody) {
				t.Fatalf("status %d body %s, want %d containing %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if !reflect.DeepEqual(acc.pts, tt.want) {
				t.Fatalf("points\n got %v\nwant %v", acc.pts, tt.want)
			}
		})
	}
}

func TestInput_Handler_token(t *testing.T) {
	in := New()
	in.Token = "secret"
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	acc := &recorder{}
	srv := httptest.NewServer(in.Handler(acc))
	defer srv.Close()
	for _, c := range []struct {
		url, auth string
		want      int
	}{
		{"/write", "", 401},
		{"/write", "Token wrong", 401},
		{"/write", "Bearer secret", 204},
		{"/write?p=secret", "", 204},
		{"/api/v2/write?token=secret", "", 204},
		{"/query?q=CREATE+DATABASE+x", "Token secret", 200},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+c.url, strings.NewReader("m v=1 1"))
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %q: %d, want %d", c.url, c.auth, resp.StatusCode, c.want)
		}
	}
}

func TestInput_Init(t *testing.T) {
	in := New()
	in.Listen = "8186"
	in.MaxBody = 10
	in.Precision = "h"
	in.Measurement = ""
	in.TLSCert = "c.pem"
	in.ReadTimeout = 0
	in.Tags = map[string]string{"": "x"}
	err := in.Init(nil)
	var paths []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var p confx.Problem
		if !errors.As(e, &p) {
			t.Fatalf("%v is not a confx.Problem", e)
		}
		paths = append(paths, p.Path)
	}
	slices.Sort(paths)
	want := []string{"listen", "max_body", "measurement", "precision", "read_timeout", "tags", "tls_cert"}
	if !reflect.DeepEqual(paths, want) {
		t.Fatalf("problems at %v, want %v", paths, want)
	}
	if err := New().Init(nil); err != nil {
		t.Fatalf("defaults: %v", err)
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
	if blocks[0].Type != "http" || in.Listen != def.Listen || in.MaxBody != def.MaxBody || in.Precision != def.Precision || in.Measurement != def.Measurement || in.ReadTimeout != def.ReadTimeout {
		t.Fatalf("sample does not show the defaults: %+v", in)
	}
	if f, ok := protocols.Lookup("http"); !ok {
		t.Fatal("http is not registered")
	} else if _, ok := f().(*Input); !ok {
		t.Fatalf("factory returns %T", f())
	}
}

func TestInput_Run_listensAndStops(t *testing.T) {
	in := New()
	in.Listen = "127.0.0.1:0"
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	acc := &recorder{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, acc) }()
	deadline := time.Now().Add(5 * time.Second)
	for in.Addr() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := http.Post("http://"+in.Addr().String()+"/write", "text/plain", strings.NewReader("m v=1 1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || len(acc.pts) != 1 {
		t.Fatalf("status %d, %d points", resp.StatusCode, len(acc.pts))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

type quarantining struct {
	recorder
	raws []string
}

func (q *quarantining) Quarantine(_ context.Context, source string, raw []byte, reason error) error {
	q.raws = append(q.raws, source[:strings.Index(source, " from")]+": "+string(raw))
	return nil
}

func TestInput_Handler_quarantine(t *testing.T) {
	in := New()
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	acc := &quarantining{}
	rec := httptest.NewRecorder()
	in.Handler(acc).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/write", strings.NewReader("m v=1 1\nbad\n")))
	if rec.Code != 400 || len(acc.pts) != 1 || !reflect.DeepEqual(acc.raws, []string{"http /write: m v=1 1\nbad\n"}) {
		t.Fatalf("status %d, %d points, quarantined %q", rec.Code, len(acc.pts), acc.raws)
	}
}
