package query

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.st.Close()
		os.RemoveAll(sharedDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// shared is the fixture of the tests that only read: building it is most
// of their time.
var (
	shared     *fixture
	sharedOnce sync.Once
	sharedDir  string
)

func sharedFixture(t *testing.T) *fixture {
	t.Helper()
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "query-test-")
		if err != nil {
			t.Fatal(err)
		}
		sharedDir = dir
		shared = buildFixture(t, dir)
	})
	if shared == nil {
		t.Fatal("shared fixture failed")
	}
	return shared
}

var (
	t0     = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	params = sim.Params{Stations: 6, Seed: 9, Interval: time.Minute, Start: t0}
)

// fixture is a store holding two and a half days of a small simulated
// city, the first two days rolled up, and every point written, kept for
// brute-force answers.
type fixture struct {
	st  *store.Store
	eng *Engine
	pts []protocols.Point

	// byField is every written value of a field, last write per series and
	// time, built on first use.
	mu      sync.Mutex
	byField map[string]map[string]*written
}

type written struct {
	p    *protocols.Point // for measurement and tags
	vals map[int64]float64
}

func (f *fixture) field(name string) map[string]*written {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byField == nil {
		f.byField = map[string]map[string]*written{}
	}
	if m := f.byField[name]; m != nil {
		return m
	}
	m := map[string]*written{}
	for i := range f.pts {
		p := &f.pts[i]
		v, ok := p.Field(name)
		x, isNum := v.AsFloat()
		if !ok || !isNum {
			continue
		}
		k := p.SeriesKey(name)
		if m[k] == nil {
			m[k] = &written{p: p, vals: map[int64]float64{}}
		}
		m[k].vals[p.Time] = x
	}
	f.byField[name] = m
	return m
}

func buildFixture(t *testing.T, dir string) *fixture {
	t.Helper()
	opts := store.DefaultOptions()
	opts.Retention = store.Retention{}
	now := t0.Add(3 * 24 * time.Hour)
	opts.Now = func() time.Time { return now }
	st, err := store.OpenDir(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, eng: &Engine{Source: st}}
	add := func(pts []protocols.Point) {
		f.pts = append(f.pts, pts...)
		if _, err := st.Append(pts, nil); err != nil {
			t.Fatal(err)
		}
	}
	for tick := range 2 * 1440 {
		add(sim.Generate(params, tick))
	}
	// A late rewrite into a rolled-up day, and a duplicate of a point.
	late := sim.Generate(params, 100)
	for i := range late {
		for j := range late[i].Fields {
			if v, ok := late[i].Fields[j].Value.AsFloat(); ok && late[i].Fields[j].Value.Kind() == protocols.KindFloat {
				late[i].Fields[j].Value = protocols.Float(v + 1000)
			}
		}
	}
	if err := st.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	add(late)
	add(sim.Generate(params, 101))
	if err := st.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Half a day more that stays in the head.
	for tick := 2 * 1440; tick < 2*1440+720; tick++ {
		add(sim.Generate(params, tick))
	}
	return f
}

