package sim

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

var t0 = time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC) // a Monday

func params(stations int, seed int64) Params {
	return Params{Stations: stations, Seed: seed, Interval: 10 * time.Second, Start: t0}
}

func TestGenerate_deterministic(t *testing.T) {
	for _, tick := range []int{0, 1, 7, 12345} {
		a := Generate(params(20, 1), tick)
		b := Generate(params(20, 1), tick)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("tick %d: two calls differ", tick)
		}
		c := Generate(params(20, 2), tick)
		if reflect.DeepEqual(a, c) {
			t.Fatalf("tick %d: seeds 1 and 2 give the same points", tick)
		}
	}
}

func TestGenerate_shape(t *testing.T) {
	tests := []struct {
		name     string
		stations int
		tick     int
		want     map[string]int // points per measurement
	}{
		{"tick0 one station", 1, 0, map[string]int{"air": 1, "noise": 1, "traffic": 1, "station": 1}},
		{"tick0 seven stations", 7, 0, map[string]int{"air": 7, "noise": 7, "traffic": 3, "station": 7}},
		{"tick1 seven stations", 7, 1, map[string]int{"air": 7, "noise": 7, "traffic": 3}},
		{"tick9 three stations", 3, 9, map[string]int{"air": 3, "noise": 3, "traffic": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := params(tt.stations, 1)
			pts := Generate(p, tt.tick)
			got := map[string]int{}
			wantTime := t0.Add(time.Duration(tt.tick) * p.Interval).UnixNano()
			for i := range pts {
				pt := &pts[i]
				got[pt.Measurement]++
				if err := pt.Validate(); err != nil {
					t.Errorf("invalid point: %v", err)
				}
				if pt.Time != wantTime {
					t.Errorf("%s: time %d, want %d", pt.Measurement, pt.Time, wantTime)
				}
				st, _ := pt.Tag("station")
				d, _ := pt.Tag("district")
				if len(pt.Tags) != 2 || !strings.HasPrefix(st, "s") || len(d) != 3 || d < "d01" || d > "d08" {
					t.Errorf("bad tags %v", pt.Tags)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("points per measurement = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGenerate_trafficEveryThirdStation(t *testing.T) {
	pts := Generate(params(10, 3), 5)
	var got []string
	for i := range pts {
		if pts[i].Measurement == "traffic" {
			st, _ := pts[i].Tag("station")
			got = append(got, st)
			if v, _ := pts[i].Field("count"); v.Kind() != protocols.KindInt {
				t.Errorf("count is %v, want int", v.Kind())
			}
		}
	}
	want := []string{"s0001", "s0004", "s0007", "s0010"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("traffic stations = %v, want %v", got, want)
	}
}

func TestGenerate_stationOnlyAtTickZero(t *testing.T) {
	p := params(5, 1)
	for tick := 0; tick < 50; tick++ {
		n := 0
		for _, pt := range Generate(p, tick) {
			if pt.Measurement == "station" {
				n++
				lat, _ := pt.Field("lat")
				lon, _ := pt.Field("lon")
				st, _ := pt.Tag("station")
				var i int
				for i = 1; StationID(i) != st; i++ {
				}
				wlat, wlon := Position(p.Seed, i)
				if lat.FloatV() != wlat || lon.FloatV() != wlon {
					t.Errorf("%s at %v,%v, want %v,%v", st, lat, lon, wlat, wlon)
				}
			}
		}
		if want := map[bool]int{true: 5, false: 0}[tick == 0]; n != want {
			t.Fatalf("tick %d: %d station points, want %d", tick, n, want)
		}
	}
}

func TestGenerate_ranges(t *testing.T) {
	type bounds struct{ lo, hi float64 }
	want := map[string]bounds{
		"pm25": {2, 80}, "pm10": {2, 160}, "no2": {5, 120}, "temperature": {-5, 35},
		"humidity": {20, 100}, "laeq": {35, 85}, "count": {0, 400},
		"lat": {latMin, latMax}, "lon": {lonMin, lonMax},
	}
	// 10,000 ticks of 7 minutes cover 48 days at every time of day.
	p := Params{Stations: 6, Seed: 42, Interval: 7 * time.Minute, Start: t0}
	seen := map[string]bounds{}
	for tick := 0; tick < 10000; tick++ {
		for _, pt := range Generate(p, tick) {
			pm25 := math.Inf(-1)
			for _, f := range pt.Fields {
				x, _ := f.Value.AsFloat()
				b, ok := want[f.Key]
				if !ok {
					t.Fatalf("unexpected field %q", f.Key)
				}
				if x < b.lo || x > b.hi {
					t.Fatalf("tick %d %s %s=%v outside [%v, %v]", tick, pt.Measurement, f.Key, x, b.lo, b.hi)
				}
				if f.Value.Kind() == protocols.KindFloat && pt.Measurement != "station" && math.Round(x*10) != x*10 {
					t.Fatalf("%s=%v is not rounded to one decimal", f.Key, x)
				}
				switch f.Key {
				case "pm25":
					pm25 = x
				case "pm10":
					if x < pm25 {
						t.Fatalf("tick %d: pm10 %v < pm25 %v", tick, x, pm25)
					}
				}
				s, ok := seen[f.Key]
				if !ok {
					s = bounds{x, x}
				}
				seen[f.Key] = bounds{min(s.lo, x), max(s.hi, x)}
			}
		}
	}
	// The data should use its range, not sit at one value.
	for k, s := range seen {
		b := want[k]
		if k != "lat" && k != "lon" && s.hi-s.lo < (b.hi-b.lo)/5 {
			t.Errorf("%s spans only [%v, %v]", k, s.lo, s.hi)
		}
	}
}

func TestGenerate_dailyCycles(t *testing.T) {
	// Average over 200 stations and 14 days at 03:00 and at 08:00 local time
	// (UTC+1): the rush hour must be dirtier, louder and busier; the afternoon warmer.
	p := Params{Stations: 200, Seed: 7, Interval: time.Hour, Start: t0}
	mean := func(hourUTC int, field string) float64 {
		var sum float64
		var n int
		for day := 0; day < 14; day++ {
			for _, pt := range Generate(p, day*24+hourUTC) {
				if v, ok := pt.Field(field); ok {
					x, _ := v.AsFloat()
					sum += x
					n++
				}
			}
		}
		return sum / float64(n)
	}
	for _, f := range []string{"pm25", "no2", "laeq", "count"} {
		if night, rush := mean(2, f), mean(7, f); rush < night*1.2 {
			t.Errorf("%s: mean at 08:00 = %.1f, at 03:00 = %.1f; want a rush-hour peak", f, rush, night)
		}
	}
	if night, afternoon := mean(2, "temperature"), mean(14, "temperature"); afternoon < night+5 {
		t.Errorf("temperature: 15:00 = %.1f, 03:00 = %.1f; want a warmer afternoon", afternoon, night)
	}
}

func TestDistrict_allUsed(t *testing.T) {
	seen := map[string]bool{}
	for i := 1; i <= 300; i++ {
		lat, lon := Position(1, i)
		if lat < latMin || lat > latMax || lon < lonMin || lon > lonMax {
			t.Fatalf("station %d at %v,%v outside the box", i, lat, lon)
		}
		seen[District(lat, lon)] = true
	}
	if len(seen) != 8 {
		t.Fatalf("districts used: %v, want d01…d08", seen)
	}
}

func TestInput_Init(t *testing.T) {
	tests := []struct {
		name      string
		modify    func(*Input)
		wantPaths []string
	}{
		{"defaults", func(*Input) {}, nil},
		{"start ok", func(s *Input) { s.Start = "2025-01-01T00:00:00+01:00" }, nil},
		{"all wrong", func(s *Input) {
			s.Stations = 0
			s.Interval = confx.Duration(time.Microsecond)
			s.Start = "yesterday"
			s.Ticks = -1
		}, []string{"stations", "interval", "ticks", "start"}},
		{"too many stations", func(s *Input) { s.Stations = MaxStations + 1 }, []string{"stations"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			tt.modify(s)
			err := s.Init(nil)
			var paths []string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var p confx.Problem
					if !errors.As(e, &p) {
						t.Fatalf("error %v is not a confx.Problem", e)
					}
					paths = append(paths, p.Path)
				}
			}
			if !reflect.DeepEqual(paths, tt.wantPaths) {
				t.Fatalf("problems at %v, want %v (err: %v)", paths, tt.wantPaths, err)
			}
		})
	}
}

func TestInput_SampleConfig(t *testing.T) {
	var blocks []struct {
		Type  string `yaml:"type"`
		Input `yaml:",inline"`
	}
	if _, err := confx.Load("sample.yaml", []byte(New().SampleConfig()), &blocks); err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 1 || blocks[0].Type != "sim" {
		t.Fatalf("sample has %d blocks", len(blocks))
	}
	in := &blocks[0].Input
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	def := New()
	if in.Stations != def.Stations || in.Seed != def.Seed || in.Interval != def.Interval || in.Realtime != def.Realtime || in.Ticks != 0 {
		t.Fatalf("sample %+v does not show the defaults %+v", in, def)
	}
}

func TestRegistered(t *testing.T) {
	f, ok := protocols.Lookup("sim")
	if !ok {
		t.Fatal("sim is not registered")
	}
	if _, ok := f().(*Input); !ok {
		t.Fatalf("factory returns %T", f())
	}
}

// recorder is an Accumulator that keeps what it is given.
type recorder struct {
	mu    sync.Mutex
	ticks [][]protocols.Point
}

func (r *recorder) Write(_ context.Context, pts []protocols.Point) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ticks = append(r.ticks, pts)
	return nil
}

func TestInput_Run_finiteFast(t *testing.T) {
	s := New()
	s.Stations, s.Seed, s.Ticks, s.Realtime = 4, 9, 3, false
	s.Interval = confx.Duration(time.Hour) // would take hours in realtime
	s.Start = "2025-03-01T12:00:00Z"
	if err := s.Init(nil); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	if err := s.Run(t.Context(), &rec); err != nil {
		t.Fatal(err)
	}
	p := Params{Stations: 4, Seed: 9, Interval: time.Hour, Start: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	want := [][]protocols.Point{Generate(p, 0), Generate(p, 1), Generate(p, 2)}
	if !reflect.DeepEqual(rec.ticks, want) {
		t.Fatalf("Run delivered %d ticks that differ from Generate(0..2)", len(rec.ticks))
	}
}

func TestInput_Run_realtimeAligned(t *testing.T) {
	s := New()
	s.Stations, s.Ticks = 1, 3
	s.Interval = confx.Duration(20 * time.Millisecond)
	if err := s.Init(nil); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	var rec recorder
	if err := s.Run(t.Context(), &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.ticks) != 3 {
		t.Fatalf("got %d ticks, want 3", len(rec.ticks))
	}
	first := rec.ticks[0][0].Time
	if first%int64(20*time.Millisecond) != 0 || first > began.UnixNano() || first <= began.Add(-20*time.Millisecond).UnixNano() {
		t.Fatalf("tick 0 at %d, want now aligned down to 20ms (began %d)", first, began.UnixNano())
	}
	for i, pts := range rec.ticks {
		if want := first + int64(i)*int64(20*time.Millisecond); pts[0].Time != want {
			t.Fatalf("tick %d at %d, want %d", i, pts[0].Time, want)
		}
	}
	// Tick 2 is due 40ms after tick 0, which is at most 20ms before began.
	if el := time.Since(began); el < 20*time.Millisecond {
		t.Fatalf("realtime run finished after %v; it did not wait", el)
	}
}

func TestInput_Run_stopsOnCancel(t *testing.T) {
	s := New()
	s.Stations = 1
	s.Interval = confx.Duration(time.Hour)
	if err := s.Init(nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var rec recorder
	go func() { done <- s.Run(ctx, &rec) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// flaky refuses the first write, as a full buffer would.
type flaky struct {
	recorder
	failed bool
}

func (f *flaky) Write(ctx context.Context, pts []protocols.Point) error {
	if !f.failed {
		f.failed = true
		return errors.New("buffer full")
	}
	return f.recorder.Write(ctx, pts)
}

func TestInput_Run_retriesRefusedTick(t *testing.T) {
	if testing.Short() {
		t.Skip("waits retryWait")
	}
	s := New()
	s.Stations, s.Ticks, s.Realtime = 2, 2, false
	s.Start = "2025-01-01T00:00:00Z"
	if err := s.Init(nil); err != nil {
		t.Fatal(err)
	}
	var f flaky
	if err := s.Run(t.Context(), &f); err != nil {
		t.Fatal(err)
	}
	p := s.Params(time.Time{})
	if !reflect.DeepEqual(f.ticks, [][]protocols.Point{Generate(p, 0), Generate(p, 1)}) {
		t.Fatal("a refused tick was not offered again")
	}
}

func TestInput_Params_RelativeStart(t *testing.T) {
	in := New()
	in.Start = "-1h"
	if err := in.Init(slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 7, 0, time.UTC)
	if got, want := in.Params(now).Start, time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("start = %v, want %v", got, want)
	}
	for _, bad := range []string{"-", "-0s", "-soon", "yesterday"} {
		in.Start = bad
		if err := in.Init(slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "start") {
			t.Errorf("start %q: err = %v", bad, err)
		}
	}
}
