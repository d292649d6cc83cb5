package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/enrich/schema"
	"github.com/citysense/citysense/protocols"
)

// cityContracts are the demo city's numeric fields (configs/demo).
func cityContracts() any {
	f := func(name, unit string) schema.FieldSpec {
		return schema.FieldSpec{Name: name, Type: "float", Unit: unit}
	}
	return []schema.Contract{
		{Measurement: "air", Fields: []schema.FieldSpec{f("humidity", "%"), f("no2", "µg/m³"), f("pm10", "µg/m³"), f("pm25", "µg/m³"), f("temperature", "°C")}},
		{Measurement: "noise", Fields: []schema.FieldSpec{f("laeq", "dB(A)")}},
		{Measurement: "traffic", Fields: []schema.FieldSpec{{Name: "count", Type: "int"}}},
	}
}

// bigCity is a store and registry of n stations, each with one current
// reading of every demo field and an AQI point, as the enrichment leaves
// them.
func bigCity(tb testing.TB, n int) (*store.Store, fakeRegistry) {
	tb.Helper()
	st, err := store.Open(filepath.Join(tb.TempDir(), "store.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	reg := make(fakeRegistry, n)
	cats := []string{"Good", "Moderate", "Unhealthy for Sensitive Groups"}
	eu := []string{"Good", "Fair", "Moderate"}
	var pts []protocols.Point
	for i := range n {
		id := fmt.Sprintf("s%05d", i+1)
		d := fmt.Sprintf("d%02d", i%23+1)
		lat, lon := 48.1+float64(i%100)*0.0021+float64(i%7)*0.00013, 16.2+float64(i/100)*0.0031+float64(i%11)*0.00017
		reg[i] = enrich.Station{ID: id, Name: fmt.Sprintf("Street %d / corner %d", i%400, i%37), Lat: lat, Lon: lon, Located: true,
			District: d, Model: "CS-AQ2 (Sensirion SPS30, Alphasense NO2-B43F)", Owner: "City environment department",
			Licence: "CC-BY-4.0", Altitude: float64(180 + i%60), Public: i%50 != 0}
		tags := []protocols.Tag{{Key: "district", Value: d}, {Key: "station", Value: id}}
		ts := sec(-int64(60 + i%300))
		v := func(base float64, k int) protocols.Value {
			return protocols.Float(float64(int((base+float64((i*k)%97)/3)*10)) / 10)
		}
		pts = append(pts,
			protocols.Point{Measurement: "air", Tags: tags, Time: ts, Fields: []protocols.Field{
				{Key: "humidity", Value: v(40, 3)}, {Key: "no2", Value: v(20, 5)}, {Key: "pm10", Value: v(15, 7)},
				{Key: "pm25", Value: v(8, 11)}, {Key: "temperature", Value: v(5, 13)}}},
			protocols.Point{Measurement: "noise", Tags: tags, Time: ts, Fields: []protocols.Field{{Key: "laeq", Value: v(45, 17)}}},
			protocols.Point{Measurement: "aqi", Tags: tags, Time: ts, Fields: []protocols.Field{
				{Key: "eu_eaqi", Value: protocols.Int(int64(1 + i%3))}, {Key: "eu_eaqi_category", Value: protocols.String(eu[i%3])},
				{Key: "us_epa", Value: protocols.Int(int64(20 + i%120))}, {Key: "us_epa_category", Value: protocols.String(cats[min((20+i%120)/51, 2)])}}},
		)
		if i%3 == 0 {
			pts = append(pts, protocols.Point{Measurement: "traffic", Tags: tags, Time: ts, Fields: []protocols.Field{{Key: "count", Value: protocols.Int(int64(i % 300))}}})
		}
	}
	if _, err := st.Write(pts); err != nil {
		tb.Fatal(err)
	}
	return st, reg
}

// TestAPI_stations_10k checks the budget: the station list of
// 10,000 stations, with metadata and current values, is at most 1.5 MB
// gzipped, and every station is in it with its AQI.
func TestAPI_stations_10k(t *testing.T) {
	st, reg := bigCity(t, 10_000)
	a := newTestAPI(t, Options{Store: st, Registry: reg, Contracts: cityContracts})
	req := httptest.NewRequest("GET", "http://collector/api/v1/stations", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	gz := rec.Body.Len()
	zr, err := gzip.NewReader(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var fc struct {
		Features []struct {
			Properties struct {
				ID     string             `json:"id"`
				AQI    *int               `json:"aqi"`
				Latest map[string]float64 `json:"latest"`
			} `json:"properties"`
		} `json:"features"`
	}
	if err := json.NewDecoder(zr).Decode(&fc); err != nil {
		t.Fatal(err)
	}
	if len(fc.Features) != 10_000 {
		t.Fatalf("%d features", len(fc.Features))
	}
	for i, f := range fc.Features {
		if f.Properties.AQI == nil || *f.Properties.AQI != 20+i%120 || len(f.Properties.Latest) < 6 {
			t.Fatalf("feature %d: %+v", i, f.Properties)
		}
	}
	t.Logf("10,000 stations: %d bytes gzipped", gz)
	if gz > 1_500_000 {
		t.Errorf("%d bytes gzipped, over the 1.5 MB budget", gz)
	}
}

// BenchmarkAPI_stations10k measures building the 10,000-station list
// (the work done once per snapshot) and reports its gzipped size.
func BenchmarkAPI_stations10k(b *testing.B) {
	st, reg := bigCity(b, 10_000)
	a := newTestAPI(b, Options{Store: st, Registry: reg, Contracts: cityContracts})
	var snap *snapshot
	for b.Loop() {
		a.snap = nil
		var err error
		if snap, err = a.stationSnapshot(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(snap.gz)), "gzip-bytes")
	b.ReportMetric(float64(len(snap.body)), "json-bytes")
}

// filledStore opens a store that keeps everything (on the tests' clock
// when clocked, so that its last day is open) and writes the points of
// gen into it, 5,000 at a time, then flushes.
func filledStore(b *testing.B, clocked bool, gen iter.Seq[protocols.Point]) *store.Store {
	opts := store.DefaultOptions()
	opts.Retention = store.Retention{}
	if clocked {
		opts.Now = func() time.Time { return now }
	}
	st, err := store.OpenDir(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	var pts []protocols.Point
	write := func() {
		if _, err := st.Write(pts); err != nil {
			b.Fatal(err)
		}
		pts = pts[:0]
	}
	for p := range gen {
		if pts = append(pts, p); len(pts) == 5000 {
			write()
		}
	}
	write()
	if err := st.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	return st
}

// BenchmarkAPI_seriesYearHourly is the one-year request: a year of
// hourly means of one station's pm25 (written every 10 minutes), through
// the HTTP handler. It reports the median latency.
func BenchmarkAPI_seriesYearHourly(b *testing.B) {
	end := now.Add(-time.Hour).Truncate(time.Hour)
	start := end.AddDate(-1, 0, 0)
	tags := []protocols.Tag{{Key: "district", Value: "d01"}, {Key: "station", Value: "s0001"}}
	st := filledStore(b, false, func(yield func(protocols.Point) bool) {
		for ts, k := start, 0; ts.Before(end); ts, k = ts.Add(10*time.Minute), k+1 {
			if !yield(protocols.Point{Measurement: "air", Tags: tags, Time: ts.UnixNano(),
				Fields: []protocols.Field{{Key: "pm25", Value: protocols.Float(float64(k%200) / 4)}}}) {
				return
			}
		}
	})
	a := newTestAPI(b, Options{Store: st})
	target := fmt.Sprintf("/api/v1/series?station=s0001&field=pm25&step=1h&agg=mean&from=%d&to=%d", start.Unix(), end.Unix())
	rec := do(a, "GET", target)
	var ans struct {
		Series []struct {
			Points [][2]float64 `json:"points"`
		} `json:"series"`
		Resolution string `json:"resolution"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || len(ans.Series) != 1 {
		b.Fatalf("%d %.200s: %v", rec.Code, rec.Body, err)
	}
	if n := len(ans.Series[0].Points); n < 8700 {
		b.Fatalf("%d hourly points, want a year's", n)
	}
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		rec := do(a, "GET", target)
		lat = append(lat, time.Since(t0))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(len(ans.Series[0].Points)), "points")
	b.Logf("resolution %s, %d points, %d bytes", ans.Resolution, len(ans.Series[0].Points), rec.Body.Len())
}

// BenchmarkAPI_seriesQ1 is make bench's Q1 in process: the hourly mean of
// one field of one station over three days of one-minute readings (one
// decimal, as sensors send them), the last day still open, through the
// whole handler. The first request fills the rollup cache, as the bench's
// warm-up requests do.
func BenchmarkAPI_seriesQ1(b *testing.B) {
	end := now.Truncate(time.Minute)
	start := end.Add(-3 * 24 * time.Hour).Add(time.Minute)
	const stations = 20
	st := filledStore(b, true, func(yield func(protocols.Point) bool) {
		for ts, k := start, 0; !ts.After(end); ts, k = ts.Add(time.Minute), k+1 {
			for s := range stations {
				tags := []protocols.Tag{{Key: "district", Value: fmt.Sprintf("d%02d", s%5)}, {Key: "station", Value: fmt.Sprintf("s%04d", s+1)}}
				v := float64((k*7+s*13)%400)/10 + 5 // one decimal
				if !yield(protocols.Point{Measurement: "air", Tags: tags, Time: ts.UnixNano(),
					Fields: []protocols.Field{{Key: "pm25", Value: protocols.Float(v)}}}) {
					return
				}
			}
		}
	})
	a := newTestAPI(b, Options{Store: st})
	target := fmt.Sprintf("/api/v1/series?measurement=air&field=pm25&station=s0001&step=1h&agg=mean&from=%d&to=%d", start.Unix(), end.Unix())
	rec := do(a, "GET", target)
	var ans struct {
		Series []struct {
			Points [][2]float64 `json:"points"`
		} `json:"series"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || len(ans.Series) != 1 {
		b.Fatalf("%d %.200s: %v", rec.Code, rec.Body, err)
	}
	if n := len(ans.Series[0].Points); n != 73 {
		b.Fatalf("%d hourly points, want 73 (72 hours and the start's partial one)", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		rec := do(a, "GET", target)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
	b.ReportMetric(float64(rec.Body.Len()), "body-bytes")
}
