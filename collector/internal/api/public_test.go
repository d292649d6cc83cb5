package api

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/enrich/schema"
	"github.com/citysense/citysense/protocols"
)

// contracts are the data contracts of the test store's measurements.
func contracts() any {
	return []schema.Contract{
		{Measurement: "air", Fields: []schema.FieldSpec{{Name: "no2", Type: "float", Unit: "µg/m³"}, {Name: "pm25", Type: "float", Unit: "µg/m³"}}},
		{Measurement: "traffic", Fields: []schema.FieldSpec{{Name: "count", Type: "int"}, {Name: "note", Type: "string"}}},
		{Measurement: "counter", Fields: []schema.FieldSpec{{Name: "count", Type: "uint"}}},
	}
}

// enrichedStore is testStore plus what the enrichment adds: AQI points
// for s0001 and a quality flag on s0002's newest pm25.
func enrichedStore(t *testing.T) *store.Store {
	t.Helper()
	st := testStore(t)
	s1 := []protocols.Tag{{Key: "district", Value: "d01"}, {Key: "station", Value: "s0001"}}
	s2 := []protocols.Tag{{Key: "district", Value: "d02"}, {Key: "station", Value: "s0002"}}
	_, err := st.Write([]protocols.Point{
		{Measurement: "aqi", Tags: s1, Time: sec(-3580), Fields: []protocols.Field{
			{Key: "eu_eaqi", Value: protocols.Int(2)}, {Key: "eu_eaqi_category", Value: protocols.String("Fair")},
			{Key: "us_epa", Value: protocols.Int(53)}, {Key: "us_epa_category", Value: protocols.String("Moderate")},
		}},
		{Measurement: "air", Tags: s2, Time: sec(-3600), Fields: []protocols.Field{{Key: "pm25_qc", Value: protocols.Uint(2)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

const (
	wantS1 = `{"type":"Feature","geometry":{"type":"Point","coordinates":[16.37,48.21]},"properties":{"id":"s0001","district":"d01",` +
		`"measurements":["air","aqi","station","traffic"],"last_seen":"2025-01-01T11:00:20Z","registered":false,` +
		`"latest":{"no2":1e-7,"pm25":0.1,"traffic.count":42},"aqi":53,"aqi_category":"Moderate","eaqi":2,"eaqi_category":"Fair"}}`
	wantS2 = `{"type":"Feature","geometry":null,"properties":{"id":"s0002","district":"d02","measurements":["air","counter"],` +
		`"last_seen":"2025-01-01T11:00:00Z","registered":false,"latest":{"counter.count":7,"pm25":7.25},"flagged":["pm25"]}}`
)

func TestAPI_stations_latestAndAQI(t *testing.T) {
	a := newTestAPI(t, Options{Store: enrichedStore(t), Contracts: contracts})
	rec := do(a, "GET", "/api/v1/stations")
	want := `{"type":"FeatureCollection","features":[` + wantS1 + `,` + wantS2 + `]}` + "\n"
	if rec.Code != 200 || rec.Body.String() != want {
		t.Fatalf("%d\n got %s\nwant %s", rec.Code, rec.Body, want)
	}
	h := rec.Header()
	for k, v := range map[string]string{
		"Content-Type": "application/geo+json", "Cache-Control": "public, max-age=10", "Vary": "Accept-Encoding",
		"Access-Control-Allow-Origin": "*", "Content-Length": strconv.Itoa(len(want)),
	} {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	if etag := h.Get("ETag"); len(etag) != 34 || etag[0] != '"' || etag[33] != '"' {
		t.Errorf("ETag = %q, want a quoted 32-hex-digit strong tag", etag)
	}
}

func TestAPI_stations_etagGzip304(t *testing.T) {
	a := newTestAPI(t, Options{Store: enrichedStore(t), Contracts: contracts})
	get := func(headers ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "http://collector/api/v1/stations", nil)
		for i := 0; i < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		return rec
	}
	plain := get()
	etag := plain.Header().Get("ETag")
	gz := get("Accept-Encoding", "br, gzip;q=0.8")
	gzTag := strings.TrimSuffix(etag, `"`) + `-gz"`
	if gz.Code != 200 || gz.Header().Get("Content-Encoding") != "gzip" || gz.Header().Get("ETag") != gzTag {
		t.Fatalf("gzip: %d %v", gz.Code, gz.Header())
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(zr)
	if !bytes.Equal(body, plain.Body.Bytes()) {
		t.Errorf("gunzipped body differs from the plain one")
	}
	if rec := get("Accept-Encoding", "gzip;q=0"); rec.Header().Get("Content-Encoding") != "" {
		t.Errorf("gzip;q=0 got gzip")
	}
	tests := []struct {
		name, inm, ae string
		code          int
	}{
		{"same tag", etag, "", 304},
		{"weak form of the same tag", "W/" + etag, "", 304},
		{"one of a list", `"x", ` + etag, "", 304},
		{"star", "*", "", 304},
		{"gzip tag for the gzip variant", gzTag, "gzip", 304},
		{"plain tag for the gzip variant", etag, "gzip", 200},
		{"other tag", `"0123"`, "", 200},
	}
	for _, tt := range tests {
		rec := get("If-None-Match", tt.inm, "Accept-Encoding", tt.ae)
		if rec.Code != tt.code {
			t.Errorf("%s: %d, want %d", tt.name, rec.Code, tt.code)
		}
		if tt.code == 304 && (rec.Body.Len() != 0 || rec.Header().Get("ETag") == "" || rec.Header().Get("Cache-Control") == "") {
			t.Errorf("%s: 304 with body %q headers %v", tt.name, rec.Body, rec.Header())
		}
	}
}

func TestAPI_station(t *testing.T) {
	a := newTestAPI(t, Options{Store: enrichedStore(t), Contracts: contracts})
	tests := []struct {
		target string
		code   int
		body   string
	}{
		{"/api/v1/stations/s0002", 200, strings.TrimSuffix(wantS2, `}}`) + `,"fields":[` +
			`{"measurement":"air","field":"pm25","unit":"µg/m³","time":"2025-01-01T11:00:00Z","value":7.25,"qc":2},` +
			`{"measurement":"counter","field":"count","time":"2025-01-01T11:00:00Z","value":7,"qc":0}]}}`},
		{"/api/v1/stations/s0001", 200, strings.TrimSuffix(wantS1, `}}`) + `,"fields":[` +
			`{"measurement":"air","field":"no2","unit":"µg/m³","time":"2025-01-01T11:00:00Z","value":1e-7,"qc":0},` +
			`{"measurement":"air","field":"pm25","unit":"µg/m³","time":"2025-01-01T11:00:20.5Z","value":0.1,"qc":0},` +
			`{"measurement":"traffic","field":"count","time":"2025-01-01T11:00:00Z","value":42,"qc":0},` +
			`{"measurement":"aqi","field":"us_epa","time":"2025-01-01T11:00:20Z","value":53,"qc":0},` +
			`{"measurement":"aqi","field":"us_epa_category","time":"2025-01-01T11:00:20Z","value":"Moderate","qc":0},` +
			`{"measurement":"aqi","field":"eu_eaqi","time":"2025-01-01T11:00:20Z","value":2,"qc":0},` +
			`{"measurement":"aqi","field":"eu_eaqi_category","time":"2025-01-01T11:00:20Z","value":"Fair","qc":0}]}}`},
		{"/api/v1/stations/s9999", 404, `{"error":"no station \"s9999\""}`},
		{"/api/v1/stations/" + strings.Repeat("x", 300), 400, `{"error":"station id must be 1 to 256 bytes"}`},
	}
	for _, tt := range tests {
		rec := do(a, "GET", tt.target)
		if rec.Code != tt.code || rec.Body.String() != tt.body+"\n" {
			t.Errorf("%s: %d\n got %s\nwant %s", tt.target, rec.Code, rec.Body, tt.body)
		}
	}
}

const testDistricts = `{"type":"FeatureCollection","features":[
 {"type":"Feature","id":"d01","properties":{"name":"d01","label":"Old Town"},"geometry":{"type":"Polygon","coordinates":[[[16,48],[17,48],[17,49],[16,48]]]}},
 {"type":"Feature","properties":{"name":"d02"},"geometry":{"type":"Polygon","coordinates":[[[15,48],[16,48],[16,49],[15,48]]]}},
 {"type":"Feature","id":7,"properties":{},"geometry":null}]}`

func TestAPI_districts(t *testing.T) {
	a := newTestAPI(t, Options{Store: enrichedStore(t), Contracts: contracts, Districts: []byte(testDistricts)})
	rec := do(a, "GET", "/api/v1/districts")
	want := `{"type":"FeatureCollection","features":[` +
		`{"type":"Feature","id":"d01","geometry":{"type":"Polygon","coordinates":[[[16,48],[17,48],[17,49],[16,48]]]},"properties":{"aqi_category":"Moderate","aqi_max":53,"aqi_mean":53,"district":"d01","label":"Old Town","name":"d01","pm25_mean":0.1,"stations":1,"stations_with_aqi":1}},` +
		`{"type":"Feature","id":"d02","geometry":{"type":"Polygon","coordinates":[[[15,48],[16,48],[16,49],[15,48]]]},"properties":{"aqi_max":null,"aqi_mean":null,"district":"d02","name":"d02","pm25_mean":7.3,"stations":1,"stations_with_aqi":0}},` +
		`{"type":"Feature","id":"7","geometry":null,"properties":{"aqi_max":null,"aqi_mean":null,"district":"7","pm25_mean":null,"stations":0,"stations_with_aqi":0}}]}` + "\n"
	if rec.Code != 200 || rec.Body.String() != want || rec.Header().Get("ETag") == "" || rec.Header().Get("Content-Type") != "application/geo+json" {
		t.Fatalf("%d %v\n got %s\nwant %s", rec.Code, rec.Header(), rec.Body, want)
	}
	// No districts file: an empty collection; a broken one: a 500.
	if rec := do(newTestAPI(t, Options{}), "GET", "/api/v1/districts"); rec.Code != 200 || rec.Body.String() != `{"type":"FeatureCollection","features":[]}`+"\n" {
		t.Errorf("no districts: %d %s", rec.Code, rec.Body)
	}
	if rec := do(newTestAPI(t, Options{Districts: []byte(`{"type":"Feature"}`)}), "GET", "/api/v1/districts"); rec.Code != 500 {
		t.Errorf("broken districts: %d %s", rec.Code, rec.Body)
	}
}

func TestParseDistricts_errors(t *testing.T) {
	for in, want := range map[string]string{
		`[`:                  "districts: unexpected end of JSON input",
		`{"type":"Feature"}`: "districts: not a GeoJSON FeatureCollection",
		`{"type":"FeatureCollection","features":[{"properties":{"x":1}}]}`: "districts: feature 0 has no name",
	} {
		if _, err := parseDistricts([]byte(in), ""); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %s", in, err, want)
		}
	}
}

func TestAPI_rateLimit(t *testing.T) {
	a := newTestAPI(t, Options{RateLimit: RateLimit{PerSecond: 0.5, Burst: 2}})
	get := func(remote string, xff ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "http://collector/api/v1/schema", nil)
		req.RemoteAddr = remote
		for _, x := range xff {
			req.Header.Add("X-Forwarded-For", x)
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		return rec
	}
	for i, want := range []int{200, 200, 429, 429} {
		rec := get("192.0.2.7:1000" + strconv.Itoa(i)) // other ports, same address
		if rec.Code != want {
			t.Fatalf("request %d: %d, want %d", i, rec.Code, want)
		}
		if want == 429 {
			if rec.Header().Get("Retry-After") != "2" || rec.Body.String() != `{"error":"too many requests; retry after 2 s"}`+"\n" ||
				rec.Header().Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("429: %v %s", rec.Header(), rec.Body)
			}
		}
	}
	// Another address has its own bucket; loopback (a local tool) is not
	// limited, but a client behind a local proxy is, by its forwarded address.
	if rec := get("198.51.100.1:1"); rec.Code != 200 {
		t.Errorf("other client: %d", rec.Code)
	}
	for i := 0; i < 5; i++ {
		if rec := get("127.0.0.1:5000"); rec.Code != 200 {
			t.Fatalf("loopback request %d: %d", i, rec.Code)
		}
	}
	codes := []int{}
	for i := 0; i < 3; i++ {
		codes = append(codes, get("[::1]:5000", "10.0.0.1, 203.0.113.9").Code)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Errorf("proxied client: %v", codes)
	}
	// Only the public API is limited.
	if rec := get("192.0.2.7:1"); rec.Code != 429 {
		t.Fatalf("still limited: %d", rec.Code)
	}
	req := httptest.NewRequest("GET", "http://collector/healthz", nil)
	req.RemoteAddr = "192.0.2.7:1"
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("/healthz limited: %d", rec.Code)
	}
	if !strings.Contains(do(a, "GET", "/metrics").Body.String(), "citysense_api_rate_limited_total 4") {
		t.Errorf("rate-limited counter not 4")
	}
}

func TestLimiter_boundedClients(t *testing.T) {
	lm := newLimiter(RateLimit{PerSecond: 1, Burst: 1, MaxClients: 100})
	for i := 0; i < 1000; i++ {
		lm.allow("a" + strconv.Itoa(i))
		if len(lm.clients) > 100 {
			t.Fatalf("%d clients tracked after %d", len(lm.clients), i)
		}
	}
}

func TestAPI_cors(t *testing.T) {
	a := newTestAPI(t, Options{})
	rec := do(a, "OPTIONS", "/api/v1/series?field=pm25")
	want := map[string]string{
		"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
		"Access-Control-Allow-Headers": "If-None-Match, Accept, Last-Event-ID", "Access-Control-Max-Age": "86400",
	}
	if rec.Code != 204 {
		t.Fatalf("preflight: %d", rec.Code)
	}
	for k, v := range want {
		if rec.Header().Get(k) != v {
			t.Errorf("preflight %s = %q, want %q", k, rec.Header().Get(k), v)
		}
	}
	if rec := do(a, "GET", "/api/v1/series?field=pm25"); rec.Header().Get("Access-Control-Allow-Origin") != "*" ||
		rec.Header().Get("Access-Control-Expose-Headers") != "ETag, Retry-After, Content-Disposition" {
		t.Errorf("GET lacks CORS: %v", rec.Header())
	}
	// Neither the operations endpoints nor the write API are open to pages
	// of other origins; POST to the public API stays refused.
	if rec := do(a, "GET", "/metrics"); rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("/metrics has CORS")
	}
	if rec := do(a, "OPTIONS", "/api/v2/write"); rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("write API has CORS")
	}
	if rec := do(a, "POST", "/api/v1/stations"); rec.Code != 405 {
		t.Errorf("POST: %d", rec.Code)
	}
}

// TestOpenAPI_coversRoutes holds openapi.json and the registered public
// routes in step, both ways.
func TestOpenAPI_coversRoutes(t *testing.T) {
	a := newTestAPI(t, Options{})
	rec := do(a, "GET", "/api/openapi.json")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("ETag") == "" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	registered := map[string]bool{}
	for _, rt := range a.publicRoutes() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		registered[path] = true
		op, ok := doc.Paths[path][strings.ToLower(method)]
		if !ok {
			t.Errorf("route %s is not in openapi.json", rt.pattern)
			continue
		}
		var o struct {
			Summary   string         `json:"summary"`
			Responses map[string]any `json:"responses"`
		}
		if err := json.Unmarshal(op, &o); err != nil || o.Summary == "" || o.Responses["200"] == nil {
			t.Errorf("%s: no summary or 200 response (%v)", rt.pattern, err)
		}
		// The route answers: no path in the document leads to the 404
		// catch-all.
		target := strings.ReplaceAll(path, "{id}", "s0001")
		if r := do(a, method, target); r.Code == 404 && strings.Contains(r.Body.String(), "no such endpoint") {
			t.Errorf("%s is not served", target)
		}
	}
	for path := range doc.Paths {
		if !registered[path] {
			t.Errorf("openapi.json describes %s, which is not registered", path)
		}
	}
}

// fakeLive is a LiveSource the test publishes into.
type fakeLive struct {
	mu   sync.Mutex
	fn   func([]protocols.Point)
	subs int
}

func (f *fakeLive) Subscribe(fn func([]protocols.Point)) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fn = fn
	f.subs++
	return func() { f.mu.Lock(); f.fn = nil; f.mu.Unlock() }, nil
}