// expect computes the answer by brute force from every point written.
func (f *fixture) expect(req Request) []Series {
	lo, hi := floorTo(req.From, int64(req.Step)), floorTo(req.To, int64(req.Step))+int64(req.Step)
	latest := map[string]map[int64]float64{} // series key → time → value
	labels := map[string]store.SeriesRef{}
	for k, w := range f.field(req.Field) {
		p := w.p
		if req.Measurement != "" && p.Measurement != req.Measurement {
			continue
		}
		match := true
		for _, m := range req.Matchers {
			tv, _ := p.Tag(m.Name)
			match = match && m.Matches(tv)
		}
		if !match {
			continue
		}
		for t, x := range w.vals {
			if t < lo || t >= hi {
				continue
			}
			if latest[k] == nil {
				latest[k] = map[int64]float64{}
				labels[k] = store.SeriesRef{Measurement: p.Measurement, Field: req.Field, Tags: p.Tags}
			}
			latest[k][t] = x
		}
	}
	groups := map[string]*Series{}
	vals := map[string]map[int64][]float64{}
	times := map[string]map[int64][]int64{}
	keys := map[string]map[int64][]string{}
	for k, pts := range latest {
		ref := labels[k]
		gk, tags := k, ref.Tags
		if len(req.GroupBy) > 0 {
			tags = nil
			gk = ref.Measurement
			for _, g := range req.GroupBy {
				gk += "\x00" + ref.Tag(g)
				if v := ref.Tag(g); v != "" {
					tags = append(tags, protocols.Tag{Key: g, Value: v})
				}
			}
		}
		if groups[gk] == nil {
			groups[gk] = &Series{Measurement: ref.Measurement, Field: ref.Field, Tags: tags}
			vals[gk] = map[int64][]float64{}
			times[gk] = map[int64][]int64{}
			keys[gk] = map[int64][]string{}
		}
		for t, x := range pts {
			b := floorTo(t, int64(req.Step))
			vals[gk][b] = append(vals[gk][b], x)
			times[gk][b] = append(times[gk][b], t)
			keys[gk][b] = append(keys[gk][b], k)
		}
	}
	var gks []string
	for gk := range groups {
		gks = append(gks, gk)
	}
	slices.Sort(gks)
	var out []Series
	for _, gk := range gks {
		s := groups[gk]
		var bs []int64
		for b := range vals[gk] {
			bs = append(bs, b)
		}
		slices.Sort(bs)
		for _, b := range bs {
			s.Points = append(s.Points, Point{Time: b, Value: bruteAgg(req.Agg, vals[gk][b], times[gk][b], keys[gk][b])})
		}
		out = append(out, *s)
	}
	return out
}

// bruteAgg aggregates a bucket's values; keys name each value's series, for
// ties of first and last between series.
func bruteAgg(agg Agg, vals []float64, times []int64, keys []string) protocols.Value {
	n := float64(len(vals))
	sum, mn, mx := 0.0, math.Inf(1), math.Inf(-1)
	fi, li := 0, 0
	for i, v := range vals {
		sum += v
		mn, mx = math.Min(mn, v), math.Max(mx, v)
		if times[i] < times[fi] || times[i] == times[fi] && keys[i] < keys[fi] {
			fi = i
		}
		if times[i] > times[li] || times[i] == times[li] && keys[i] > keys[li] {
			li = i
		}
	}
	switch agg {
	case AggCount:
		return protocols.Int(int64(len(vals)))
	case AggSum:
		return protocols.Float(sum)
	case AggMin:
		return protocols.Float(mn)
	case AggMax:
		return protocols.Float(mx)
	case AggFirst:
		return protocols.Float(vals[fi])
	case AggLast:
		return protocols.Float(vals[li])
	case AggP50, AggP95:
		s := slices.Clone(vals)
		slices.Sort(s)
		q := 0.5
		if agg == AggP95 {
			q = 0.95
		}
		r := q * (n - 1)
		lo, hi := math.Floor(r), math.Ceil(r)
		return protocols.Float(s[int(lo)] + (s[int(hi)]-s[int(lo)])*(r-lo))
	}
	return protocols.Float(sum / n)
}

func seriesClose(a, b []Series) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d series, want %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Measurement != b[i].Measurement || fmt.Sprint(a[i].Tags) != fmt.Sprint(b[i].Tags) {
			return fmt.Sprintf("series %d is %s %v, want %s %v", i, a[i].Measurement, a[i].Tags, b[i].Measurement, b[i].Tags)
		}
		if len(a[i].Points) != len(b[i].Points) {
			return fmt.Sprintf("series %v: %d points, want %d", a[i].Tags, len(a[i].Points), len(b[i].Points))
		}
		for j, p := range a[i].Points {
			q := b[i].Points[j]
			x, _ := p.Value.AsFloat()
			y, _ := q.Value.AsFloat()
			if p.Time != q.Time || p.Value.Kind() != q.Value.Kind() || math.Abs(x-y) > 1e-9*math.Max(1, math.Abs(y)) {
				return fmt.Sprintf("series %v point %d: %d %v, want %d %v", a[i].Tags, j, p.Time, p.Value, q.Time, q.Value)
			}
		}
	}
	return ""
}

