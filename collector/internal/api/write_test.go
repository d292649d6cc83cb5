package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citysense/citysense/collector/internal/auth"
	"github.com/citysense/citysense/collector/internal/bus"
	"github.com/citysense/citysense/collector/internal/ingest"
	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/protocols"
)

// fakeBus records the batches the write endpoints hand on.
type fakeBus struct {
	mu   sync.Mutex
	msgs []protocols.Batch
	err  error
}

func (f *fakeBus) Write(_ context.Context, batches []protocols.Batch) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	n := 0
	for _, b := range batches {
		// The endpoint reuses its batch after Write returns; keeping a
		// copy proves it does not rely on more.
		b.Points = slices.Clone(b.Points)
		f.msgs = append(f.msgs, b)
		n += len(b.Points)
	}
	return n, nil
}

// lines returns every published line, in order.
func (f *fakeBus) lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, m := range f.msgs {
		// As line protocol the tests can state what they expect.
		lp, err := protocols.AppendLines(nil, m.Points, protocols.Nanosecond)
		if err != nil {
			panic(err)
		}
		out = append(out, strings.Split(strings.TrimSuffix(string(lp), "\n"), "\n")...)
	}
	return out
}

type writeFixture struct {
	api           *API
	bus           *fakeBus
	writer, admin string // token secrets
	creds         *auth.Credentials
}

func newWriteFixture(t *testing.T, limits WriteLimits) *writeFixture {
	t.Helper()
	creds, err := auth.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	writer, _, err := creds.AddToken("telegraf", false)
	if err != nil {
		t.Fatal(err)
	}
	admin, _, err := creds.AddToken("ops", true)
	if err != nil {
		t.Fatal(err)
	}
	f := &writeFixture{bus: &fakeBus{}, writer: writer, admin: admin, creds: creds}
	f.api = newTestAPI(t, Options{Store: emptyStore(t), Credentials: creds, Bus: f.bus, Write: limits})
	return f
}

func emptyStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "store.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

type writeReq struct {
	target  string
	body    []byte
	headers map[string]string
	chunked bool // no Content-Length
}

func (f *writeFixture) do(r writeReq) *httptest.ResponseRecorder {
	var body io.Reader = bytes.NewReader(r.body)
	if r.chunked {
		body = io.MultiReader(body) // hides the length from httptest
	}
	req := httptest.NewRequest("POST", "http://collector"+r.target, body)
	if r.chunked {
		req.ContentLength = -1
	}
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	f.api.ServeHTTP(rec, req)
	return rec
}

func unix(s int64) string { return fmt.Sprint(now.Unix() + s) }

