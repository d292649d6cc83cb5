package buffer

import (
	"context"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

// simDay streams a day of the simulated city (stations at the sim's default
// 10 s interval, tick 0 with the station positions included) to fn in
// chunks of at most chunk points; a chunk never spans two calls' memory.
func simDay(stations, ticks, chunk int, fn func([]protocols.Point) error) (points int, err error) {
	p := sim.Params{Stations: stations, Seed: 1, Interval: 10 * time.Second, Start: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	var pending []protocols.Point
	for tick := range ticks {
		pending = append(pending, sim.Generate(p, tick)...)
		for len(pending) >= chunk {
			if err := fn(pending[:chunk]); err != nil {
				return points, err
			}
			points += chunk
			pending = append(pending[:0:0], pending[chunk:]...)
		}
	}
	if len(pending) > 0 {
		if err := fn(pending); err != nil {
			return points, err
		}
		points += len(pending)
	}
	return points, nil
}

// BenchmarkBuffer_SimDay stores a day of 100 simulated stations (8,640
// ticks, 2.0 M readings) and reports the bytes the segment files hold per
// reading. "batch_5000" appends 5,000 readings at a time, so every batch is
// full (buffer.batch_points); "tick" appends one tick at a time as a live
// sim input does while its outputs are down, each commit (one fsync)
// making a batch of one tick (233 readings) that the committer merges into
// full batches (merge.go): that one stores the first 12 hours (4,320
// ticks, about 45 s of fsyncs).
func BenchmarkBuffer_SimDay(b *testing.B) {
	for _, bc := range []struct {
		name  string
		chunk int
		ticks int
	}{
		{"batch_5000", DefaultBatchPoints, 8640},
		{"tick", 233, 4320},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var points int
			var st Stats
			for range b.N {
				buf, err := Open(b.TempDir(), Options{MaxBytes: 0})
				if err != nil {
					b.Fatal(err)
				}
				points, err = simDay(100, bc.ticks, bc.chunk, func(pts []protocols.Point) error {
					return buf.Append(context.Background(), pts)
				})
				if err != nil {
					b.Fatal(err)
				}
				st = buf.Stats()
				buf.Close()
			}
			b.ReportMetric(float64(points)*float64(b.N)/b.Elapsed().Seconds(), "points/s")
			b.ReportMetric(float64(st.Bytes)/float64(points), "disk_bytes/point")
			b.ReportMetric(float64(st.BodyBytes)/float64(points), "body_bytes/point")
		})
	}
}
