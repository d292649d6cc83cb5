package store

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/citysense/citysense/protocols"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "store.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func point(t *testing.T, m string, tags map[string]string, ts int64, fields ...protocols.Field) protocols.Point {
	t.Helper()
	p, err := protocols.NewPoint(m, tags, fields, ts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func f(k string, v protocols.Value) protocols.Field { return protocols.Field{Key: k, Value: v} }

func TestStore_Write_roundTripEveryKind(t *testing.T) {
	tests := []struct {
		name string
		v    protocols.Value
	}{
		{"float", protocols.Float(12.3)},
		{"float negative zero", protocols.Float(math.Copysign(0, -1))},
		{"float tiny", protocols.Float(5e-324)},
		{"float max", protocols.Float(math.MaxFloat64)},
		{"int", protocols.Int(-42)},
		{"int min", protocols.Int(math.MinInt64)},
		{"uint max", protocols.Uint(math.MaxUint64)},
		{"bool true", protocols.Bool(true)},
		{"bool false", protocols.Bool(false)},
		{"string", protocols.String(`hé "quoted", with = and spaces`)},
		{"empty string", protocols.String("")},
	}
	s := openTest(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			field := "v" + string(rune('a'+i))
			ts := int64(1735689600_000000000 + i)
			n, err := s.Write([]protocols.Point{point(t, "kinds", map[string]string{"station": "s1"}, ts, f(field, tt.v))})
			if err != nil || n != 1 {
				t.Fatalf("Write = %d, %v", n, err)
			}
			got, err := s.Select(Selector{Field: field}, ts, ts)
			if err != nil {
				t.Fatal(err)
			}
			want := []Series{{Measurement: "kinds", Field: field, Tags: []protocols.Tag{{Key: "station", Value: "s1"}},
				Samples: []Sample{{Time: ts, Value: tt.v}}}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Select = %+v, want %+v", got, want)
			}
		})
	}
}