// TestAPI_write_statuses covers every answer of the write endpoints, and
// which lines reach the bus for each.
func TestAPI_write_statuses(t *testing.T) {
	limits := DefaultWriteLimits()
	limits.MaxBody = 1 << 20
	limits.MaxLine = 1 << 10
	limits.MaxTags, limits.MaxFields = 2, 3
	f := newWriteFixture(t, limits)
	tok := map[string]string{"Authorization": "Token " + f.writer}
	good := "air,station=s1 pm25=1 " + unix(-10) + "\nair,station=s2 pm25=2 " + unix(-5) + "\n"
	goodNS := []string{"air,station=s1 pm25=1 " + unix(-10) + "000000000", "air,station=s2 pm25=2 " + unix(-5) + "000000000"}
	bomb := gzipped(t, strings.Repeat("x", 2<<20)) // 2 MiB of output from a few KiB
	long := "air,station=s1 note=\"" + strings.Repeat("x", 1100) + "\" " + unix(0)

	tests := []struct {
		name  string
		req   writeReq
		code  int
		body  string   // exact JSON answer; "" for 204
		lines []string // published, in order
	}{
		{"v2 gzip and token, precision s",
			writeReq{target: "/api/v2/write?org=city&bucket=sensors&precision=s", body: gzipped(t, good),
				headers: map[string]string{"Authorization": "Token " + f.writer, "Content-Encoding": "gzip"}},
			204, "", goodNS},
		{"v2 bearer",
			writeReq{target: "/api/v2/write?precision=s", body: []byte(good), headers: map[string]string{"Authorization": "Bearer " + f.writer}},
			204, "", goodNS},
		{"v1 u/p query parameters, precision u",
			writeReq{target: "/write?db=city&rp=autogen&u=x&p=" + f.writer + "&precision=u", body: []byte("air,station=s1 pm25=1 " + unix(-10) + "000001\n")},
			204, "", []string{"air,station=s1 pm25=1 " + unix(-10) + "000001000"}},
		{"v1 basic auth, password is the token",
			writeReq{target: "/write?db=city&precision=s", body: []byte(good), headers: map[string]string{"Authorization": "Basic " + basic("telegraf", f.writer)}},
			204, "", goodNS},
		{"v1 token header, precision n",
			writeReq{target: "/write?db=city&precision=n", body: []byte("air,station=s1 pm25=1 " + unix(0) + "000000007\n"), headers: tok},
			204, "", []string{"air,station=s1 pm25=1 " + unix(0) + "000000007"}},
		{"admin token may write", writeReq{target: "/api/v2/write?precision=s", body: []byte(good), headers: map[string]string{"Authorization": "Token " + f.admin}},
			204, "", goodNS},
		{"empty body", writeReq{target: "/api/v2/write", headers: tok}, 204, "", nil},
		{"line without timestamp gets the arrival time", writeReq{target: "/api/v2/write", body: []byte("air,station=s1 pm25=1"), headers: tok},
			204, "", []string{"air,station=s1 pm25=1 " + unix(0) + "000000000"}},

		{"no token", writeReq{target: "/api/v2/write", body: []byte(good)},
			401, `{"code":"unauthorized","message":"unauthorized access: a valid token is required"}`, nil},
		{"v1 no token has the v1 error key", writeReq{target: "/write?db=x", body: []byte(good)},
			401, `{"code":"unauthorized","error":"unauthorized access: a valid token is required","message":"unauthorized access: a valid token is required"}`, nil},
		{"wrong token", writeReq{target: "/api/v2/write", body: []byte(good), headers: map[string]string{"Authorization": "Token cs_wrong"}},
			401, `{"code":"unauthorized","message":"unauthorized access: a valid token is required"}`, nil},
		{"v2 does not take basic auth", writeReq{target: "/api/v2/write", body: []byte(good), headers: map[string]string{"Authorization": "Basic " + basic("u", f.writer)}},
			401, `{"code":"unauthorized","message":"unauthorized access: a valid token is required"}`, nil},
		{"v2 does not take p", writeReq{target: "/api/v2/write?p=" + f.writer, body: []byte(good)},
			401, `{"code":"unauthorized","message":"unauthorized access: a valid token is required"}`, nil},

		{"no token is judged before anything else", writeReq{target: "/api/v2/write?precision=h", body: []byte(good),
			headers: map[string]string{"Content-Encoding": "br"}},
			401, `{"code":"unauthorized","message":"unauthorized access: a valid token is required"}`, nil},
		{"bad precision", writeReq{target: "/api/v2/write?precision=h", body: []byte(good), headers: tok},
			400, `{"code":"invalid","message":"precision \"h\": want ns, us, ms or s"}`, nil},
		{"v2 short precision", writeReq{target: "/api/v2/write?precision=n", body: []byte(good), headers: tok},
			400, `{"code":"invalid","message":"precision \"n\": want ns, us, ms or s"}`, nil},
		{"unknown encoding", writeReq{target: "/api/v2/write", body: []byte(good), headers: map[string]string{"Authorization": "Token " + f.writer, "Content-Encoding": "br"}},
			415, `{"code":"invalid","message":"Content-Encoding \"br\": want gzip or none"}`, nil},
		{"not gzip", writeReq{target: "/api/v2/write", body: []byte(good), headers: map[string]string{"Authorization": "Token " + f.writer, "Content-Encoding": "gzip"}},
			400, `{"code":"invalid","message":"body is not valid gzip: gzip: invalid header"}`, nil},

		{"declared length over the limit", writeReq{target: "/api/v2/write", body: bytes.Repeat([]byte("x"), 1<<20+1), headers: tok},
			413, `{"code":"request too large","message":"body of 1048577 bytes is over the limit of 1048576 bytes"}`, nil},
		{"chunked body over the limit", writeReq{target: "/api/v2/write", body: bytes.Repeat([]byte("x"), 1<<20+1), headers: tok, chunked: true},
			413, `{"code":"request too large","message":"body is over the limit of 1048576 bytes"}`, nil},
		{"gzip bomb", writeReq{target: "/api/v2/write", body: bomb, headers: map[string]string{"Authorization": "Token " + f.writer, "Content-Encoding": "gzip"}},
			413, `{"code":"request too large","message":"body is over the limit of 1048576 bytes (after gzip decompression)"}`, nil},

		{"one bad line, the others land",
			writeReq{target: "/api/v2/write?precision=s", body: []byte("air,station=s1 pm25=1 " + unix(-10) + "\n# comment\n\nair,station=s1 pm25= " + unix(-9) + "\nair,station=s2 pm25=2 " + unix(-5) + "\n"), headers: tok},
			400, `{"code":"invalid","message":"partial write: 2 points written, 1 line rejected: line 4:21: field value has unrecognized type (in \"air,station=s1 pm25= ` + unix(-9) + `\")"}`, goodNS},
		{"v1 partial write has the v1 error key",
			writeReq{target: "/write?db=x&precision=s", body: []byte("air pm25=1 " + unix(0) + "\nbad\n"), headers: tok},
			400, `{"code":"invalid","error":"partial write: 1 point written, 1 line rejected: line 2:4: expected tag key or field but found '\\n' instead (in \"bad\")","message":"partial write: 1 point written, 1 line rejected: line 2:4: expected tag key or field but found '\\n' instead (in \"bad\")"}`,
			[]string{"air pm25=1 " + unix(0) + "000000000"}},
		{"every limit, named by line",
			writeReq{target: "/api/v2/write?precision=s", headers: tok, body: []byte(strings.Join([]string{
				"air,station=s1 pm25=1 " + unix(-10), // 1 ok
				"air,a=1,b=2,c=3 pm25=1 " + unix(0),  // 2 three tags
				"  # indented comment",               // 3
				"air a=1,b=2,c=3,d=4 " + unix(0),     // 4 four fields
				"air pm25=1 " + unix(3601),           // 5 future
				"air pm25=1 " + unix(-7305*86400-1),  // 6 past
				"air,station=s2 pm25=2 " + unix(-5),  // 7 ok
				long,                                 // 8 long line
				"air pm25=1 " + unix(3600) + "\r",    // 9 ok: exactly at the limit, CR LF
				"air pm25=NaN " + unix(0),            // 10 not a number
			}, "\n"))},
			400, `{"code":"invalid","message":"partial write: 3 points written, 6 lines rejected: ` +
				`line 2: 3 tags, more than the limit of 2; ` +
				`line 4: 4 fields, more than the limit of 3; ` +
				`line 5: timestamp 2025-01-01T13:00:01Z is more than 1h0m0s in the future; ` +
				`line 6: timestamp 2005-01-01T11:59:59Z is more than 7305d in the past; ` +
				`line 8: 1133 bytes, more than the limit of 1024; ` +
				`line 10:10: field value has unrecognized type (in \"air pm25=NaN ` + unix(0) + `\")"}`,
			append(goodNS, "air pm25=1 "+unix(3600)+"000000000")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.bus.msgs = nil
			rec := f.do(tt.req)
			if rec.Code != tt.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.code, rec.Body)
			}
			if got := compactJSON(t, rec.Body.String()); got != tt.body {
				t.Errorf("body\n got %s\nwant %s", got, tt.body)
			}
			if got := f.bus.lines(); strings.Join(got, "\n") != strings.Join(tt.lines, "\n") {
				t.Errorf("published\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.lines, "\n"))
			}
			for _, m := range f.bus.msgs {
				if !strings.HasPrefix(m.ID, "http-telegraf-") && !strings.HasPrefix(m.ID, "http-ops-") {
					t.Errorf("batch id %q", m.ID)
				}
			}
		})
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// compactJSON sorts keys so that expectations do not depend on map order.
func compactJSON(t *testing.T, s string) string {
	t.Helper()
	if s == "" {
		return ""
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("answer is not JSON: %v: %q", err, s)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestAPI_write_busUnavailable(t *testing.T) {
	f := newWriteFixture(t, WriteLimits{})
	f.bus.err = errors.New("nats: no responders available for request")
	rec := f.do(writeReq{target: "/api/v2/write", body: []byte("air pm25=1"), headers: map[string]string{"Authorization": "Token " + f.writer}})
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "5" {
		t.Fatalf("status %d Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	var e struct{ Code string }
	json.Unmarshal(rec.Body.Bytes(), &e)
	if e.Code != "unavailable" {
		t.Errorf("code %q", e.Code)
	}

	noBus := newTestAPI(t, Options{Store: emptyStore(t), Credentials: f.creds})
	rec = httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/v2/write", strings.NewReader("air pm25=1"))
	req.Header.Set("Authorization", "Token "+f.writer)
	noBus.ServeHTTP(rec, req)
	if rec.Code != 503 {
		t.Errorf("without a bus: %d", rec.Code)
	}
}

// A large body goes out in several batches, each with its own id, split
// between lines, none over chunkPoints.
func TestAPI_write_chunks(t *testing.T) {
	f := newWriteFixture(t, WriteLimits{})
	var body strings.Builder
	const n = 50000
	for i := range n {
		fmt.Fprintf(&body, "air,station=s%05d pm25=%d.5 %d\n", i, i, now.Add(-time.Minute).UnixNano()+int64(i))
	}
	rec := f.do(writeReq{target: "/api/v2/write", body: []byte(body.String()), headers: map[string]string{"Authorization": "Token " + f.writer}})
	if rec.Code != 204 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if len(f.bus.msgs) < 2 {
		t.Fatalf("%d messages, want several", len(f.bus.msgs))
	}
	ids := map[string]bool{}
	for _, m := range f.bus.msgs {
		id := m.ID
		if !strings.HasPrefix(id, "http-telegraf-") || ids[id] {
			t.Errorf("batch id %q: want unique http-telegraf-<nuid>", id)
		}
		ids[id] = true
		if len(m.Points) > chunkPoints {
			t.Errorf("batch of %d points, over %d", len(m.Points), chunkPoints)
		}
	}
	if got := f.bus.lines(); strings.Join(got, "\n")+"\n" != body.String() {
		t.Errorf("published %d lines, want the %d sent, unchanged", len(got), n)
	}
	if v := counterValue(t, f.api, "citysense_api_write_points_total"); v != n {
		t.Errorf("citysense_api_write_points_total = %v, want %d", v, n)
	}
}

func counterValue(t *testing.T, a *API, name string) float64 {
	t.Helper()
	var buf bytes.Buffer
	a.Metrics().WritePrometheus(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

func TestLocate(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		points int
		errs   []int // lines of decode errors
		want   map[int]int
	}{
		{"plain", "a v=1\na v=2\n", 2, nil, map[int]int{0: 1, 1: 2}},
		{"blank, spaces, comments, CRLF", "\n  \n# c\n  # c\r\na v=1\r\n\r\na v=2", 2, nil, map[int]int{0: 5, 1: 7}},
		{"errors skip their lines", "a v=1\nbad\na v=2\n", 2, []int{2}, map[int]int{0: 1, 1: 3}},
		{"newline inside a string: no guess", "a s=\"x\ny\"\na v=2\n", 2, nil, nil},
		{"error on a line that is no entry", "a v=1\n\na v=2\n", 1, []int{2}, nil},
		{"comment with a control byte is an entry", "#\x01\na v=1\n", 1, []int{1}, map[int]int{0: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var de *protocols.DecodeErrors
			if tt.errs != nil {
				de = &protocols.DecodeErrors{}
				for _, l := range tt.errs {
					de.Errs = append(de.Errs, &protocols.LineError{Line: l, Err: errors.New("x")})
				}
			}
			got := locate([]byte(tt.body), tt.points, de)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("locate = %v, want %v", got, tt.want)
			}
		})
	}
}

// When lines cannot be paired with points, a rejected point is named by
// measurement and time.
func TestAPI_write_limitWithoutLine(t *testing.T) {
	f := newWriteFixture(t, WriteLimits{MaxBody: 1 << 20, MaxPast: time.Hour, MaxFuture: time.Hour, MaxTags: 8, MaxFields: 8})
	body := "a s=\"multi\nline\" " + unix(-10) + "\nfuture v=1 " + unix(7200) + "\n"
	rec := f.do(writeReq{target: "/api/v2/write?precision=s", body: []byte(body), headers: map[string]string{"Authorization": "Token " + f.writer}})
	want := `{"code":"invalid","message":"partial write: 1 point written, 1 line rejected: point \"future\" at 2025-01-01T14:00:00Z: timestamp 2025-01-01T14:00:00Z is more than 1h0m0s in the future"}`
	if rec.Code != 400 || compactJSON(t, rec.Body.String()) != want {
		t.Errorf("got %d %s\nwant 400 %s", rec.Code, rec.Body, want)
	}
}

// The Influx v2 wire format, as Telegraf's outputs.influxdb_v2 sends it
// (gzip, token, precision ms), through a real embedded bus, the enrich
// stage, CS_SERIES, the ingest worker and the store: the public API serves back exactly what was written.
func TestAPI_write_throughBusIngestStore(t *testing.T) {
	dir := t.TempDir()
	creds, err := auth.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := creds.AddToken("telegraf", false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Name: "test", StoreDir: dir, Listen: "127.0.0.1:0", Credentials: creds}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	st := emptyStore(t)
	// As in the collector: written batches go to the enrich stage, which
	// publishes CS_SERIES partitions; the store consumes those.
	in, err := ingest.New(b.JetStream(), ingest.Points(st), ingest.Config{Stream: bus.StreamSeries, Durable: "store", TrustWire: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	series, err := ingest.NewSeriesPublisher(b.JetStream(), nil, ingest.SeriesConfig{SubjectPrefix: bus.SubjectSeriesPrefix, Partitions: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ictx, stopIngest := context.WithCancel(ctx)
	ingestDone := make(chan error, 1)
	go func() { ingestDone <- in.Run(ictx) }()
	defer func() { stopIngest(); <-ingestDone }()
	<-in.ConsumerReady()

	srv := httptest.NewServer(New(Options{Store: st, Credentials: creds, Bus: series}, nil))
	defer srv.Close()

	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	ms := func(d time.Duration) int64 { return t0.Add(d).UnixMilli() }
	body := fmt.Sprintf("air,district=d01,station=s0001 pm25=12.5,no2=3i %d\n"+
		"air,station=s0002,district=d02 pm25=7.25 %d\n"+
		"traffic,district=d01,station=s0001 count=42u,open=true,note=\"ok\" %d\n",
		ms(0), ms(time.Second), ms(2*time.Second))
	req, _ := http.NewRequest("POST", srv.URL+"/api/v2/write?org=city&bucket=sensors&precision=ms", bytes.NewReader(gzipped(t, body)))
	req.Header.Set("Authorization", "Token "+secret)
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("status %d", resp.StatusCode)
	}

	// Read back through the public API: one exact answer per series.
	from, to := t0.Unix(), t0.Add(2*time.Second).Unix()
	s1, s2 := `"tags":{"district":"d01","station":"s0001"}`, `"tags":{"district":"d02","station":"s0002"}`
	want := map[string]string{
		"measurement=air&field=pm25": `{"series":[{"measurement":"air","field":"pm25",` + s1 + `,"points":[[` + fmt.Sprint(from) + `,12.5]]},` +
			`{"measurement":"air","field":"pm25",` + s2 + `,"points":[[` + fmt.Sprint(from+1) + `,7.25]]}],"partial":false,"resolution":"raw"}`,
		"measurement=air&field=no2":       `{"series":[{"measurement":"air","field":"no2",` + s1 + `,"points":[[` + fmt.Sprint(from) + `,3]]}],"partial":false,"resolution":"raw"}`,
		"measurement=traffic&field=count": `{"series":[{"measurement":"traffic","field":"count",` + s1 + `,"points":[[` + fmt.Sprint(to) + `,42]]}],"partial":false,"resolution":"raw"}`,
		"measurement=traffic&field=note":  `{"series":[{"measurement":"traffic","field":"note",` + s1 + `,"points":[[` + fmt.Sprint(to) + `,"ok"]]}],"partial":false,"resolution":"raw"}`,
		"measurement=traffic&field=open":  `{"series":[{"measurement":"traffic","field":"open",` + s1 + `,"points":[[` + fmt.Sprint(to) + `,true]]}],"partial":false,"resolution":"raw"}`,
	}
	get := func(q string) string {
		resp, err := http.Get(srv.URL + "/api/v1/series?" + q + fmt.Sprintf("&from=%d&to=%d", from, to))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	// Ingest runs behind the ack: wait for one series, then compare all.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if get("measurement=traffic&field=open") == want["measurement=traffic&field=open"] {
			break
		}
	}
	for q, w := range want {
		if got := get(q); got != w {
			t.Errorf("%s:\n got %s\nwant %s", q, got, w)
		}
	}
}

func TestAPI_ping(t *testing.T) {
	a := newTestAPI(t, Options{Store: emptyStore(t)})
	for _, method := range []string{"GET", "HEAD"} {
		rec := do(a, method, "/ping")
		if rec.Code != 204 || rec.Header().Get("X-Influxdb-Version") == "" {
			t.Errorf("%s /ping = %d %v", method, rec.Code, rec.Header())
		}
	}
}

// A batch rejected wholesale names the first lines and counts the rest.
func TestAPI_write_manyRejected(t *testing.T) {
	f := newWriteFixture(t, WriteLimits{})
	var body strings.Builder
	for range 150 {
		body.WriteString("air pm25=1 " + unix(7200) + "\n")
	}
	rec := f.do(writeReq{target: "/api/v2/write?precision=s", body: []byte(body.String()), headers: map[string]string{"Authorization": "Token " + f.writer}})
	var e struct{ Message string }
	json.Unmarshal(rec.Body.Bytes(), &e)
	if rec.Code != 400 || !strings.HasPrefix(e.Message, "partial write: 0 points written, 150 lines rejected: line 1: timestamp") ||
		!strings.Contains(e.Message, "; line 10: timestamp") || strings.Contains(e.Message, "line 11:") ||
		!strings.HasSuffix(e.Message, "; and 140 more") {
		t.Errorf("got %d %q", rec.Code, e.Message)
	}
	if len(f.bus.msgs) != 0 {
		t.Errorf("%d messages published for a batch with no valid point", len(f.bus.msgs))
	}
}
