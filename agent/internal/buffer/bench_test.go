package buffer

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

// simTicks returns n consecutive ticks of a simulated city.
func simTicks(stations, n int) [][]protocols.Point {
	p := sim.Params{Stations: stations, Seed: 1, Interval: 10 * time.Second, Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	out := make([][]protocols.Point, n)
	for i := range out {
		out[i] = sim.Generate(p, i+1) // tick 0 carries the station positions too
	}
	return out
}

// BenchmarkBuffer_Append measures Appends of simulated ticks from several
// concurrent inputs, fsync'd with group commit at the default flush
// interval. It reports points/s and the bytes the segment files grew by per
// point.
func BenchmarkBuffer_Append(b *testing.B) {
	for _, bc := range []struct {
		name     string
		stations int
		writers  int
		flush    time.Duration
	}{
		{"stations_50/writers_8/flush_100ms", 50, 8, 100 * time.Millisecond},
		{"stations_50/writers_8/flush_2ms", 50, 8, 2 * time.Millisecond},
		{"stations_50/writers_64/flush_2ms", 50, 64, 2 * time.Millisecond},
		{"stations_2000/writers_4/flush_100ms", 2000, 4, 100 * time.Millisecond},
		{"stations_2000/writers_4/flush_2ms", 2000, 4, 2 * time.Millisecond},
		{"stations_1000/writers_1/flush_10ms", 1000, 1, 10 * time.Millisecond},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ticks := simTicks(bc.stations, 64)
			buf, err := Open(b.TempDir(), Options{FlushInterval: bc.flush})
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			var next atomic.Int64
			var pts atomic.Int64
			cpu := cpuTime(b)
			b.ResetTimer()
			var wg sync.WaitGroup
			for range bc.writers {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						t := ticks[i%int64(len(ticks))]
						if err := buf.Append(context.Background(), t); err != nil {
							b.Error(err)
							return
						}
						pts.Add(int64(len(t)))
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			cpu = cpuTime(b) - cpu
			st := buf.Stats()
			b.ReportMetric(float64(pts.Load())/b.Elapsed().Seconds(), "points/s")
			b.ReportMetric(float64(pts.Load())/cpu.Seconds(), "points/cpu-s")
			b.ReportMetric(float64(st.Bytes)/float64(pts.Load()), "disk_bytes/point")
			b.ReportMetric(float64(st.BodyBytes)/float64(pts.Load()), "body_bytes/point")
		})
	}
}

// BenchmarkBuffer_Drain measures what an output does with the buffer: read
// the oldest batches, 64 at a time, and acknowledge them (which deletes
// them), until the buffer is empty; read_wire and read_lines also turn
// every batch into what the nats output (line protocol, zstd) or the
// influx output (line protocol) sends. One op drains about a million
// points; refilling is not timed. Data: "city2000" is 224 ticks of 2,000
// stations from 4 writers (a batch holds about one tick: one or two rows
// per series, the columns' worst case); "city100" is 4,480 ticks of 100
// stations appended 5,000 readings at a time (full batches of 21 ticks).
// Besides points/s (wall clock, which other load on the machine skews),
// points/cpu-s counts the process's CPU time of the timed part.
func BenchmarkBuffer_Drain(b *testing.B) {
	for _, data := range []string{"city2000", "city100"} {
		b.Run(data+"/read_ack", func(b *testing.B) { benchDrain(b, data, nil) })
		b.Run(data+"/read_wire_ack", func(b *testing.B) {
			tc, err := NewTranscoder()
			if err != nil {
				b.Fatal(err)
			}
			defer tc.Close()
			benchDrain(b, data, func(bt *Batch) error { _, err := tc.Wire(bt); return err })
		})
		b.Run(data+"/read_lines_ack", func(b *testing.B) {
			tc, err := NewTranscoder()
			if err != nil {
				b.Fatal(err)
			}
			defer tc.Close()
			benchDrain(b, data, func(bt *Batch) error { _, err := tc.Lines(bt); return err })
		})
	}
}

// cpuTime returns the CPU time (user and system) the process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchDrain(b *testing.B, data string, each func(*Batch) error) {
	buf, err := Open(b.TempDir(), Options{FlushInterval: 2 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer buf.Close()
	var fill func()
	switch data {
	case "city2000":
		ticks := simTicks(2000, 16)
		fill = func() {
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					for i := w; i < 16*14; i += 4 { // 224 ticks: 1,045,408 points
						if err := buf.Append(context.Background(), ticks[i%len(ticks)]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		}
	case "city100":
		fill = func() {
			_, err := simDay(100, 4480, DefaultBatchPoints, func(pts []protocols.Point) error { // 1,043,940 points
				return buf.Append(context.Background(), pts)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	drained := 0
	var cpu time.Duration
	b.StopTimer()
	for range b.N {
		fill()
		cpu -= cpuTime(b)
		b.StartTimer()
		for {
			bs, err := buf.Read("default", 0, math.MaxUint64, 64, 8<<20)
			if err != nil {
				b.Fatal(err)
			}
			if len(bs) == 0 {
				break
			}
			seqs := make([]uint64, len(bs))
			for i, bt := range bs {
				seqs[i] = bt.Seq
				drained += bt.Points
				if each != nil {
					if err := each(&bt); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := buf.Ack("default", seqs...); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		cpu += cpuTime(b)
	}
	b.ReportMetric(float64(drained)/b.Elapsed().Seconds(), "points/s")
	b.ReportMetric(float64(drained)/cpu.Seconds(), "points/cpu-s")
}
