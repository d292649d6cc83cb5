package sta

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/enrich/schema"
	"github.com/citysense/citysense/enrich/units"
	"github.com/citysense/citysense/protocols"
)

// t0 is the first reading of the fixture: 2026-01-01T00:00:00Z.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// fakeRegistry coarsens private stations to a 0.01° grid, as the privacy
// stage of the demo chain does.
type fakeRegistry []enrich.Station

func (r fakeRegistry) All() []enrich.Station { return r }
func (r fakeRegistry) PublicLocation(st enrich.Station) (float64, float64, bool) {
	if !st.Located {
		return 0, 0, false
	}
	if !st.Public {
		return math.Round(st.Lat*100) / 100, math.Round(st.Lon*100) / 100, true
	}
	return st.Lat, st.Lon, true
}

var testRegistry = fakeRegistry{
	{ID: "s0001", Name: "Karlsplatz", Lat: 48.20511, Lon: 16.29957, Located: true, Public: true, District: "d02", Model: "CS-AQ2", Owner: "Demo city", Licence: "CC-BY-4.0", Altitude: 197},
	{ID: "s0002", Name: "Home sensor", Lat: 48.21221, Lon: 16.29924, Located: true, Public: false, District: "d02"},
	{ID: "s0003", Name: "Praterstern", Lat: 48.23791, Lon: 16.39569, Located: true, Public: true, District: "d03"},
}

var testContracts = []schema.Contract{
	{Measurement: "air", Fields: []schema.FieldSpec{
		{Name: "pm10", Type: "float", Unit: "µg/m³", Description: "PM10 mass concentration"},
		{Name: "pm25", Type: "float", Unit: "µg/m³", Description: "PM2.5 mass concentration"},
	}},
	{Measurement: "traffic", Fields: []schema.FieldSpec{{Name: "count", Type: "int", Unit: "vehicles"}}},
}

func point(m string, t int64, tags map[string]string, fields map[string]protocols.Value) protocols.Point {
	p := protocols.Point{Measurement: m, Time: t}
	for k, v := range tags {
		p.Tags = append(p.Tags, protocols.Tag{Key: k, Value: v})
	}
	p.SortTags()
	for k, v := range fields {
		p.Fields = append(p.Fields, protocols.Field{Key: k, Value: v})
	}
	return p
}

func openStore(t testing.TB) *store.Store { return openStoreB(t) }

func openStoreB(t testing.TB) *store.Store {
	t.Helper()
	opts := store.DefaultOptions()
	opts.Now = func() time.Time { return time.Unix(0, t0).Add(24 * time.Hour) }
	st, err := store.OpenDir(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// fixture: 10 Observations in 5 Datastreams of two stations; s0003 is
// registered and has no data.
func fixture(t testing.TB) *store.Store {
	st := openStore(t)
	min := int64(time.Minute)
	var pts []protocols.Point
	for i := int64(0); i < 3; i++ {
		pts = append(pts, point("air", t0+i*min, map[string]string{"station": "s0001", "district": "d02"},
			map[string]protocols.Value{"pm25": protocols.Float(10 + float64(i)), "pm10": protocols.Float(20), "pm25_qc": protocols.Int(0)}))
	}
	for i := int64(0); i < 2; i++ {
		pts = append(pts, point("air", t0+i*min, map[string]string{"station": "s0002", "district": "d02"},
			map[string]protocols.Value{"pm25": protocols.Float(5.5)}))
	}
	pts = append(pts,
		point("noise", t0, map[string]string{"station": "s0001"}, map[string]protocols.Value{"laeq": protocols.Float(60.5)}),
		point("traffic", t0, map[string]string{"station": "s0002"}, map[string]protocols.Value{"count": protocols.Int(7)}),
	)
	if _, err := st.Write(pts); err != nil {
		t.Fatal(err)
	}
	return st
}

// countingStore counts the points ReadRaw hands out.
type countingStore struct {
	*store.Store
	read  atomic.Int64
	calls atomic.Int64
}

func (c *countingStore) ReadRaw(ctx context.Context, refs []store.SeriesRef, from, to int64, fn func(i int, samples []store.Sample) error) error {
	c.calls.Add(1)
	return c.Store.ReadRaw(ctx, refs, from, to, func(i int, s []store.Sample) error {
		c.read.Add(int64(len(s)))
		return fn(i, s)
	})
}

func newHandler(st Store, mod func(*Options)) *Handler {
	opts := Options{Store: st, Registry: testRegistry, Contracts: func() []schema.Contract { return testContracts },
		Units: func() []units.Rule {
			return []units.Rule{{Measurement: "noise", Field: "laeq", From: "B", To: "dB(A)"}}
		},
		Now: func() time.Time { return time.Unix(0, t0).Add(time.Hour) }}
	if mod != nil {
		mod(&opts)
	}
	return New(opts, nil)
}

// get requests target (a path with raw query) and returns the status and
// the decoded body (nil when not JSON).
func get(t testing.TB, h http.Handler, target string, headers ...string) (int, map[string]any, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://example.com"+target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	body, _ := io.ReadAll(w.Result().Body)
	var v map[string]any
	if json.Unmarshal(body, &v) != nil {
		v = nil
	}
	return w.Code, v, string(body)
}

// ids returns the @iot.id of each entity of a collection answer.
func ids(v map[string]any, key string) []string {
	var out []string
	list, _ := v[key].([]any)
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			s, _ := m["@iot.id"].(string)
			out = append(out, s)
		}
	}
	return out
}
