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
