package store

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
)

// TestStore_Append_doneWhenWindowWritten checks the contract ingest's
// acknowledgements rely on: done runs only once the window holding the
// points is on disk, which for a live window is when newer data has passed
// its end plus the grace period.
func TestStore_Append_doneWhenWindowWritten(t *testing.T) {
	w0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC) // a window start
	var clock atomic.Int64
	clock.Store(w0.Add(time.Hour).UnixNano())
	opts := testOptions(w0)
	opts.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	s, err := OpenDir(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	done := make(chan error, 2)
	pt := func(ts time.Time, v float64) []protocols.Point {
		return []protocols.Point{point(t, "air", map[string]string{"station": "s1"}, ts.UnixNano(), f("pm25", protocols.Float(v)))}
	}
	if n, err := s.Append(pt(w0.Add(30*time.Minute), 1.5), func(err error) { done <- err }); err != nil || n != 1 {
		t.Fatalf("Append = %d, %v", n, err)
	}
	// Readable at once, from the head.
	got, err := s.Select(Selector{Field: "pm25"}, 0, maxTime)
	if err != nil || len(got) != 1 || len(got[0].Samples) != 1 {
		t.Fatalf("Select = %v, %v", got, err)
	}
	// Many flush ticks later, still held: nothing says the window is over,
	// not even data just past its end, within the grace period.
	clock.Store(w0.Add(2*time.Hour + 5*time.Minute).UnixNano())
	if _, err := s.Append(pt(w0.Add(2*time.Hour+4*time.Minute), 2), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("done(%v) before the window was written", err)
	case <-time.After(100 * time.Millisecond):
	}
	// Data past the window's end plus grace closes it.
	clock.Store(w0.Add(2*time.Hour + 12*time.Minute).UnixNano())
	if _, err := s.Append(pt(w0.Add(2*time.Hour+11*time.Minute), 2.5), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("done(%v)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("done never ran after the window became due")
	}
	// The second point's window is open: its done runs at Flush.
	select {
	case err := <-done:
		t.Fatalf("second done(%v) while its window is open", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("done(%v)", err)
		}
	default:
		t.Fatal("Flush returned before the second done ran")
	}
}

// A point with no valid field value, or one refused by retention, is
// acknowledged at once: there is nothing to wait for.
func TestStore_Append_doneAtOnceForNothing(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	opts := testOptions(now)
	opts.Retention = Retention{Raw: 2 * day}
	s, err := OpenDir(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	called := false
	old := point(t, "air", nil, now.Add(-10*day).UnixNano(), f("pm25", protocols.Float(1)))
	n, err := s.Append([]protocols.Point{old}, func(err error) { called = err == nil })
	if err != nil || n != 0 || !called {
		t.Errorf("Append of an expired point = %d, %v, done called %v; want 0, nil, true", n, err, called)
	}
}

// Past MaxHeadPoints the oldest windows are written early; their later
// points merge into the written blocks.
func TestStore_Append_headLimitWritesEarly(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	opts := testOptions(base.Add(-time.Hour)) // the wall clock closes nothing
	opts.MaxHeadPoints = 50
	s, err := OpenDir(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var held atomic.Int64
	m := model{}
	for i := range 40 {
		if i == 20 {
			// Half way, let the writer catch up, so that the rest are
			// late points for windows already written.
			waitUntil(t, "the head to shrink under its limit", func() bool {
				s.head.mu.Lock()
				defer s.head.mu.Unlock()
				return s.head.points <= opts.MaxHeadPoints
			})
		}
		var pts []protocols.Point
		for j := range 5 {
			// Five windows, written to in turn.
			ts := base.Add(time.Duration(j)*2*time.Hour + time.Duration(i)*time.Minute)
			pts = append(pts, point(t, "air", map[string]string{"station": "s1"}, ts.UnixNano(), f("pm25", protocols.Float(float64(i*10+j)/10))))
		}
		m.write(pts)
		held.Add(1)
		if _, err := s.Append(pts, func(error) { held.Add(-1) }); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the head to shrink under its limit", func() bool {
		s.head.mu.Lock()
		defer s.head.mu.Unlock()
		return s.head.points <= opts.MaxHeadPoints
	})
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := held.Load(); n != 0 {
		t.Errorf("%d calls still unacknowledged after Flush", n)
	}
	got, err := s.Select(Selector{Field: "pm25"}, minTime, maxTime)
	if err != nil || len(got) != 1 {
		t.Fatalf("Select = %v, %v", got, err)
	}
	key := "air,station=s1 pm25"
	if want := m.samples(key, minTime, maxTime); !samplesEqual(got[0].Samples, want) {
		t.Errorf("read back %s", firstDiff(got[0].Samples, want))
	}
	if got := s.m.lateRewrites.Get(); got == 0 {
		t.Error("no block was rewritten, so nothing was written early")
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStore_Lookup_matchers(t *testing.T) {
	s := openTest(t)
	var pts []protocols.Point
	for _, st := range []struct{ station, district, owner string }{
		{"s1", "d01", ""}, {"s2", "d01", "city"}, {"s3", "d02", "city"}, {"s10", "d02", "uni"},
	} {
		tags := map[string]string{"station": st.station, "district": st.district}
		if st.owner != "" {
			tags["owner"] = st.owner
		}
		pts = append(pts, point(t, "air", tags, 1, f("pm25", protocols.Float(1))))
	}
	if _, err := s.Write(pts); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ms   []Matcher
		want []string
	}{
		{"equal", []Matcher{MustMatcher("district", MatchEqual, "d01")}, []string{"s1", "s2"}},
		{"not equal matches missing tags", []Matcher{MustMatcher("owner", MatchNotEqual, "city")}, []string{"s1", "s10"}},
		{"empty equal selects the tag's absence", []Matcher{MustMatcher("owner", MatchEqual, "")}, []string{"s1"}},
		{"regexp is anchored", []Matcher{MustMatcher("station", MatchRegexp, "s1")}, []string{"s1"}},
		{"regexp alternatives", []Matcher{MustMatcher("station", MatchRegexp, "s1.*|s3")}, []string{"s1", "s3", "s10"}},
		{"not regexp", []Matcher{MustMatcher("station", MatchNotRegexp, "s[12]")}, []string{"s3", "s10"}},
		{"all must match", []Matcher{MustMatcher("district", MatchEqual, "d02"), MustMatcher("owner", MatchEqual, "city")}, []string{"s3"}},
		{"nothing", []Matcher{MustMatcher("station", MatchEqual, "s9")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refs, err := s.Lookup(Selector{Field: "pm25", Matchers: tt.ms})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range refs {
				got = append(got, r.Tag("station"))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("stations %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := s.Lookup(Selector{Field: "pm25", MaxSeries: 3}); !errors.Is(err, ErrTooManySeries) {
		t.Errorf("Lookup over MaxSeries = %v, want ErrTooManySeries", err)
	}
	if _, err := NewMatcher("station", MatchRegexp, "("); err == nil {
		t.Error("a bad regexp made a matcher")
	}
}