func (f *fakeLive) publish(pts ...protocols.Point) bool {
	f.mu.Lock()
	fn := f.fn
	f.mu.Unlock()
	if fn == nil {
		return false
	}
	fn(pts)
	return true
}

func livePoint(station, district string, ts int64, fields ...protocols.Field) protocols.Point {
	return protocols.Point{Measurement: "air", Time: ts, Fields: fields,
		Tags: []protocols.Tag{{Key: "district", Value: district}, {Key: "station", Value: station}}}
}

func TestAPI_live(t *testing.T) {
	src := &fakeLive{}
	a := newTestAPI(t, Options{Live: src, MaxLiveClients: 1, LiveHeartbeat: 20 * time.Millisecond})
	srv := httptest.NewServer(a)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/live?district=d01&field=pm25,us_epa")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	event := func() string {
		t.Helper()
		var b strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream: %v after %q", err, b.String())
			}
			if line == "\n" {
				return b.String()
			}
			b.WriteString(line)
		}
	}
	if ev := event(); ev != "retry: 5000\n: connected\n" {
		t.Fatalf("first event %q", ev)
	}
	// A second client is one too many.
	if r2, err := http.Get(srv.URL + "/api/v1/live"); err != nil || r2.StatusCode != 503 || r2.Header.Get("Retry-After") != "30" {
		t.Fatalf("second client: %v %v", err, r2)
	} else {
		r2.Body.Close()
	}
	if !src.publish(
		livePoint("s0002", "d02", sec(0), protocols.Field{Key: "pm25", Value: protocols.Float(9)}), // other district
		livePoint("s0001", "d01", sec(0), protocols.Field{Key: "no2", Value: protocols.Float(3)}),  // no wanted field
		livePoint("s0001", "d01", sec(1)+5e8, protocols.Field{Key: "no2", Value: protocols.Float(3)}, // pm25 only
			protocols.Field{Key: "pm25", Value: protocols.Float(12.5)}),
	) {
		t.Fatal("the hub did not subscribe")
	}
	var got string
	for got = event(); got == ": heartbeat\n"; got = event() {
	}
	if want := `id: 3` + "\nevent: reading\n" + `data: {"time":1735732801.5,"measurement":"air","tags":{"district":"d01","station":"s0001"},"fields":{"pm25":12.5}}` + "\n"; got != want {
		t.Errorf("event\n got %q\nwant %q", got, want)
	}
	// Idle: heartbeats.
	if ev := event(); ev != ": heartbeat\n" {
		t.Errorf("idle event %q", ev)
	}
}

