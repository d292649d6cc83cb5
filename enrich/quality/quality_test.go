package quality

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

func f64(x float64) *float64 { return &x }

func newQuality(t *testing.T, checks ...Check) *Quality {
	t.Helper()
	q := New()
	q.Checks = checks
	if err := q.Init(enrich.Env{Name: "quality"}); err != nil {
		t.Fatal(err)
	}
	return q
}

func reading(station string, sec int64, v float64) protocols.Point {
	fs := []protocols.Field{{Key: "pm25", Value: protocols.Float(v)}}
	p := protocols.Point{Measurement: "air", Fields: fs[:1:1], Time: sec * int64(time.Second)}
	if station != "" {
		p.Tags = []protocols.Tag{{Key: "station", Value: station}}
	}
	return p
}

// run feeds readings one batch at a time and returns each one's pm25_qc.
func run(q *Quality, pts ...protocols.Point) []uint64 {
	out := make([]uint64, len(pts))
	for i := range pts {
		res, _ := q.Enrich(pts[i : i+1])
		out[i] = enrich.Flags(&res[0], "pm25_qc")
	}
	return out
}

func TestQuality_Enrich_Checks(t *testing.T) {
	const (
		R = enrich.FlagRange
		S = enrich.FlagSpike
		F = enrich.FlagFlatline
		O = enrich.FlagStale
	)
	for _, tc := range []struct {
		name  string
		check Check
		in    []protocols.Point
		want  []uint64
	}{
		{"range", Check{Min: f64(0), Max: f64(100)},
			[]protocols.Point{reading("a", 0, -0.1), reading("a", 10, 0), reading("a", 20, 100), reading("a", 30, 100.1)},
			[]uint64{R, 0, 0, R}},
		{"range without a station", Check{Max: f64(100)},
			[]protocols.Point{reading("", 0, 101), reading("", 10, 1)},
			[]uint64{R, 0}},
		{"spike is a rate per second", Check{Spike: 1},
			// +10 in 10 s is 1/s: fine; +11 in 10 s is not; -50 in 100 s is 0.5/s.
			[]protocols.Point{reading("a", 0, 10), reading("a", 10, 20), reading("a", 20, 31), reading("a", 120, -19)},
			[]uint64{0, 0, S, 0}},
		{"out of order readings are not spikes", Check{Spike: 1},
			[]protocols.Point{reading("a", 100, 10), reading("a", 50, 500), reading("a", 110, 15)},
			[]uint64{0, 0, 0}},
		{"flatline by count", Check{Flatline: Flatline{Count: 3}},
			[]protocols.Point{reading("a", 0, 5), reading("a", 10, 5), reading("a", 20, 5), reading("a", 30, 5), reading("a", 40, 6), reading("a", 50, 6)},
			[]uint64{0, 0, F, F, 0, 0}},
		{"flatline by duration", Check{Flatline: Flatline{For: confx.Duration(time.Minute)}},
			[]protocols.Point{reading("a", 0, 5), reading("a", 30, 5), reading("a", 60, 5), reading("a", 61, 7)},
			[]uint64{0, 0, F, 0}},
		{"stale behind the station's newest", Check{Stale: confx.Duration(time.Minute)},
			[]protocols.Point{reading("a", 1000, 1), reading("a", 940, 1), reading("a", 939, 1), reading("b", 0, 1)},
			[]uint64{0, 0, O, 0}},
		{"several at once", Check{Max: f64(50), Spike: 1},
			[]protocols.Point{reading("a", 0, 1), reading("a", 1, 60)},
			[]uint64{0, R | S}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check.Measurement, tc.check.Field = "air", "pm25"
			q := newQuality(t, tc.check)
			got := run(q, tc.in...)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("flags %v, want %v", got, tc.want)
			}
		})
	}
}

func TestQuality_Enrich_StaleAcrossMeasurements(t *testing.T) {
	q := newQuality(t, Check{Measurement: "air", Field: "pm25", Stale: confx.Duration(time.Minute)})
	noise := protocols.Point{Measurement: "noise", Tags: []protocols.Tag{{Key: "station", Value: "a"}},
		Fields: []protocols.Field{{Key: "laeq", Value: protocols.Float(50)}}, Time: int64(time.Hour)}
	out, _ := q.Enrich([]protocols.Point{noise, reading("a", 60, 1)})
	if got := enrich.Flags(&out[1], "pm25_qc"); got != enrich.FlagStale {
		t.Fatalf("pm25_qc = %d, want stale", got)
	}
	if len(out[0].Fields) != 1 {
		t.Fatalf("noise point changed: %+v", out[0])
	}
}

func TestQuality_Init_Problems(t *testing.T) {
	q := New()
	q.Checks = []Check{
		{Measurement: "air", Fields: []string{"pm25"}, Min: f64(5), Max: f64(1)},
		{Measurement: "air", Field: "pm25", Spike: -1, Flatline: Flatline{Count: 1}},
		{Fields: nil},
	}
	err := q.Init(enrich.Env{})
	for _, w := range []string{"checks[0].min: min 5 is above max 1", "checks[1].fields: air.pm25 is checked twice",
		"checks[1].spike: must not be negative", "checks[1].flatline.count: want 0 (off) or at least 2",
		"checks[2].measurement: must not be empty", "checks[2].fields: name at least one field"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in\n%v", w, err)
		}
	}
}

// TestQuality_Enrich_Concurrent runs batches of several stations from
// several goroutines; -race checks the state locking, and each station's
// flatline count must come out exact.
func TestQuality_Enrich_Concurrent(t *testing.T) {
	q := newQuality(t, Check{Measurement: "air", Field: "pm25", Flatline: Flatline{Count: 10}})
	const workers, readings = 4, 100
	var wg sync.WaitGroup
	flagged := make([]int, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("s%d", w)
			for i := 0; i < readings; i++ {
				out, _ := q.Enrich([]protocols.Point{reading(id, int64(i), 7), reading("shared", int64(i), float64(i))})
				if enrich.Flags(&out[0], "pm25_qc") == enrich.FlagFlatline {
					flagged[w]++
				}
			}
		}()
	}
	wg.Wait()
	for w, n := range flagged {
		if n != readings-9 {
			t.Errorf("worker %d: %d flatline flags, want %d", w, n, readings-9)
		}
	}
}
