package uplink

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citysense/citysense/agent/internal/buffer"
	"github.com/citysense/citysense/protocols"
)

// influxServer records writes and answers from a script.
type influxServer struct {
	mu     sync.Mutex
	reqs   []*http.Request
	points []protocols.Point
	answer func(n int) (code int, header http.Header, body string) // nil: 204
}

func (s *influxServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	lp, _ := io.ReadAll(body)
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	n := len(s.reqs)
	answer := s.answer
	s.mu.Unlock()
	code, header, text := http.StatusNoContent, http.Header(nil), ""
	if answer != nil {
		code, header, text = answer(n)
	}
	for k, v := range header {
		w.Header()[k] = v
	}
	if code == http.StatusNoContent {
		pts, err := protocols.DecodeAll(lp, protocols.DecodeOptions{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.points = append(s.points, pts...)
		s.mu.Unlock()
	}
	w.WriteHeader(code)
	io.WriteString(w, text)
}

func (s *influxServer) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

func influxConfig(url string, ic InfluxConfig) Config {
	ic.URL = url
	return Config{
		ID: "influx", Type: TypeInflux, AgentID: agentID,
		Timeout:    2 * time.Second,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		BackfillRate: -1, MaxInflight: 1,
		Influx: ic,
	}
}

func runInflux(t *testing.T, srv *influxServer, ic InfluxConfig, batches int) (*Output, *buffer.Buffer) {
	t.Helper()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	b := openBuffer(t, "influx")
	appendBatches(t, b, 1, batches)
	o, err := New(influxConfig(hs.URL, ic), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, o, b)
	waitFor(t, "the buffer to drain", func() bool { return pending(b, "influx") == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	return o, b
}

func wantPoints(from, to int) []protocols.Point {
	var out []protocols.Point
	for i := from; i <= to; i++ {
		out = append(out, batch(i)...)
	}
	return out
}

func TestInflux_Run_v2(t *testing.T) {
	srv := &influxServer{}
	o, _ := runInflux(t, srv, InfluxConfig{API: InfluxV2, Org: "city", Bucket: "raw", Token: "s3cret", Gzip: true}, 3)
	reqs := srv.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/write" || r.URL.Query().Get("org") != "city" ||
		r.URL.Query().Get("bucket") != "raw" || r.URL.Query().Get("precision") != "ns" {
		t.Fatalf("request %s %s", r.Method, r.URL)
	}
	if r.Header.Get("Authorization") != "Token s3cret" || r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("X-Request-Id") != "gw-test-1" {
		t.Fatalf("headers %v", r.Header)
	}
	if !reflect.DeepEqual(srv.points, wantPoints(1, 3)) {
		t.Fatalf("server got %v", srv.points)
	}
	if st := o.Stats(); st.BatchesSent != 3 || st.PointsSent != 9 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInflux_Run_v1(t *testing.T) {
	srv := &influxServer{}
	runInflux(t, srv, InfluxConfig{API: InfluxV1, Database: "city", RetentionPolicy: "raw", Username: "gw", Password: "pw"}, 2)
	r := srv.requests()[0]
	user, pass, _ := r.BasicAuth()
	if r.URL.Path != "/write" || r.URL.Query().Get("db") != "city" || r.URL.Query().Get("rp") != "raw" || user != "gw" || pass != "pw" {
		t.Fatalf("request %s with user %q", r.URL, user)
	}
	if r.Header.Get("Content-Encoding") != "" {
		t.Fatal("gzip off but the body is compressed")
	}
	if !reflect.DeepEqual(srv.points, wantPoints(1, 2)) {
		t.Fatalf("server got %v", srv.points)
	}
}

func TestInflux_Run_retriesUnavailableAndTooMany(t *testing.T) {
	srv := &influxServer{answer: func(n int) (int, http.Header, string) {
		switch n {
		case 1:
			return http.StatusServiceUnavailable, http.Header{"Retry-After": {"0"}}, "starting"
		case 2:
			return http.StatusTooManyRequests, nil, "slow down"
		}
		return http.StatusNoContent, nil, ""
	}}
	o, _ := runInflux(t, srv, InfluxConfig{API: InfluxV2, Bucket: "raw"}, 2)
	if !reflect.DeepEqual(srv.points, wantPoints(1, 2)) {
		t.Fatalf("server stored %v", srv.points)
	}
	ids := []string{}
	for _, r := range srv.requests() {
		ids = append(ids, r.Header.Get("X-Request-Id"))
	}
	if !reflect.DeepEqual(ids, []string{"gw-test-1", "gw-test-1", "gw-test-1", "gw-test-2"}) {
		t.Fatalf("requests %v", ids)
	}
	if st := o.Stats(); st.Errors != 2 || st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInflux_Run_badRequestIsQuarantined(t *testing.T) {
	srv := &influxServer{answer: func(n int) (int, http.Header, string) {
		if n == 2 {
			return http.StatusBadRequest, nil, `{"code":"invalid","message":"unable to parse 'air pm25=': missing field value"}`
		}
		return http.StatusNoContent, nil, ""
	}}
	o, b := runInflux(t, srv, InfluxConfig{API: InfluxV2, Bucket: "raw"}, 3)
	if len(srv.requests()) != 3 {
		t.Fatalf("%d requests: a 400 must not be retried", len(srv.requests()))
	}
	if !reflect.DeepEqual(srv.points, append(wantPoints(1, 1), wantPoints(3, 3)...)) {
		t.Fatalf("server stored %v", srv.points)
	}
	q := buffer.QuarantinedFiles(b.Dir())
	if len(q) != 1 || !strings.HasPrefix(q[0], "rejected-influx-2") {
		t.Fatalf("quarantine %v", q)
	}
	if st := o.Stats(); st.Rejected != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{"Wed, 01 Jan 2025 00:00:30 GMT", 30 * time.Second},
		{"Tue, 31 Dec 2024 00:00:00 GMT", 0},
		{"86400", maxRetryAfter},
		{"soon", 0},
	} {
		if got := retryAfter(tt.in, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
