package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/citysense/citysense/collector/internal/query"
	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/protocols"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

const (
	numParts   = 8
	numStation = 40
	minutes    = 3 * 60
)

var (
	t0     = time.Date(2026, 5, 4, 0, 0, 0, 0, time.UTC)
	secret = []byte("test cluster secret")
)

// partitionOf is FNV-1a over measurement and tags, as the ring does
// (without its finaliser, which does not matter here).
func partitionOf(m string, tags []protocols.Tag) int {
	h := fnv.New64a()
	h.Write([]byte(m))
	for _, t := range tags {
		h.Write([]byte{0})
		h.Write([]byte(t.Key))
		h.Write([]byte{0})
		h.Write([]byte(t.Value))
	}
	return int(h.Sum64() % numParts)
}

// owners of partition p, in candidate order: nodes p%3 and (p+1)%3. With
// n1 (0) as self: n2 and n3 both down leave partitions 1, 4 and 7 with
// no owner.
func owners(p int) []int { return []int{p % 3, (p + 1) % 3} }

var nodeNames = []string{"n1", "n2", "n3"}

// testView is a fixed assignment that keeps listing stopped nodes, as
// membership does until it notices: the fan-out must find out by itself.
type testView struct{ nodes []Node }

func (v *testView) Self() string    { return "n1" }
func (v *testView) Partitions() int { return numParts }
func (v *testView) Candidates(p int) []Node {
	var out []Node
	for _, i := range owners(p) {
		out = append(out, v.nodes[i])
	}
	return out
}

// cluster is the reference store holding everything and three nodes
// holding their partitions' series; n2 and n3 are served over httptest.
type cluster struct {
	ref   *store.Store
	nodes [3]*store.Store
	srv   [3]*httptest.Server // [0] is nil: n1 is asked in-process
	view  *testView
	pts   []protocols.Point
	src   *Source
	// cut, when above zero, makes the node's answers break off after
	// that many body bytes, as when it dies mid-answer.
	cut [3]atomic.Int64
}

// cutWriter drops the connection once limit body bytes were written.
type cutWriter struct {
	http.ResponseWriter
	limit int64
}

func (w *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) <= w.limit {
		w.limit -= int64(len(p))
		return w.ResponseWriter.Write(p)
	}
	n, _ := w.ResponseWriter.Write(p[:w.limit])
	w.limit = 0
	w.ResponseWriter.(http.Flusher).Flush()
	if conn, _, err := w.ResponseWriter.(http.Hijacker).Hijack(); err == nil {
		conn.Close()
	}
	return n, errors.New("cut")
}