func TestStore_Write_idempotentRewrite(t *testing.T) {
	s := openTest(t)
	tags := map[string]string{"station": "s1"}
	first := []protocols.Point{
		point(t, "air", tags, 10, f("pm25", protocols.Float(1))),
		point(t, "air", tags, 20, f("pm25", protocols.Float(2))),
	}
	for range 3 { // a replay of the same batch changes nothing
		if _, err := s.Write(first); err != nil {
			t.Fatal(err)
		}
	}
	// The same series+timestamp with a new value overwrites, not appends.
	if _, err := s.Write([]protocols.Point{point(t, "air", tags, 20, f("pm25", protocols.Float(2.5)))}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Select(Selector{Field: "pm25"}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []Sample{{10, protocols.Float(1)}, {20, protocols.Float(2.5)}}
	if len(got) != 1 || !reflect.DeepEqual(got[0].Samples, want) {
		t.Fatalf("Select = %+v, want one series with %+v", got, want)
	}
}

func TestStore_Select_rangeBounds(t *testing.T) {
	s := openTest(t)
	var pts []protocols.Point
	for _, ts := range []int64{-20, -10, 0, 10, 20, 30} {
		pts = append(pts, point(t, "air", map[string]string{"station": "s1"}, ts, f("pm25", protocols.Int(ts))))
	}
	if n, err := s.Write(pts); err != nil || n != 6 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	tests := []struct {
		name     string
		from, to int64
		want     []int64
	}{
		{"both bounds inclusive", 10, 20, []int64{10, 20}},
		{"single instant", 10, 10, []int64{10}},
		{"between points", 11, 19, nil},
		{"before 1970 sorts before after", -15, 5, []int64{-10, 0}},
		{"everything", math.MinInt64, math.MaxInt64, []int64{-20, -10, 0, 10, 20, 30}},
		{"from after to", 20, 10, nil},
		{"past the end", 31, 100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Select(Selector{Field: "pm25"}, tt.from, tt.to)
			if err != nil {
				t.Fatal(err)
			}
			var times []int64
			for _, sr := range got {
				for _, smp := range sr.Samples {
					times = append(times, smp.Time)
					if smp.Value.IntV() != smp.Time {
						t.Errorf("sample at %d has value %v", smp.Time, smp.Value)
					}
				}
			}
			if !reflect.DeepEqual(times, tt.want) {
				t.Errorf("times = %v, want %v", times, tt.want)
			}
		})
	}
}

func TestStore_Select_filters(t *testing.T) {
	s := openTest(t)
	_, err := s.Write([]protocols.Point{
		point(t, "air", map[string]string{"district": "d01", "station": "s1"}, 1, f("pm25", protocols.Float(1)), f("no2", protocols.Float(9))),
		point(t, "air", map[string]string{"district": "d01", "station": "s2"}, 1, f("pm25", protocols.Float(2))),
		point(t, "air", map[string]string{"district": "d02", "station": "s3"}, 1, f("pm25", protocols.Float(3))),
		point(t, "traffic", map[string]string{"district": "d01", "station": "s1"}, 1, f("count", protocols.Int(7))),
		point(t, "vehicle", map[string]string{"station": "s1"}, 1, f("count", protocols.Int(8))),
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		sel     Selector
		want    []float64 // first sample of each series, in series-key order
		wantErr error
	}{
		{"field only", Selector{Field: "pm25"}, []float64{1, 2, 3}, nil},
		{"tag", Selector{Field: "pm25", Tags: map[string]string{"district": "d01"}}, []float64{1, 2}, nil},
		{"two tags", Selector{Field: "pm25", Tags: map[string]string{"district": "d01", "station": "s2"}}, []float64{2}, nil},
		{"missing tag key", Selector{Field: "pm25", Tags: map[string]string{"owner": "x"}}, nil, nil},
		{"unknown field", Selector{Field: "pm1"}, nil, nil},
		{"ambiguous field", Selector{Field: "count"}, nil, ErrAmbiguousField},
		{"ambiguous even when tags pick one", Selector{Field: "count", Tags: map[string]string{"district": "d01"}}, nil, ErrAmbiguousField},
		{"measurement resolves ambiguity", Selector{Measurement: "vehicle", Field: "count"}, []float64{8}, nil},
		{"point limit", Selector{Field: "pm25", MaxPoints: 2}, nil, ErrTooManyPoints},
		{"point limit exactly met", Selector{Field: "pm25", MaxPoints: 3}, []float64{1, 2, 3}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Select(tt.sel, 0, 10)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Select error = %v, want %v", err, tt.wantErr)
			}
			var vals []float64
			for _, sr := range got {
				v, _ := sr.Samples[0].Value.AsFloat()
				vals = append(vals, v)
			}
			if !reflect.DeepEqual(vals, tt.want) {
				t.Errorf("values = %v, want %v", vals, tt.want)
			}
		})
	}
	_, err = s.Select(Selector{Field: "count"}, 0, 10)
	var ae *AmbiguousFieldError
	if !errors.As(err, &ae) || !reflect.DeepEqual(ae.Measurements, []string{"traffic", "vehicle"}) {
		t.Errorf("ambiguity error = %v, want measurements [traffic vehicle]", err)
	}
}