func TestAPI_live_badFilter(t *testing.T) {
	a := newTestAPI(t, Options{Live: &fakeLive{}})
	if rec := do(a, "GET", "/api/v1/live?district=d01,,d02"); rec.Code != 400 || rec.Body.String() != `{"error":"district: empty value in \"d01,,d02\""}`+"\n" {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
	if rec := do(newTestAPI(t, Options{}), "GET", "/api/v1/live"); rec.Code != 503 {
		t.Errorf("no live source: %d %s", rec.Code, rec.Body)
	}
}

// A client that does not read is dropped once its queue is full; the
// others go on, and the hub unsubscribes when the last one leaves.
func TestLiveHub_dropsSlowClient(t *testing.T) {
	src := &fakeLive{}
	a := newTestAPI(t, Options{Live: src})
	slow, err := a.hub.join(liveFilter{})
	if err != nil {
		t.Fatal(err)
	}
	picky, _ := a.hub.join(liveFilter{stations: []string{"s0009"}})
	p := livePoint("s0001", "d01", sec(0), protocols.Field{Key: "pm25", Value: protocols.Float(1)})
	for i := 0; i < liveQueue; i++ {
		src.publish(p)
	}
	select {
	case <-slow.gone:
		t.Fatal("dropped with a full but not overflowing queue")
	default:
	}
	src.publish(p)
	select {
	case <-slow.gone:
	default:
		t.Fatal("not dropped")
	}
	select {
	case <-picky.gone:
		t.Fatal("the other client was dropped too")
	default:
	}
	if len(picky.ch) != 0 {
		t.Errorf("picky client got %d events", len(picky.ch))
	}
	a.hub.leave(slow)
	a.hub.leave(picky)
	if src.publish(p) {
		t.Errorf("still subscribed with no client")
	}
	if !strings.Contains(do(a, "GET", "/metrics").Body.String(), "citysense_api_live_dropped_total 1") {
		t.Errorf("drop not counted")
	}
}