func (w *cutWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

func openStore(t testing.TB) *store.Store {
	t.Helper()
	opts := store.DefaultOptions()
	opts.Now = func() time.Time { return t0.Add(5 * time.Hour) }
	opts.BlockCacheBytes = 1 << 20
	s, err := store.OpenDir(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dataset is 40 stations in 5 districts, one reading a minute for three
// hours: pm25 and pm10 floats, particles an int. The floats are quarters,
// so that sums are exact in any order: the engine adds the series of a
// group in the order the nodes answer, and the comparison is exact.
func dataset() []protocols.Point {
	var pts []protocols.Point
	for m := range minutes {
		for s := range numStation {
			tags := []protocols.Tag{{Key: "district", Value: fmt.Sprintf("d%d", s%5)}, {Key: "station", Value: fmt.Sprintf("s%03d", s)}}
			x := (s*7 + m*13) % 400
			pts = append(pts, protocols.Point{Measurement: "air", Tags: tags, Time: t0.Add(time.Duration(m) * time.Minute).UnixNano(),
				Fields: []protocols.Field{
					{Key: "pm25", Value: protocols.Float(float64(x) / 4)},
					{Key: "pm10", Value: protocols.Float(float64(x+s) / 2)},
					{Key: "particles", Value: protocols.Int(int64(x*100 - 5000))},
				}})
		}
	}
	return pts
}

func newCluster(t testing.TB) *cluster {
	c := &cluster{ref: openStore(t), pts: dataset(), view: &testView{nodes: make([]Node, 3)}}
	if _, err := c.ref.Write(c.pts); err != nil {
		t.Fatal(err)
	}
	for i := range c.nodes {
		c.nodes[i] = openStore(t)
		var mine []protocols.Point
		for _, p := range c.pts {
			if slices.Contains(owners(partitionOf(p.Measurement, p.Tags)), i) {
				mine = append(mine, p)
			}
		}
		if i == 2 {
			// A stale copy of a partition n3 does not own: it must never
			// show through n3.
			for d := range 50 {
				tags := []protocols.Tag{{Key: "district", Value: "d1"}, {Key: "sensor", Value: fmt.Sprintf("stale%d", d)}}
				if !slices.Contains(owners(partitionOf("air", tags)), 2) {
					mine = append(mine, protocols.Point{Measurement: "air", Tags: tags, Time: t0.UnixNano(),
						Fields: []protocols.Field{{Key: "pm25", Value: protocols.Float(999)}}})
					break
				}
			}
		}
		if _, err := c.nodes[i].Write(mine); err != nil {
			t.Fatal(err)
		}
		c.view.nodes[i] = Node{Name: nodeNames[i]}
		if i > 0 {
			h, cut := NewHandler(c.options(i)), &c.cut[i]
			c.srv[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n := cut.Load(); n > 0 {
					w = &cutWriter{ResponseWriter: w, limit: n}
				}
				h.ServeHTTP(w, r)
			}))
			t.Cleanup(c.srv[i].Close)
			c.view.nodes[i].API = c.srv[i].URL
		}
	}
	o := c.options(0)
	o.Client = DefaultClient()
	t.Cleanup(o.Client.CloseIdleConnections)
	c.src = NewSource(o)
	return c
}

func (c *cluster) options(i int) Options {
	return Options{Local: c.nodes[i], View: c.view, PartitionOf: partitionOf, Secret: secret}
}

// filtered is the reference without the series of some partitions.
type filtered struct {
	*store.Store
	lost map[int]bool
}

func (f *filtered) Lookup(sel store.Selector) ([]store.SeriesRef, error) {
	refs, err := f.Store.Lookup(sel)
	return slices.DeleteFunc(refs, func(r store.SeriesRef) bool { return f.lost[partitionOf(r.Measurement, r.Tags)] }), err
}

func mustMatcher(name string, op store.MatchOp, v string) []store.Matcher {
	return []store.Matcher{store.MustMatcher(name, op, v)}
}

// compare runs the same queries through want and got and reports every
// difference; got's answers must have Partial = partial.
func compare(t *testing.T, want, got *query.Engine, partial bool) {
	t.Helper()
	ctx := context.Background()
	from, to := t0.UnixNano(), t0.Add(minutes*time.Minute).UnixNano()
	series := []struct {
		name string
		req  query.Request
	}{
		{"10m mean", query.Request{Field: "pm25", From: from, To: to, Step: 10 * time.Minute, Agg: query.AggMean}},
		{"1h max", query.Request{Measurement: "air", Field: "pm10", From: from, To: to, Step: time.Hour, Agg: query.AggMax}},
		{"30m count by district", query.Request{Field: "particles", From: from, To: to, Step: 30 * time.Minute, Agg: query.AggCount, GroupBy: []string{"district"}}},
		{"1h p95 by district", query.Request{Field: "pm25", From: from, To: to, Step: time.Hour, Agg: query.AggP95, GroupBy: []string{"district"}}},
		{"1h mean by district, ints", query.Request{Field: "particles", From: from, To: to, Step: time.Hour, Agg: query.AggMean, GroupBy: []string{"district"}}},
		{"raw, two districts", query.Request{Field: "pm10", From: from + int64(time.Hour), To: to, Matchers: mustMatcher("district", store.MatchRegexp, "d[12]")}},
	}
	for _, q := range series {
		w, err := want.Series(ctx, q.req)
		if err != nil {
			t.Fatalf("%s: reference: %v", q.name, err)
		}
		g, err := got.Series(ctx, q.req)
		if err != nil {
			t.Fatalf("%s: fan-out: %v", q.name, err)
		}
		if len(w.Series) == 0 {
			t.Fatalf("%s: reference answer is empty", q.name)
		}
		if g.Partial != partial {
			t.Errorf("%s: Partial = %v, want %v", q.name, g.Partial, partial)
		}
		w.Partial = partial
		if !reflect.DeepEqual(w, g) {
			t.Errorf("%s: answers differ:\n%s", q.name, diff(w, g))
		}
	}

	lreq := query.LatestRequest{Field: "pm10", At: to - int64(30*time.Second), Window: 2 * time.Hour}
	w, err := want.Latest(ctx, lreq)
	if err != nil {
		t.Fatal(err)
	}
	g, err := got.Latest(ctx, lreq)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Series) == 0 || g.Partial != partial {
		t.Errorf("latest: %d series, Partial = %v (want %v)", len(w.Series), g.Partial, partial)
	}
	w.Partial = partial
	if !reflect.DeepEqual(w, g) {
		t.Errorf("latest: answers differ:\n%s", diff(w, g))
	}

	// Paging: every page the same, cursors included.
	preq := query.Request{Field: "pm25", From: from, To: from + int64(20*time.Minute), Matchers: mustMatcher("district", store.MatchNotEqual, "d3")}
	var wc, gc *query.Cursor
	pages, points := 0, 0
	for {
		wp, wn, err := want.RawPage(ctx, preq, wc, 37)
		if err != nil {
			t.Fatal(err)
		}
		gp, gn, err := got.RawPage(ctx, preq, gc, 37)
		if err != nil {
			t.Fatal(err)
		}
		if gp.Partial != partial {
			t.Errorf("page %d: Partial = %v, want %v", pages, gp.Partial, partial)
		}
		wp.Partial = partial
		if !reflect.DeepEqual(wp, gp) || !reflect.DeepEqual(wn, gn) {
			t.Fatalf("page %d differs (cursor %+v vs %+v):\n%s", pages, wn, gn, diff(wp, gp))
		}
		for _, s := range gp.Series {
			points += len(s.Points)
		}
		pages++
		if wn == nil {
			break
		}
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		wc, gc = wn, gn
	}
	if pages < 10 || points == 0 {
		t.Errorf("paging walked %d pages, %d points: want a real walk", pages, points)
	}
}