// TestEngine_Series_matchesBruteForce runs queries of every aggregation at
// steps that plan raw, 1-minute and 1-hour reads, over ranges that cross
// rolled-up days, a late rewrite and points only in the head, with and
// without grouping, and compares each with the answer computed from every
// point written.
func TestEngine_Series_matchesBruteForce(t *testing.T) {
	f := sharedFixture(t)
	h := int64(time.Hour)
	from, to := t0.UnixNano()+90*int64(time.Minute)+7, t0.UnixNano()+60*h
	d1 := sim.District(sim.Position(params.Seed, 1))
	tests := []struct {
		name  string
		req   Request
		res   Resolution
		skipQ bool // percentiles are the same request at raw resolution
	}{
		{"one station hourly", Request{Measurement: "air", Field: "pm25", Matchers: []store.Matcher{store.MustMatcher("station", store.MatchEqual, "s0001")}, Step: time.Hour}, ResHour, false},
		{"all stations daily", Request{Field: "no2", Step: 24 * time.Hour}, ResHour, false},
		{"by district 6h", Request{Field: "pm25", Step: 6 * time.Hour, GroupBy: []string{"district"}}, ResHour, false},
		{"regex stations 5m", Request{Field: "laeq", Matchers: []store.Matcher{store.MustMatcher("station", store.MatchRegexp, "s000[1-3]")}, Step: 5 * time.Minute}, ResMinute, false},
		{"not one district 15m", Request{Field: "temperature", Matchers: []store.Matcher{store.MustMatcher("district", store.MatchNotEqual, d1)}, Step: 15 * time.Minute}, ResMinute, false},
		{"odd step 90s", Request{Field: "humidity", Matchers: []store.Matcher{store.MustMatcher("station", store.MatchNotRegexp, "s000[2-6]")}, Step: 90 * time.Second}, ResRaw, false},
		{"integers hourly", Request{Field: "count", Step: time.Hour, GroupBy: []string{"district"}}, ResHour, false},
	}
	for _, tt := range tests {
		for _, agg := range Aggs {
			t.Run(tt.name+"/"+string(agg), func(t *testing.T) {
				req := tt.req
				req.From, req.To, req.Agg = from, to, agg
				got, err := f.eng.Series(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				wantRes := tt.res
				if _, q := agg.quantile(); q {
					wantRes = ResRaw
				}
				if got.Resolution != wantRes {
					t.Errorf("resolution %s, want %s", got.Resolution, wantRes)
				}
				if diff := seriesClose(got.Series, f.expect(req)); diff != "" {
					t.Error(diff)
				}
			})
		}
	}
}

func TestEngine_Series_raw(t *testing.T) {
	f := sharedFixture(t)
	req := Request{Measurement: "air", Field: "pm25", Matchers: []store.Matcher{store.MustMatcher("station", store.MatchRegexp, "s000[12]")},
		From: t0.UnixNano() + 99*int64(time.Minute), To: t0.UnixNano() + 102*int64(time.Minute)}
	got, err := f.eng.Series(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Series) != 2 || got.Resolution != ResRaw {
		t.Fatalf("got %d series at %s, want 2 raw", len(got.Series), got.Resolution)
	}
	for _, s := range got.Series {
		var times []int64
		for _, p := range s.Points {
			times = append(times, (p.Time-t0.UnixNano())/int64(time.Minute))
		}
		// The late rewrite of minute 100 wins.
		if !slices.Equal(times, []int64{99, 100, 101, 102}) || s.Points[1].Value.FloatV() < 1000 || s.Points[0].Value.FloatV() >= 1000 {
			t.Errorf("%v: points %v", s.Tags, s.Points)
		}
	}
}

func TestEngine_Latest(t *testing.T) {
	f := sharedFixture(t)
	last := t0.Add((2*1440 + 719) * time.Minute)
	tests := []struct {
		name   string
		req    LatestRequest
		series int
		at     time.Time
	}{
		{"now, head", LatestRequest{Field: "pm25", At: last.Add(10 * time.Minute).UnixNano()}, 6, last},
		{"in the past, on disk", LatestRequest{Field: "pm25", At: t0.Add(30*time.Hour + 30*time.Second).UnixNano()}, 6, t0.Add(30 * time.Hour)},
		{"window too short", LatestRequest{Field: "pm25", At: last.Add(2 * time.Hour).UnixNano(), Window: time.Hour}, 0, time.Time{}},
		{"one station", LatestRequest{Field: "pm25", At: last.UnixNano(), Matchers: []store.Matcher{store.MustMatcher("station", store.MatchEqual, "s0003")}}, 1, last},
		{"traffic counters only", LatestRequest{Field: "count", At: last.UnixNano()}, 2, last},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.eng.Latest(context.Background(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Series) != tt.series {
				t.Fatalf("%d series, want %d", len(got.Series), tt.series)
			}
			for i, s := range got.Series {
				if len(s.Points) != 1 || s.Points[0].Time != tt.at.UnixNano() {
					t.Errorf("series %v: %v, want one point at %s", s.Tags, s.Points, tt.at)
				}
				if i == 0 {
					continue
				}
				prev := protocols.Point{Measurement: got.Series[i-1].Measurement, Tags: got.Series[i-1].Tags}
				this := protocols.Point{Measurement: s.Measurement, Tags: s.Tags}
				if strings.Compare(prev.SeriesKey(s.Field), this.SeriesKey(s.Field)) >= 0 {
					t.Errorf("series out of order: %v before %v", got.Series[i-1].Tags, s.Tags)
				}
			}
		})
	}
}