func TestStore_Stations(t *testing.T) {
	s := openTest(t)
	at := map[string]string{"district": "d01", "station": "s0001"}
	batches := [][]protocols.Point{
		{
			point(t, "station", at, 100, f("lat", protocols.Float(48.2)), f("lon", protocols.Float(16.37))),
			point(t, "air", at, 100, f("pm25", protocols.Float(1))),
			point(t, "noise", map[string]string{"station": "s0002"}, 50, f("laeq", protocols.Float(40))),
			point(t, "air", map[string]string{"site": "nowhere"}, 50, f("pm25", protocols.Float(1))), // no station: not indexed
		},
		{
			point(t, "traffic", at, 300, f("count", protocols.Int(4))),
			// An older position replayed late must not move the station back.
			point(t, "station", at, 10, f("lat", protocols.Float(1)), f("lon", protocols.Float(2))),
		},
	}
	for _, b := range batches {
		if _, err := s.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Stations()
	if err != nil {
		t.Fatal(err)
	}
	want := []Station{
		{ID: "s0001", District: "d01", Measurements: []string{"air", "station", "traffic"}, LastSeen: 300, HasPosition: true, Lat: 48.2, Lon: 16.37},
		{ID: "s0002", Measurements: []string{"noise"}, LastSeen: 50},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Stations =\n%+v\nwant\n%+v", got, want)
	}
}

func TestStore_Write_skipsInvalidPoints(t *testing.T) {
	s := openTest(t)
	good := point(t, "air", nil, 1, f("pm25", protocols.Float(1)))
	bad := protocols.Point{Measurement: "air", Fields: []protocols.Field{f("pm25", protocols.Float(math.NaN()))}, Time: 2}
	n, err := s.Write([]protocols.Point{bad, good})
	if err != nil || n != 1 {
		t.Fatalf("Write = %d, %v; want 1, nil", n, err)
	}
}

func TestStore_Open_reopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]protocols.Point{point(t, "air", map[string]string{"station": "s1"}, 5, f("pm25", protocols.Float(7.5)))}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Select(Selector{Field: "pm25"}, 5, 5)
	if err != nil || len(got) != 1 || got[0].Samples[0].Value.FloatV() != 7.5 {
		t.Fatalf("after reopen Select = %+v, %v", got, err)
	}
	sts, err := s.Stations()
	if err != nil || len(sts) != 1 || sts[0].ID != "s1" {
		t.Fatalf("after reopen Stations = %+v, %v", sts, err)
	}
}

func TestStore_Resolve(t *testing.T) {
	s := openTest(t)
	a := map[string]string{"station": "s1", "district": "d1"}
	b := map[string]string{"station": "s2"}
	_, err := s.Write([]protocols.Point{
		point(t, "air", a, 10, f("pm25", protocols.Float(1)), f("pm10", protocols.Int(2))),
		point(t, "air", b, 10, f("pm25", protocols.Float(3))),
	})
	if err != nil {
		t.Fatal(err)
	}
	refs, err := s.Lookup(Selector{Field: "pm25"})
	if err != nil || len(refs) != 2 {
		t.Fatalf("Lookup = %v, %v", refs, err)
	}
	keys := []SeriesKey{
		{Measurement: "air", Field: "pm25", Tags: refs[1].Tags},
		{Measurement: "air", Field: "pm25", Tags: []protocols.Tag{{Key: "station", Value: "s9"}}}, // unknown station
		{Measurement: "air", Field: "no2", Tags: refs[0].Tags},                                    // unknown field
		{Measurement: "air", Field: "pm25", Tags: refs[0].Tags},
		{Measurement: "air", Field: "pm10", Tags: []protocols.Tag{{Key: "district", Value: "d1"}, {Key: "station", Value: "s1"}}},
	}
	got := s.Resolve(keys)
	if len(got) != len(keys) {
		t.Fatalf("%d refs for %d keys", len(got), len(keys))
	}
	if !reflect.DeepEqual(got[0], refs[1]) || !reflect.DeepEqual(got[3], refs[0]) {
		t.Errorf("Resolve = %+v, want the refs Lookup gave: %+v", got, refs)
	}
	if got[1].Measurement != "" || got[2].Measurement != "" {
		t.Errorf("unknown series resolved: %+v, %+v", got[1], got[2])
	}
	var vals []protocols.Value
	err = s.ReadRaw(context.Background(), got[4:5], 0, 100, func(_ int, smp []Sample) error {
		for _, x := range smp {
			vals = append(vals, x.Value)
		}
		return nil
	})
	if err != nil || len(vals) != 1 || vals[0] != protocols.Int(2) {
		t.Errorf("ReadRaw of a resolved ref = %v, %v; want [2i]", vals, err)
	}
}