func diff(a, b query.Result) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "partial %v/%v, resolution %s/%s, %d/%d series\n", a.Partial, b.Partial, a.Resolution, b.Resolution, len(a.Series), len(b.Series))
	for i := range max(len(a.Series), len(b.Series)) {
		var x, y query.Series
		if i < len(a.Series) {
			x = a.Series[i]
		}
		if i < len(b.Series) {
			y = b.Series[i]
		}
		if !reflect.DeepEqual(x, y) {
			fmt.Fprintf(&sb, "  series %d: %s %v %d points vs %s %v %d points\n", i, x.Field, x.Tags, len(x.Points), y.Field, y.Tags, len(y.Points))
			for k := range min(len(x.Points), len(y.Points)) {
				if x.Points[k] != y.Points[k] {
					fmt.Fprintf(&sb, "    point %d: %v vs %v\n", k, x.Points[k], y.Points[k])
					break
				}
			}
			if sb.Len() > 2000 {
				break
			}
		}
	}
	return sb.String()
}

func TestSource_matchesOneStore(t *testing.T) {
	c := newCluster(t)
	ref := &query.Engine{Source: c.ref}
	fan := &query.Engine{Source: c.src}

	t.Run("all nodes up", func(t *testing.T) {
		compare(t, ref, fan, false)
		if n := c.src.retries.Get(); n != 0 {
			t.Errorf("%d retries with every node up", n)
		}
		stations, err := c.src.Stations()
		wantSt, _ := c.ref.Stations()
		if err != nil || !reflect.DeepEqual(stations, wantSt) || len(wantSt) != numStation {
			t.Errorf("Stations = %d, %v; want the reference's %d", len(stations), err, len(wantSt))
		}
		groups, err := c.src.Groups()
		wantG, _ := c.ref.Groups()
		if err != nil || !reflect.DeepEqual(groups, wantG) {
			t.Errorf("Groups = %v, %v; want %v", groups, err, wantG)
		}
		// The stale copy on n3 holds the only pm25 series without a
		// station tag: filtered out, it never shows.
		refs, err := c.src.Lookup(store.Selector{Field: "pm25", Matchers: mustMatcher("station", store.MatchEqual, "")})
		if err != nil || len(refs) != 0 {
			t.Errorf("stale series leaked: %v, %v", refs, err)
		}
		all, err := c.src.Lookup(store.Selector{Field: "pm25"})
		if err != nil || len(all) != numStation {
			t.Errorf("Lookup pm25 = %d series, %v; want %d", len(all), err, numStation)
		}
		if _, err := c.src.Lookup(store.Selector{Field: "pm25", MaxSeries: numStation - 1}); !errors.Is(err, store.ErrTooManySeries) {
			t.Errorf("Lookup over MaxSeries: %v, want ErrTooManySeries", err)
		}
	})

	t.Run("n2 dies mid-answer", func(t *testing.T) {
		// n2's answers break off after 3 KB: the series it delivered
		// in part must not come twice when n3 answers them again.
		c.cut[1].Store(3 << 10)
		defer c.cut[1].Store(0)
		compare(t, ref, fan, false)
		if n := c.src.retries.Get(); n == 0 {
			t.Error("no retries counted")
		}
	})

	t.Run("n2 down", func(t *testing.T) {
		before := c.src.retries.Get()
		c.srv[1].Close()
		compare(t, ref, fan, false)
		if n := c.src.retries.Get(); n == before {
			t.Error("no retries counted with n2 down")
		}
		if n := c.src.partial.Get(); n != 0 {
			t.Errorf("%d partial answers with one node down", n)
		}
		var buf bytes.Buffer
		c.src.Metrics().WritePrometheus(&buf)
		if !strings.Contains(buf.String(), `citysense_fanout_remote_requests_total{node="n2",outcome="failed"}`) {
			t.Errorf("no failed calls to n2 in the metrics:\n%s", buf.String())
		}
		if _, err := c.src.Stations(); err != nil {
			t.Errorf("Stations with n2 down: %v", err)
		}
	})

	t.Run("n2 and n3 down", func(t *testing.T) {
		c.srv[2].Close()
		lost := map[int]bool{}
		for p := range numParts {
			if !slices.Contains(owners(p), 0) {
				lost[p] = true
			}
		}
		if len(lost) == 0 || len(lost) == numParts {
			t.Fatalf("lost partitions %v: the test needs some", lost)
		}
		compare(t, &query.Engine{Source: &filtered{Store: c.ref, lost: lost}}, fan, true)
		if n := c.src.partial.Get(); n == 0 {
			t.Error("no partial answers counted")
		}
	})
}

