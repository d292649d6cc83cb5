package store

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
)

// cachedTwice writes 30 random batches over span from base into a store
// whose clock says now, settles it and reads everything twice over from,
// to: the first read must miss the rollup cache, the second only hit it,
// both matching the model.
func cachedTwice(t *testing.T, seed uint64, base, span int64, now time.Time, from, to int64) (*Store, model) {
	t.Helper()
	g := &gen{rng: rand.New(rand.NewPCG(seed, 9)), base: base, span: span, times: map[string][]int64{}}
	s, err := OpenDir(t.TempDir(), testOptions(now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	m := model{}
	for range 30 {
		pts := g.batch()
		m.write(pts)
		if _, err := s.Write(pts); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, s)
	check(t, s, m, from, to)
	hits, misses := s.m.rollupHits.Get(), s.m.rollupMisses.Get()
	if misses == 0 {
		t.Fatal("the first read found everything in the rollup cache")
	}
	check(t, s, m, from, to)
	if h, ms := s.m.rollupHits.Get()-hits, s.m.rollupMisses.Get()-misses; h == 0 || ms != 0 {
		t.Fatalf("second read: %d hits, %d misses; want hits only", h, ms)
	}
	return s, m
}

// missesAfter writes p, settles and checks that the next read, which must
// include it, missed the rollup cache.
func missesAfter(t *testing.T, s *Store, m model, p protocols.Point, from, to int64) {
	t.Helper()
	m.write([]protocols.Point{p})
	if _, err := s.Write([]protocols.Point{p}); err != nil {
		t.Fatal(err)
	}
	settle(t, s)
	misses := s.m.rollupMisses.Get()
	check(t, s, m, from, to)
	if s.m.rollupMisses.Get() == misses {
		t.Fatal("the read after a new point was answered from the cache alone")
	}
}

// TestStore_rollupCache reads hours twice over rolled-up days: the second
// read comes from the rollup cache and matches the model; a late point in a
// rolled-up day changes the file's generation, so the next read misses,
// reads the file and includes the point.
func TestStore_rollupCache(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	from, to := base-int64(day), base+int64(4*day)
	s, m := cachedTwice(t, 3, base, int64(3*day), time.Unix(0, base).Add(5*day), from, to)

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
	missesAfter(t, s, m, late, from, to)
}

// TestStore_rollupCacheOpenDay does the same over a day still open (the
// clock is at its end), whose hours are computed from raw chunks: a second
// read is all hits, and a point written into one of its windows is in the
// next read, which misses.
func TestStore_rollupCacheOpenDay(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	from, to := base-int64(day), base+int64(3*day)
	s, m := cachedTwice(t, 5, base, int64(2*day), time.Unix(0, base).Add(2*day-time.Minute), from, to)
	if s.rolledUp(base + int64(day)) {
		t.Fatal("the second day was rolled up; the test wants it open")
	}
	// A point of a new series in a written window of the second day.
	pt, err := protocols.NewPoint("air", map[string]string{"station": "s9", "district": "d01"},
		[]protocols.Field{f("pm25", protocols.Float(42.5))}, base+int64(day)+int64(3*time.Hour)+5)
	if err != nil {
		t.Fatal(err)
	}
	missesAfter(t, s, m, pt, from, to)
}

// TestStore_dropsOpenHoursDir: the 1h-open directory of older stores (an
// open day's hours, now computed from raw chunks) is deleted at open.
func TestStore_dropsOpenHoursDir(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "1h-open")
	if err := os.MkdirAll(old, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "2026-11-23.db"), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenDir(dir, testOptions(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("1h-open still there: %v", err)
	}
}
