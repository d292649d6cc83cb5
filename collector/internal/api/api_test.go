package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/protocols"
)

// now is the test clock: 2025-01-01T12:00:00Z.
var now = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func sec(s int64) int64 { return now.Unix()*1e9 + s*1e9 }

func testStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "store.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mk := func(m string, tags map[string]string, ts int64, fields ...protocols.Field) protocols.Point {
		p, err := protocols.NewPoint(m, tags, fields, ts)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	fl := func(k string, v float64) protocols.Field { return protocols.Field{Key: k, Value: protocols.Float(v)} }
	s1 := map[string]string{"district": "d01", "station": "s0001"}
	s2 := map[string]string{"district": "d02", "station": "s0002"}
	_, err = st.Write([]protocols.Point{
		mk("station", s1, sec(-3600), fl("lat", 48.21), fl("lon", 16.37)),
		mk("air", s1, sec(-3600), fl("pm25", 12.3), fl("no2", 1e-7)),
		mk("air", s1, sec(-3590), fl("pm25", 13)),
		mk("air", s1, sec(-3580)+500_000_000, fl("pm25", 0.1)),
		mk("air", s2, sec(-3600), fl("pm25", 7.25)),
		mk("air", s2, sec(-48*3600), fl("pm25", 99)), // outside the default range
		mk("traffic", s1, sec(-3600), protocols.Field{Key: "count", Value: protocols.Int(42)}),
		mk("counter", s2, sec(-3600), protocols.Field{Key: "count", Value: protocols.Uint(7)}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newTestAPI(t *testing.T, opts Options) *API {
	t.Helper()
	if opts.Store == nil {
		opts.Store = testStore(t)
	}
	opts.Now = func() time.Time { return now }
	return New(opts, nil)
}

func do(a http.Handler, method, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, "http://collector"+target, nil)
	a.ServeHTTP(rec, req)
	return rec
}

func TestAPI_series(t *testing.T) {
	a := newTestAPI(t, Options{})
	const s1, s2 = `"tags":{"district":"d01","station":"s0001"}`, `"tags":{"district":"d02","station":"s0002"}`
	tests := []struct {
		name   string
		target string
		code   int
		body   string
	}{
		{"one station", "/api/v1/series?station=s0001&field=pm25", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s1 + `,"points":[[1735729200,12.3],[1735729210,13],[1735729220.5,0.1]]}],"partial":false}`},
		{"every station in the default range", "/api/v1/series?field=pm25", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s1 + `,"points":[[1735729200,12.3],[1735729210,13],[1735729220.5,0.1]]},` +
				`{"measurement":"air","field":"pm25",` + s2 + `,"points":[[1735729200,7.25]]}],"partial":false}`},
		{"district and measurement", "/api/v1/series?measurement=air&district=d02&field=pm25", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s2 + `,"points":[[1735729200,7.25]]}],"partial":false}`},
		{"explicit range reaches old data, unix bounds inclusive", "/api/v1/series?field=pm25&station=s0002&from=1735560000&to=1735729200", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s2 + `,"points":[[1735560000,99],[1735729200,7.25]]}],"partial":false}`},
		{"rfc3339 in and out", "/api/v1/series?field=pm25&station=s0001&from=2025-01-01T11:00:05Z&to=2025-01-01T11:00:30%2B00:00&time_format=rfc3339", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s1 + `,"points":[["2025-01-01T11:00:10Z",13],["2025-01-01T11:00:20.5Z",0.1]]}],"partial":false}`},
		{"tiny float like encoding/json", "/api/v1/series?field=no2", 200,
			`{"series":[{"measurement":"air","field":"no2",` + s1 + `,"points":[[1735729200,1e-7]]}],"partial":false}`},
		{"int values", "/api/v1/series?measurement=traffic&field=count", 200,
			`{"series":[{"measurement":"traffic","field":"count",` + s1 + `,"points":[[1735729200,42]]}],"partial":false}`},
		{"uint values", "/api/v1/series?measurement=counter&field=count", 200,
			`{"series":[{"measurement":"counter","field":"count",` + s2 + `,"points":[[1735729200,7]]}],"partial":false}`},
		{"nothing matches", "/api/v1/series?field=pm25&station=s9999", 200, `{"series":[],"partial":false}`},
		{"unknown parameters are ignored", "/api/v1/series?field=pm25&station=s0002&_=123", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s2 + `,"points":[[1735729200,7.25]]}],"partial":false}`},
		{"hostile station value is only data", "/api/v1/series?field=pm25&station=%3Cscript%3E%00%22", 200, `{"series":[],"partial":false}`},

		{"missing field", "/api/v1/series?station=s0001", 400, `{"error":"field is required, e.g. field=pm25"}`},
		{"empty field", "/api/v1/series?field=", 400, `{"error":"field is required, e.g. field=pm25"}`},
		{"ambiguous field", "/api/v1/series?field=count", 400,
			`{"error":"field \"count\" exists in measurements counter, traffic; name one with measurement="}`},
		{"bad from", "/api/v1/series?field=pm25&from=yesterday", 400, `{"error":"from: \"yesterday\" is neither RFC 3339 nor Unix seconds"}`},
		{"bad to", "/api/v1/series?field=pm25&to=2025-13-01T00:00:00Z", 400, `{"error":"to: \"2025-13-01T00:00:00Z\" is neither RFC 3339 nor Unix seconds"}`},
		{"fractional unix seconds", "/api/v1/series?field=pm25&from=1.5", 400, `{"error":"from: \"1.5\" is neither RFC 3339 nor Unix seconds"}`},
		{"from overflows ns", "/api/v1/series?field=pm25&from=99999999999999", 400, `{"error":"from: \"99999999999999\" is out of range"}`},
		{"rfc3339 out of range", "/api/v1/series?field=pm25&to=9999-01-01T00:00:00Z", 400, `{"error":"to: \"9999-01-01T00:00:00Z\" is out of range"}`},
		{"from after to", "/api/v1/series?field=pm25&from=1735729300&to=1735729200", 400, `{"error":"from is after to"}`},
		{"repeated parameter", "/api/v1/series?field=pm25&field=no2", 400, `{"error":"field given more than once"}`},
		{"semicolon separator", "/api/v1/series?field=pm25;station=s0001", 400, `{"error":"malformed query string"}`},
		{"bad percent escape", "/api/v1/series?field=%zz", 400, `{"error":"malformed query string"}`},
		{"overlong value", "/api/v1/series?field=" + strings.Repeat("a", 300), 400, `{"error":"field is longer than 256 bytes"}`},
		{"bad time_format", "/api/v1/series?field=pm25&time_format=iso", 400, `{"error":"time_format must be unix or rfc3339"}`},
		{"step not yet", "/api/v1/series?field=pm25&step=1h", 400, `{"error":"step is not supported yet; leave it out for raw points"}`},
		{"csv not yet", "/api/v1/series?field=pm25&format=csv", 400, `{"error":"format \"csv\" is not supported yet; only json"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(a, "GET", tt.target)
			if rec.Code != tt.code || strings.TrimSuffix(rec.Body.String(), "\n") != tt.body {
				t.Errorf("GET %s\n got %d %s\nwant %d %s", tt.target, rec.Code, rec.Body.String(), tt.code, tt.body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestAPI_series_pointLimit(t *testing.T) {
	a := newTestAPI(t, Options{MaxPoints: 3})
	if rec := do(a, "GET", "/api/v1/series?field=pm25&station=s0001"); rec.Code != 200 {
		t.Errorf("exactly at the limit: %d %s", rec.Code, rec.Body)
	}
	rec := do(a, "GET", "/api/v1/series?field=pm25")
	want := `{"error":"the answer would hold more than 3 points; narrow from/to or select a station"}` + "\n"
	if rec.Code != http.StatusUnprocessableEntity || rec.Body.String() != want {
		t.Errorf("over the limit: %d %s, want 422 %s", rec.Code, rec.Body, want)
	}
}

func TestAPI_stations(t *testing.T) {
	a := newTestAPI(t, Options{})
	rec := do(a, "GET", "/api/v1/stations")
	want := `{"type":"FeatureCollection","features":[` +
		`{"type":"Feature","geometry":{"type":"Point","coordinates":[16.37,48.21]},"properties":{"id":"s0001","district":"d01","measurements":["air","station","traffic"],"last_seen":"2025-01-01T11:00:20Z","registered":false}},` +
		`{"type":"Feature","geometry":null,"properties":{"id":"s0002","district":"d02","measurements":["air","counter"],"last_seen":"2025-01-01T11:00:00Z","registered":false}}]}` + "\n"
	if rec.Code != 200 || rec.Body.String() != want {
		t.Errorf("got %d\n%s\nwant\n%s", rec.Code, rec.Body, want)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/geo+json" {
		t.Errorf("Content-Type = %q", ct)
	}
}

func TestAPI_stations_empty(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "store.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := newTestAPI(t, Options{Store: st})
	rec := do(a, "GET", "/api/v1/stations")
	if want := `{"type":"FeatureCollection","features":[]}` + "\n"; rec.Body.String() != want {
		t.Errorf("got %s, want %s", rec.Body, want)
	}
}

func TestAPI_methodsAndPaths(t *testing.T) {
	a := newTestAPI(t, Options{})
	tests := []struct {
		method, target string
		code           int
		body           string
	}{
		{"POST", "/api/v1/series?field=pm25", 405, `{"error":"method POST not allowed; the API is read-only"}` + "\n"},
		{"DELETE", "/api/v1/stations", 405, `{"error":"method DELETE not allowed; the API is read-only"}` + "\n"},
		{"PUT", "/", 405, `{"error":"method PUT not allowed; the API is read-only"}` + "\n"},
		{"HEAD", "/api/v1/series?field=pm25", 200, ""},
		{"GET", "/api/v2/series", 404, `{"error":"no such endpoint: /api/v2/series"}` + "\n"},
		{"GET", "/healthz", 200, "ok\n"},
		{"GET", "/readyz", 200, "ok\n"},
	}
	for _, tt := range tests {
		rec := do(a, tt.method, tt.target)
		if rec.Code != tt.code || rec.Body.String() != tt.body {
			t.Errorf("%s %s = %d %q, want %d %q", tt.method, tt.target, rec.Code, rec.Body, tt.code, tt.body)
		}
		if tt.code == 405 && rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow = %q", tt.method, tt.target, rec.Header().Get("Allow"))
		}
	}
}

// Dot segments are cleaned by a redirect, never resolved against anything.
func TestAPI_dotSegments(t *testing.T) {
	a := newTestAPI(t, Options{})
	rec := do(a, "GET", "/api/v1/series/../../etc/passwd")
	if rec.Code/100 != 3 || rec.Header().Get("Location") != "/api/etc/passwd" {
		t.Errorf("got %d Location %q", rec.Code, rec.Header().Get("Location"))
	}
}

func TestAPI_readyz_notReady(t *testing.T) {
	a := newTestAPI(t, Options{Ready: func() error { return errors.New("jetstream is not enabled") }})
	rec := do(a, "GET", "/readyz")
	if rec.Code != 503 || rec.Body.String() != "not ready: jetstream is not enabled\n" {
		t.Errorf("got %d %q", rec.Code, rec.Body)
	}
}

func TestAPI_metrics(t *testing.T) {
	other := metrics.NewSet()
	other.NewCounter("citysense_ingest_batches_total").Add(5)
	a := newTestAPI(t, Options{Metrics: []*metrics.Set{other}})
	do(a, "GET", "/api/v1/series?field=pm25")
	do(a, "GET", "/api/v1/series")
	do(a, "POST", "/api/v1/series")
	rec := do(a, "GET", "/metrics")
	for _, want := range []string{
		`citysense_api_requests_total{route="GET /api/v1/series",code="200"} 1`,
		`citysense_api_requests_total{route="GET /api/v1/series",code="400"} 1`,
		`citysense_api_requests_total{route="other",code="405"} 1`,
		"citysense_ingest_batches_total 5",
		"process_cpu_seconds_total",
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, rec.Body)
		}
	}
}

func TestAPI_portal(t *testing.T) {
	a := newTestAPI(t, Options{})
	rec := do(a, "GET", "/")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `href="/api/v1/series?station=s0002&amp;field=pm25"`) {
		t.Errorf("portal: %d\n%s", rec.Code, rec.Body)
	}
	if rec := do(a, "GET", "/nope"); rec.Code != 404 {
		t.Errorf("GET /nope = %d, want 404", rec.Code)
	}
}

func TestAppendUnixSeconds(t *testing.T) {
	tests := []struct {
		ns   int64
		want string
	}{
		{0, "0"},
		{1735689600_000000000, "1735689600"},
		{1735689600_500000000, "1735689600.5"},
		{1735689600_000000001, "1735689600.000000001"},
		{-500_000_000, "-0.5"},
		{-1_000_000_000, "-1"},
	}
	for _, tt := range tests {
		if got := string(appendUnixSeconds(nil, tt.ns)); got != tt.want {
			t.Errorf("appendUnixSeconds(%d) = %s, want %s", tt.ns, got, tt.want)
		}
	}
}

func TestNewServer_limits(t *testing.T) {
	s := NewServer(http.NotFoundHandler(), nil)
	if s.ReadHeaderTimeout == 0 || s.ReadTimeout == 0 || s.WriteTimeout == 0 || s.IdleTimeout == 0 || s.MaxHeaderBytes == 0 {
		t.Errorf("server without limits: %+v", s)
	}
}