func TestHandler_auth(t *testing.T) {
	c := newCluster(t)
	body := `{"partitions":[0],"field":"pm25"}`
	tests := []struct {
		name, auth, body string
		want             int
		msg              string
	}{
		{"no token", "", body, http.StatusUnauthorized, "unauthorized"},
		{"wrong token", "Bearer " + token([]byte("another secret")), body, http.StatusUnauthorized, "unauthorized"},
		{"right token", "Bearer " + token(secret), body, http.StatusOK, ""},
		{"bad partition", "Bearer " + token(secret), `{"partitions":[99],"field":"pm25"}`, http.StatusBadRequest, "partition 99"},
		{"bad json", "Bearer " + token(secret), `{"partitions":[0],`, http.StatusBadRequest, "bad request body"},
		{"unknown key", "Bearer " + token(secret), `{"partitions":[0],"feld":"pm25"}`, http.StatusBadRequest, "unknown field"},
		{"bad operator", "Bearer " + token(secret), `{"partitions":[0],"field":"pm25","matchers":[{"name":"a","op":"<","value":"b"}]}`, http.StatusBadRequest, "unknown operator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, c.srv[1].URL+Prefix+"lookup", strings.NewReader(tt.body))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			msg, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want || !strings.Contains(string(msg), tt.msg) {
				t.Errorf("%d %q, want %d with %q", resp.StatusCode, msg, tt.want, tt.msg)
			}
		})
	}
	// A source with the wrong secret: n2 and n3 refuse it, so only n1's
	// partitions answer, marked partial.
	o := c.options(0)
	o.Secret = []byte("wrong")
	o.Client = DefaultClient()
	defer o.Client.CloseIdleConnections()
	res, err := (&query.Engine{Source: NewSource(o)}).Series(context.Background(), query.Request{Field: "pm25", From: t0.UnixNano(), To: t0.Add(time.Hour).UnixNano()})
	if err != nil || !res.Partial {
		t.Errorf("wrong secret: Partial = %v, %v; want a partial answer", res.Partial, err)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestHandOff(t *testing.T) {
	c := newCluster(t)
	const p = 3 // owned by n1 and n2: exported by n2
	if !slices.Contains(owners(p), 1) {
		t.Fatal("partition not on n2")
	}
	before := t0.Add(2*time.Hour + 30*time.Second).UnixNano()
	want := map[string]protocols.Value{}
	for _, pt := range c.pts {
		if partitionOf(pt.Measurement, pt.Tags) != p || pt.Time >= before {
			continue
		}
		for _, f := range pt.Fields {
			want[fmt.Sprintf("%s@%d", pt.SeriesKey(f.Key), pt.Time)] = f.Value
		}
	}
	if len(want) == 0 {
		t.Fatal("partition is empty")
	}
	dst := openStore(t)
	var calls []int64
	o := c.options(0)
	o.Client = DefaultClient()
	defer o.Client.CloseIdleConnections()
	n, err := HandOff(context.Background(), o, c.view.nodes[1], p, before, dst, func(pts int64) { calls = append(calls, pts) })
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(want)) || len(calls) == 0 || calls[len(calls)-1] != n {
		t.Errorf("HandOff = %d points, progress %v; want %d", n, calls, len(want))
	}
	got := map[string]protocols.Value{}
	groups, err := dst.Groups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		refs, err := dst.Lookup(store.Selector{Measurement: g.Measurement, Field: g.Field})
		if err != nil {
			t.Fatal(err)
		}
		err = dst.ReadRaw(context.Background(), refs, 0, 1<<62, func(i int, smp []store.Sample) error {
			for _, s := range smp {
				got[fmt.Sprintf("%s@%d", refs[i].Key(), s.Time)] = s.Value
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("hand-off store holds %d values, want %d (equal: %v)", len(got), len(want), maps.Equal(got, want))
	}

	if _, err := HandOff(context.Background(), o, c.view.nodes[1], 99, before, dst, nil); err == nil || !strings.Contains(err.Error(), "partition") {
		t.Errorf("HandOff of partition 99: %v, want a refusal naming the partition", err)
	}
}

// body encodes a valid answer with every frame kind.
func body(t *testing.T) []byte {
	var buf bytes.Buffer
	fw := newFrameWriter(&buf)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fw.measurements([]string{"air", "noise"}))
	must(fw.ref("air", "pm25", []protocols.Tag{{Key: "station", Value: "s1"}}))
	must(fw.samples(0, []store.Sample{
		{Time: -5, Value: protocols.Float(1.5)}, {Time: 60e9, Value: protocols.Int(-3)}, {Time: 120e9, Value: protocols.Uint(1 << 63)},
		{Time: 180e9, Value: protocols.Bool(true)}, {Time: 181e9, Value: protocols.String("hé, \"x\"")},
	}))
	must(fw.buckets(3, []store.Bucket{{Start: 3600e9, Count: 2, Sum: 3, Min: 1, Max: 2, First: 1, Last: 2, FirstTime: 3601e9, LastTime: 3700e9}}))
	must(fw.latest(1, store.Sample{Time: 7, Value: protocols.Float(-0.25)}))
	must(fw.station(store.Station{ID: "s1", District: "d1", Measurements: []string{"air"}, LastSeen: 9, HasPosition: true, Lat: 52.5, Lon: 13.4}))
	must(fw.group(store.Group{Measurement: "air", Field: "pm25"}))
	must(fw.end())
	return buf.Bytes()
}

// decodeAll reads a body the way the Source does, every payload decoded.
func decodeAll(b []byte) (int, error) {
	fr := newFrameReader(bytes.NewReader(b))
	frames := 0
	var smp []store.Sample
	var bs []store.Bucket
	for {
		typ, p, err := fr.next()
		if err == io.EOF {
			return frames, nil
		}
		if err != nil {
			return frames, err
		}
		switch typ {
		case frameMeasurements:
			_, err = decodeMeasurements(p)
		case frameRef:
			_, err = decodeRef(p)
		case frameSamples:
			_, smp, err = decodeSamples(p, smp)
		case frameBuckets:
			_, bs, err = decodeBuckets(p, bs)
		case frameLatest:
			_, _, err = decodeLatest(p)
		case frameStation:
			_, err = decodeStation(p)
		case frameGroup:
			_, err = decodeGroup(p)
		}
		if err != nil {
			return frames, err
		}
		frames++
	}
}

func TestFrames_roundTrip(t *testing.T) {
	b := body(t)
	fr := newFrameReader(bytes.NewReader(b))
	var got []any
	for {
		typ, p, err := fr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case frameSamples:
			i, s, err := decodeSamples(p, nil)
			got = append(got, i, s, err)
		case frameBuckets:
			i, s, err := decodeBuckets(p, nil)
			got = append(got, i, s, err)
		case frameStation:
			s, err := decodeStation(p)
			got = append(got, s, err)
		}
	}
	want := []any{
		0, []store.Sample{{Time: -5, Value: protocols.Float(1.5)}, {Time: 60e9, Value: protocols.Int(-3)}, {Time: 120e9, Value: protocols.Uint(1 << 63)},
			{Time: 180e9, Value: protocols.Bool(true)}, {Time: 181e9, Value: protocols.String("hé, \"x\"")}}, nil,
		3, []store.Bucket{{Start: 3600e9, Count: 2, Sum: 3, Min: 1, Max: 2, First: 1, Last: 2, FirstTime: 3601e9, LastTime: 3700e9}}, nil,
		store.Station{ID: "s1", District: "d1", Measurements: []string{"air"}, LastSeen: 9, HasPosition: true, Lat: 52.5, Lon: 13.4}, nil,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%v\nwant\n%v", got, want)
	}
}

