package api

import (
	"encoding/json"
	"errors"
	"fmt"
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

func testStore(t testing.TB) *store.Store {
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

func newTestAPI(t testing.TB, opts Options) *API {
	t.Helper()
	if opts.Store == nil {
		opts.Store = testStore(t)
	}
	opts.Now = func() time.Time { return now }
	if opts.RateLimit == (RateLimit{}) {
		opts.RateLimit.PerSecond = -1 // the table tests send many requests at once
	}
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
			`{"series":[{"measurement":"air","field":"pm25",` + s1 + `,"points":[[1735729200,12.3],[1735729210,13],[1735729220.5,0.1]]}],"partial":false,"resolution":"raw"}`},
		{"every station in the default range", "/api/v1/series?field=pm25", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s1 + `,"points":[[1735729200,12.3],[1735729210,13],[1735729220.5,0.1]]},` +
				`{"measurement":"air","field":"pm25",` + s2 + `,"points":[[1735729200,7.25]]}],"partial":false,"resolution":"raw"}`},
		{"district and measurement", "/api/v1/series?measurement=air&district=d02&field=pm25", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s2 + `,"points":[[1735729200,7.25]]}],"partial":false,"resolution":"raw"}`},
		{"explicit range reaches old data, unix bounds inclusive", "/api/v1/series?field=pm25&station=s0002&from=1735560000&to=1735729200", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s2 + `,"points":[[1735560000,99],[1735729200,7.25]]}],"partial":false,"resolution":"raw"}`},
		{"rfc3339 in and out", "/api/v1/series?field=pm25&station=s0001&from=2025-01-01T11:00:05Z&to=2025-01-01T11:00:30%2B00:00&time_format=rfc3339", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s1 + `,"points":[["2025-01-01T11:00:10Z",13],["2025-01-01T11:00:20.5Z",0.1]]}],"partial":false,"resolution":"raw"}`},
		{"tiny float like encoding/json", "/api/v1/series?field=no2", 200,
			`{"series":[{"measurement":"air","field":"no2",` + s1 + `,"points":[[1735729200,1e-7]]}],"partial":false,"resolution":"raw"}`},
		{"int values", "/api/v1/series?measurement=traffic&field=count", 200,
			`{"series":[{"measurement":"traffic","field":"count",` + s1 + `,"points":[[1735729200,42]]}],"partial":false,"resolution":"raw"}`},
		{"uint values", "/api/v1/series?measurement=counter&field=count", 200,
			`{"series":[{"measurement":"counter","field":"count",` + s2 + `,"points":[[1735729200,7]]}],"partial":false,"resolution":"raw"}`},
		{"nothing matches", "/api/v1/series?field=pm25&station=s9999", 200, `{"series":[],"partial":false,"resolution":"raw"}`},
		{"unknown parameters are ignored", "/api/v1/series?field=pm25&station=s0002&_=123", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s2 + `,"points":[[1735729200,7.25]]}],"partial":false,"resolution":"raw"}`},
		{"hostile station value is only data", "/api/v1/series?field=pm25&station=%3Cscript%3E%00%22", 200, `{"series":[],"partial":false,"resolution":"raw"}`},

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
		{"hourly mean from the 1h rollups", "/api/v1/series?field=pm25&step=1h", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s1 + `,"points":[[1735729200,8.466666666666667]]},` +
				`{"measurement":"air","field":"pm25",` + s2 + `,"points":[[1735729200,7.25]]}],"partial":false,"resolution":"1h"}`},
		{"daily max per district", "/api/v1/series?field=pm25&step=1d&agg=max&group_by=district&from=1735560000", 200,
			`{"series":[{"measurement":"air","field":"pm25","tags":{"district":"d01"},"points":[[1735689600,13]]},` +
				`{"measurement":"air","field":"pm25","tags":{"district":"d02"},"points":[[1735516800,99],[1735689600,7.25]]}],"partial":false,"resolution":"1h"}`},
		{"count per minute from the 1m rollups", "/api/v1/series?field=pm25&station=s0001&step=1m&agg=count", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s1 + `,"points":[[1735729200,3]]}],"partial":false,"resolution":"1m"}`},
		{"median of 10 s buckets from raw points", "/api/v1/series?field=pm25&station=s0001&step=10s&agg=p50", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s1 + `,"points":[[1735729200,12.3],[1735729210,13],[1735729220,0.1]]}],"partial":false,"resolution":"raw"}`},
		{"station list", "/api/v1/series?field=pm25&station=s0002,s0001&step=1h&agg=last", 200,
			`{"series":[{"measurement":"air","field":"pm25",` + s1 + `,"points":[[1735729200,0.1]]},` +
				`{"measurement":"air","field":"pm25",` + s2 + `,"points":[[1735729200,7.25]]}],"partial":false,"resolution":"1h"}`},
		{"station list items are literals, not patterns", "/api/v1/series?field=pm25&station=s.*,s000.", 200, `{"series":[],"partial":false,"resolution":"raw"}`},
		{"empty list item", "/api/v1/series?field=pm25&station=s0001,", 400, `{"error":"station: empty value in \"s0001,\""}`},
		{"agg without step", "/api/v1/series?field=pm25&agg=max", 400, `{"error":"agg needs a step, e.g. step=1h"}`},
		{"group_by without step", "/api/v1/series?field=pm25&group_by=district", 400, `{"error":"group_by needs a step, e.g. step=1d"}`},
		{"unknown agg", "/api/v1/series?field=pm25&step=1h&agg=avg", 400, `{"error":"agg \"avg\": want one of mean, min, max, sum, count, first, last, p50, p95"}`},
		{"bad step", "/api/v1/series?field=pm25&step=hourly", 400, `{"error":"step: \"hourly\" is not a duration such as 1m, 1h or 1d"}`},
		{"negative step", "/api/v1/series?field=pm25&step=-1h", 400, `{"error":"step: \"-1h\" is not a duration such as 1m, 1h or 1d"}`},
		{"tiny step over a long range", "/api/v1/series?field=pm25&step=1ms&from=0", 400,
			`{"error":"the answer would hold up to 3471472800002 points (1735736400001 buckets × 2 series), more than 1000000; narrow from/to, raise step or select fewer series"}`},
		{"too many group_by tags", "/api/v1/series?field=pm25&step=1h&group_by=a,b,c,d,e", 400, `{"error":"group_by: at most 4 tags"}`},
		{"unknown format", "/api/v1/series?field=pm25&format=xml", 400, `{"error":"format must be json or csv"}`},
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
	want := `{"error":"the answer would hold more than 3 points; narrow from/to, give a step or select fewer series"}` + "\n"
	if rec.Code != http.StatusBadRequest || rec.Body.String() != want {
		t.Errorf("over the limit: %d %s, want 400 %s", rec.Code, rec.Body, want)
	}
}

func TestAPI_series_csv(t *testing.T) {
	a := newTestAPI(t, Options{})
	rec := do(a, "GET", "/api/v1/series?field=pm25&from=1735560000")
	if rec.Code != 200 {
		t.Fatalf("json: %d %s", rec.Code, rec.Body)
	}
	rec = do(a, "GET", "/api/v1/series?field=pm25&from=1735560000&format=csv")
	want := "time,measurement,field,district,station,value\r\n" +
		"2025-01-01T11:00:00Z,air,pm25,d01,s0001,12.3\r\n" +
		"2025-01-01T11:00:10Z,air,pm25,d01,s0001,13\r\n" +
		"2025-01-01T11:00:20.5Z,air,pm25,d01,s0001,0.1\r\n" +
		"2024-12-30T12:00:00Z,air,pm25,d02,s0002,99\r\n" +
		"2025-01-01T11:00:00Z,air,pm25,d02,s0002,7.25\r\n"
	if rec.Code != 200 || rec.Body.String() != want {
		t.Errorf("csv: %d\n%q\nwant\n%q", rec.Code, rec.Body, want)
	}
	h := rec.Header()
	if h.Get("Content-Type") != "text/csv; charset=utf-8" || h.Get("Content-Disposition") != `attachment; filename="citysense-pm25.csv"` {
		t.Errorf("headers %v", h)
	}
	rec = do(a, "GET", "/api/v1/series?field=pm25&step=1d&agg=max&group_by=district&from=1735560000&format=csv&time_format=unix")
	want = "time,measurement,field,district,value\r\n1735689600,air,pm25,d01,13\r\n1735516800,air,pm25,d02,99\r\n1735689600,air,pm25,d02,7.25\r\n"
	if rec.Body.String() != want || rec.Header().Get("Content-Disposition") != `attachment; filename="citysense-pm25-max-24h.csv"` {
		t.Errorf("grouped csv %q %v\nwant %q", rec.Body, rec.Header(), want)
	}
}

func TestAppendCSVCell(t *testing.T) {
	for in, want := range map[string]string{
		"plain": "plain", `a,b`: `"a,b"`, `say "hi"`: `"say ""hi"""`, "two\nlines": "\"two\nlines\"",
		"=HYPERLINK(1)": "'=HYPERLINK(1)", "-2+3": "'-2+3", "@x": "'@x", "+1,2": `"'+1,2"`, "": "",
	} {
		if got := string(appendCSVCell(nil, in)); got != want {
			t.Errorf("appendCSVCell(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestAPI_latest(t *testing.T) {
	a := newTestAPI(t, Options{})
	tests := []struct {
		name, target string
		code         int
		body         string
	}{
		{"every station", "/api/v1/latest?field=pm25", 200,
			`{"latest":[{"measurement":"air","field":"pm25","tags":{"district":"d01","station":"s0001"},"time":1735729220.5,"value":0.1},` +
				`{"measurement":"air","field":"pm25","tags":{"district":"d02","station":"s0002"},"time":1735729200,"value":7.25}]}`},
		{"one district, rfc3339", "/api/v1/latest?field=pm25&district=d02&time_format=rfc3339", 200,
			`{"latest":[{"measurement":"air","field":"pm25","tags":{"district":"d02","station":"s0002"},"time":"2025-01-01T11:00:00Z","value":7.25}]}`},
		{"at a time in the past", "/api/v1/latest?field=pm25&station=s0002&at=1735560000&window=1d", 200,
			`{"latest":[{"measurement":"air","field":"pm25","tags":{"district":"d02","station":"s0002"},"time":1735560000,"value":99}]}`},
		{"window excludes old points", "/api/v1/latest?field=pm25&window=1s", 200, `{"latest":[]}`},
		{"missing field", "/api/v1/latest", 400, `{"error":"field is required, e.g. field=pm25"}`},
		{"bad window", "/api/v1/latest?field=pm25&window=forever", 400, `{"error":"window: \"forever\": want a duration from 1s to 366d"}`},
		{"bad at", "/api/v1/latest?field=pm25&at=now", 400, `{"error":"at: \"now\" is neither RFC 3339 nor Unix seconds"}`},
		{"ambiguous field", "/api/v1/latest?field=count", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(a, "GET", tt.target)
			if rec.Code != tt.code || (tt.body != "" && strings.TrimSuffix(rec.Body.String(), "\n") != tt.body) {
				t.Errorf("GET %s\n got %d %s\nwant %d %s", tt.target, rec.Code, rec.Body.String(), tt.code, tt.body)
			}
		})
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
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `<div id="map" class="map"`) ||
		!strings.Contains(rec.Header().Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("portal: %d %v\n%s", rec.Code, rec.Header(), rec.Body)
	}
	for _, path := range []string{"/assets/app.js", "/portal/config.json", "/index.html"} {
		if rec := do(a, "GET", path); rec.Code != 200 {
			t.Errorf("GET %s = %d", path, rec.Code)
		}
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

func TestAPI_series_pages(t *testing.T) {
	a := newTestAPI(t, Options{})
	type answer struct {
		Series []struct {
			Tags   map[string]string `json:"tags"`
			Points [][2]float64      `json:"points"`
		} `json:"series"`
		Next string `json:"next"`
	}
	flat := func(body []byte) ([]string, string) {
		var ans answer
		if err := json.Unmarshal(body, &ans); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		var out []string
		for _, s := range ans.Series {
			for _, p := range s.Points {
				out = append(out, fmt.Sprint(s.Tags["station"], p))
			}
		}
		return out, ans.Next
	}
	base := "/api/v1/series?field=pm25&from=1735560000"
	rec := do(a, "GET", base)
	want, next := flat(rec.Body.Bytes())
	if len(want) != 5 || next != "" {
		t.Fatalf("one answer: %v, next %q", want, next)
	}
	for _, limit := range []int{1, 2, 4, 5, 6} {
		var got []string
		target := base + "&limit=" + fmt.Sprint(limit)
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("limit %d: no last page", limit)
			}
			rec := do(a, "GET", target)
			if rec.Code != 200 {
				t.Fatalf("limit %d: %d %s", limit, rec.Code, rec.Body)
			}
			pts, next := flat(rec.Body.Bytes())
			if len(pts) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(pts))
			}
			got = append(got, pts...)
			if next == "" {
				if rec.Header().Get("Link") != "" {
					t.Errorf("last page has a Link header")
				}
				break
			}
			link := rec.Header().Get("Link")
			if !strings.HasSuffix(link, `>; rel="next"`) || !strings.Contains(link, "cursor="+next) {
				t.Errorf("Link %q does not carry cursor %s", link, next)
			}
			target = base + "&limit=" + fmt.Sprint(limit) + "&cursor=" + next
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("limit %d: pages %v, want %v", limit, got, want)
		}
	}
	for target, msg := range map[string]string{
		base + "&cursor=%21%21":                       `{"error":"cursor: malformed; pass the next cursor of the previous page unchanged"}`,
		base + "&cursor=AAAA":                         `{"error":"cursor: malformed; pass the next cursor of the previous page unchanged"}`,
		base + "&limit=0":                             `{"error":"limit: \"0\" is not a positive number"}`,
		base + "&limit=x":                             `{"error":"limit: \"x\" is not a positive number"}`,
		base + "&limit=5&step=1h":                     `{"error":"pages are for raw points; an aggregated answer is bounded by its step"}`,
		base + "&limit=2000000":                       `{"error":"limit 2000000: want 1 to 1000000"}`,
		base + "&cursor=" + strings.Repeat("A", 3000): `{"error":"cursor is longer than 2048 bytes"}`,
	} {
		rec := do(a, "GET", target)
		if rec.Code != 400 || strings.TrimSpace(rec.Body.String()) != msg {
			t.Errorf("%s: %d %s, want 400 %s", target[:min(len(target), 80)], rec.Code, rec.Body, msg)
		}
	}
}
