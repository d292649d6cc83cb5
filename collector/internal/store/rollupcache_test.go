package store

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
)

// TestStore_rollupCache reads hours twice over rolled-up days and an open
// day: the second read comes from the rollup cache and matches the model;
// a late point in a rolled-up day changes the file's generation, so the
// next read misses, reads the file and includes the point.
func TestStore_rollupCache(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	g := &gen{rng: rand.New(rand.NewPCG(3, 9)), base: base, span: int64(3 * day), times: map[string][]int64{}}
	now := time.Unix(0, base).Add(5 * day)
	s, err := OpenDir(t.TempDir(), testOptions(now))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := model{}
	for range 30 {
		pts := g.batch()
		m.write(pts)
		if _, err := s.Write(pts); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, s)
	from, to := base-int64(day), base+int64(4*day)
	check(t, s, m, from, to)
	hits, misses := s.m.rollupHits.Get(), s.m.rollupMisses.Get()
	if misses == 0 {
		t.Fatal("the first read found everything in the rollup cache")
	}
	check(t, s, m, from, to)
	if h, ms := s.m.rollupHits.Get()-hits, s.m.rollupMisses.Get()-misses; h == 0 || ms != 0 {
		t.Fatalf("second read: %d hits, %d misses; want hits only", h, ms)
	}

	// A late point of an existing float series, in the first, rolled-up day.
	var late protocols.Point
	for key := range m {
		meas, tags, field, err := protocols.ParseSeriesKey(key)
		if err != nil {
			t.Fatal(err)
		}
		floats := true
		for _, v := range m[key] {
			floats = floats && v.Kind() == protocols.KindFloat
		}
		if floats {
			late = protocols.Point{Measurement: meas, Tags: tags, Time: base + int64(time.Hour) + 7,
				Fields: []protocols.Field{f(field, protocols.Float(123.4))}}
			break
		}
	}
	if late.Measurement == "" {
		t.Fatal("no float series in the model")
	}
	m.write([]protocols.Point{late})
	if _, err := s.Write([]protocols.Point{late}); err != nil {
		t.Fatal(err)
	}
	settle(t, s)
	misses = s.m.rollupMisses.Get()
	check(t, s, m, from, to)
	if s.m.rollupMisses.Get() == misses {
		t.Fatal("the read after a late point was answered from the cache alone")
	}
}