func TestEngine_Series_errors(t *testing.T) {
	f := sharedFixture(t)
	eng := &Engine{Source: f.st, MaxSeries: 4, MaxPoints: 500, MaxScan: 3000}
	from, to := t0.UnixNano(), t0.Add(24*time.Hour).UnixNano()
	one := []store.Matcher{store.MustMatcher("station", store.MatchEqual, "s0001")}
	tests := []struct {
		name string
		req  Request
		want error
	}{
		{"no field", Request{From: from, To: to}, ErrBadRequest},
		{"agg without step", Request{Field: "pm25", From: from, To: to, Agg: AggMax, Matchers: one}, ErrBadRequest},
		{"group without step", Request{Field: "pm25", From: from, To: to, GroupBy: []string{"district"}, Matchers: one}, ErrBadRequest},
		{"unknown agg", Request{Field: "pm25", From: from, To: to, Step: time.Hour, Agg: "median", Matchers: one}, ErrBadRequest},
		{"from after to", Request{Field: "pm25", From: to, To: from, Step: time.Hour}, ErrBadRequest},
		{"tiny step", Request{Field: "pm25", From: from, To: to, Step: time.Microsecond, Matchers: one}, ErrBadRequest},
		{"too many series", Request{Field: "pm25", From: from, To: to, Step: time.Hour}, ErrTooManySeries},
		{"too many buckets", Request{Field: "pm25", From: from, To: to, Step: time.Minute, Matchers: one}, ErrTooManyPoints},
		{"too many raw points", Request{Field: "pm25", From: from, To: to, Matchers: one}, ErrTooManyPoints},
		{"too much to scan", Request{Field: "pm25", From: from, To: to, Step: 24 * time.Hour, Agg: AggP95, GroupBy: []string{"district"},
			Matchers: []store.Matcher{store.MustMatcher("station", store.MatchRegexp, "s000[1-3]")}}, ErrTooManyPoints},
		{"unambiguous field", Request{Field: "count", From: from, To: to, Step: time.Hour}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := eng.Series(context.Background(), tt.req)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
	st, err := store.OpenDir(t.TempDir(), store.Options{Window: 2 * time.Hour, Grace: time.Minute, IdleFlush: time.Second,
		MaxHold: 3 * time.Hour, FlushInterval: time.Second, MaxHeadPoints: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, m := range []string{"traffic", "vehicle"} {
		if _, err := st.Append([]protocols.Point{{Measurement: m, Tags: []protocols.Tag{{Key: "station", Value: "x"}},
			Fields: []protocols.Field{{Key: "count", Value: protocols.Int(1)}}, Time: from}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	_, err = (&Engine{Source: st}).Series(context.Background(), Request{Field: "count", From: from, To: to, Step: time.Hour})
	var amb *store.AmbiguousFieldError
	if !errors.As(err, &amb) || !slices.Equal(amb.Measurements, []string{"traffic", "vehicle"}) {
		t.Errorf("error %v, want the field to be ambiguous between traffic and vehicle", err)
	}
}

func TestParseAgg(t *testing.T) {
	for _, a := range Aggs {
		if got, err := ParseAgg(string(a)); err != nil || got != a {
			t.Errorf("ParseAgg(%q) = %q, %v", a, got, err)
		}
	}
	if _, err := ParseAgg("avg"); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "p95") {
		t.Errorf("ParseAgg(avg) = %v, want a bad request naming the choices", err)
	}
}

// Paging through raw points with any page size yields the one-shot answer
// exactly: every point once, in series-key then time order.
func TestEngine_RawPage_matchesSeries(t *testing.T) {
	f := sharedFixture(t)
	ctx := context.Background()
	req := Request{Measurement: "air", Field: "pm25", From: t0.UnixNano(), To: t0.Add(30 * time.Hour).UnixNano()}
	whole, err := f.eng.Series(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	type pt struct {
		key string
		t   int64
		v   protocols.Value
	}
	flatten := func(res Result, into []pt) []pt {
		for _, s := range res.Series {
			ref := store.SeriesRef{Measurement: s.Measurement, Field: s.Field, Tags: s.Tags}
			for _, p := range s.Points {
				into = append(into, pt{ref.Key(), p.Time, p.Value})
			}
		}
		return into
	}
	want := flatten(whole, nil)
	if len(want) < 1000 {
		t.Fatalf("fixture too small: %d points", len(want))
	}
	for _, limit := range []int{1, 7, 1799, 1800, len(want) - 1, len(want), len(want) + 1} {
		var got []pt
		var after *Cursor
		pages := 0
		for {
			res, next, err := f.eng.RawPage(ctx, req, after, limit)
			if err != nil {
				t.Fatalf("limit %d page %d: %v", limit, pages, err)
			}
			n := len(got)
			got = flatten(res, got)
			if len(got)-n > limit {
				t.Fatalf("limit %d: a page of %d points", limit, len(got)-n)
			}
			pages++
			if next == nil {
				break
			}
			if pages > len(want)+2 {
				t.Fatalf("limit %d: no end after %d pages", limit, pages)
			}
			after = next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: %d points in %d pages, want the %d of one answer, in order", limit, len(got), pages, len(want))
		}
	}
	if _, _, err := f.eng.RawPage(ctx, Request{Field: "pm25", Step: time.Hour, From: 0, To: 1}, nil, 10); !errors.Is(err, ErrBadRequest) {
		t.Errorf("a page of an aggregation: %v, want ErrBadRequest", err)
	}
	if _, _, err := f.eng.RawPage(ctx, req, nil, 0); !errors.Is(err, ErrBadRequest) {
		t.Errorf("limit 0: %v, want ErrBadRequest", err)
	}
}

// Released answers' point slices are reused: every query after a Release
// still answers exactly what a fresh engine would, and Release empties the
// answer it was called on.
func TestResult_Release(t *testing.T) {
	f := sharedFixture(t)
	h := int64(time.Hour)
	from, to := t0.UnixNano(), t0.UnixNano()+60*h
	reused := 0
	var prev *Point
	for round := range 3 {
		for _, st := range []string{"s0001", "s0002", "s0003"} {
			for _, agg := range []Agg{AggMean, AggMax, AggCount} {
				req := Request{Measurement: "air", Field: "pm25", Matchers: []store.Matcher{store.MustMatcher("station", store.MatchEqual, st)},
					From: from, To: to, Step: time.Hour, Agg: agg}
				got, err := f.eng.Series(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				if diff := seriesClose(got.Series, f.expect(req)); diff != "" {
					t.Fatalf("round %d, %s %s: %s", round, st, agg, diff)
				}
				if len(got.Series) != 1 || len(got.Series[0].Points) < 50 {
					t.Fatalf("round %d: %d series, want one of 60 hours", round, len(got.Series))
				}
				if first := &got.Series[0].Points[0]; first == prev {
					reused++
				} else {
					prev = first
				}
				got.Release()
				if got.Series != nil {
					t.Fatalf("Release left %d series", len(got.Series))
				}
			}
		}
	}
	if reused == 0 {
		t.Error("no point slice ever came back to the pool")
	}
}
