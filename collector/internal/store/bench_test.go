package store

import (
	"context"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

// diskBytes is what the files under dir occupy on disk (allocated blocks,
// so bbolt's sparse preallocation does not count).
func diskBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return total
}

// BenchmarkStore_simCity writes the bench data set's shape (sim stations,
// one reading a minute) for a day and reports bytes on disk per value and
// the store's CPU time per value. b.N is the number of days written.
func BenchmarkStore_simCity(b *testing.B) {
	const stations = 200
	params := sim.Params{Stations: stations, Seed: 1, Interval: time.Minute, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := b.TempDir()
	opts := DefaultOptions()
	opts.Retention = Retention{}
	s, err := OpenDir(dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	// The data is generated up front: the simulator costs more than the
	// store.
	ticks := make([][]protocols.Point, 1440*b.N)
	values := 0
	for i := range ticks {
		ticks[i] = sim.Generate(params, i)
		for _, p := range ticks[i] {
			values += len(p.Fields)
		}
	}
	b.ResetTimer()
	for _, pts := range ticks {
		if _, err := s.Append(pts, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(values), "ns/value")
	b.ReportMetric(float64(diskBytes(b, dir))/float64(values), "disk-B/value")
	b.ReportMetric(float64(diskBytes(b, filepath.Join(dir, "raw")))/float64(values), "raw-B/value")
	b.ReportMetric(float64(diskBytes(b, filepath.Join(dir, "1h")))/float64(values), "1h-B/value")
}

// BenchmarkStore_append times Append alone on a city of 3,000 stations
// (about 20,000 values a tick), one tick per op, within one window so that
// nothing is written meanwhile. Between ticks it sweeps 8 MB, as the
// decoding of the next batch does in the collector, so that each series'
// head state is out of cache as it is there: with 3,000 stations the head
// no longer fits a core's cache anyway, and Append pays a cache miss or
// two per value.
func BenchmarkStore_append(b *testing.B) {
	const stations = 3000
	params := sim.Params{Stations: stations, Seed: 1, Interval: time.Minute, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := DefaultOptions()
	opts.Retention = Retention{}
	opts.Now = func() time.Time { return params.Start.Add(time.Hour) }
	s, err := OpenDir(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() }) // the last one opened
	// Within the first 2-hour window.
	const ticks = 100
	batches := make([][]protocols.Point, ticks)
	values := 0
	for i := range batches {
		batches[i] = sim.Generate(params, i)
		for _, p := range batches[i] {
			values += len(p.Fields)
		}
	}
	sweep := make([]byte, 8<<20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%ticks == 0 {
			b.StopTimer()
			s.Close()
			if s, err = OpenDir(b.TempDir(), opts); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.StopTimer()
		for j := 0; j < len(sweep); j += 64 {
			sweep[j]++
		}
		b.StartTimer()
		if _, err := s.Append(batches[i%ticks], nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(values/ticks*b.N), "ns/value")
}