func TestFrames_truncatedAndGarbage(t *testing.T) {
	b := body(t)
	if n, err := decodeAll(b); err != nil || n != 7 {
		t.Fatalf("valid body: %d frames, %v", n, err)
	}
	// Every truncation is an error, and never a panic.
	for i := range len(b) {
		if _, err := decodeAll(b[:i]); err == nil {
			t.Fatalf("body cut at %d of %d: no error", i, len(b))
		} else if i < len(b)-3 && !errors.Is(err, errTruncated) {
			// Cut inside a frame or between frames: truncation. (A cut in
			// the end frame's payload may read as a short payload.)
			if !strings.Contains(err.Error(), "truncated") && !strings.Contains(err.Error(), "short") {
				t.Errorf("cut at %d: %v, want a truncation error", i, err)
			}
		}
	}
	cases := map[string][]byte{
		"html":          []byte("<html>502 Bad Gateway</html>"),
		"empty":         nil,
		"huge frame":    append([]byte(magic+"s"), 0xff, 0xff, 0xff, 0xff, 0x7f),
		"unknown frame": append([]byte(magic+"Q"), 0),
		"bad end count": append([]byte(magic+"z"), 1, 5),
		"huge count":    append([]byte(magic+"s"), 3, 0, 0xff, 0x7f),
		"bad kind":      append([]byte(magic+"l"), 3, 0, 0, 9),
		"bad bool":      append([]byte(magic+"l"), 4, 0, 0, byte(protocols.KindBool), 7),
		"extra bytes":   append([]byte(magic+"g"), 4, 0, 0, 1, 2),
		"error frame":   append([]byte(magic+"e"), 4, 1, 2, 'n', 'o'),
	}
	for name, c := range cases {
		if _, err := decodeAll(c); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// Flipped bytes anywhere: an error or a decode, never a panic.
	for i := len(magic); i < len(b); i++ {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			c := bytes.Clone(b)
			c[i] ^= x
			decodeAll(c)
		}
	}
}
