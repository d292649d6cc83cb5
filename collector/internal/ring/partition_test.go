package ring

import (
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

func TestPartition_StableAndFieldBlind(t *testing.T) {
	a := protocols.Point{Measurement: "air", Tags: []protocols.Tag{{Key: "district", Value: "d01"}, {Key: "station", Value: "s0001"}},
		Fields: []protocols.Field{{Key: "pm25", Value: protocols.Float(1)}}, Time: 1}
	b := a.Clone()
	b.Fields = []protocols.Field{{Key: "no2", Value: protocols.Float(9)}}
	b.Time = 99
	if Partition(&a, 16) != Partition(&b, 16) {
		t.Fatal("fields or time changed the partition")
	}
	// Pinned values: the hash is an on-disk contract.
	if got := PointHash(&a); got != pinnedHash {
		t.Fatalf("hash = %#x, want %#x: the partition function changed, which moves stored data", got, pinnedHash)
	}
	c := protocols.Point{Measurement: "air", Tags: []protocols.Tag{{Key: "district", Value: "d0"}, {Key: "station", Value: "1s0001"}}}
	if PointHash(&a) == PointHash(&c) {
		t.Fatal("separator does not separate")
	}
}

const pinnedHash uint64 = 0xe72dce4a186214b3

func TestPartition_Range(t *testing.T) {
	p := protocols.Point{Measurement: "m"}
	for _, n := range []int{-1, 0, 1} {
		if got := Partition(&p, n); got != 0 {
			t.Fatalf("Partition(n=%d) = %d", n, got)
		}
	}
}

// The sim's 1,000 stations spread over 16 partitions within ±25 % of even.
func TestPartition_SpreadsSimStations(t *testing.T) {
	const n = 16
	counts := make([]int, n)
	pts := sim.Generate(sim.Params{Stations: 1000, Seed: 1, Interval: time.Minute, Start: time.Unix(0, 0)}, 1)
	for i := range pts {
		if pts[i].Measurement != "air" {
			continue
		}
		counts[Partition(&pts[i], n)]++
	}
	for k, c := range counts {
		if c < 1000/n*75/100 || c > 1000/n*125/100 {
			t.Fatalf("partition %d holds %d of 1000 stations: %v", k, c, counts)
		}
	}
}

func BenchmarkPartition(b *testing.B) {
	pts := sim.Generate(sim.Params{Stations: 1000, Seed: 1, Interval: time.Minute, Start: time.Unix(0, 0)}, 1)
	b.ReportAllocs()
	s := 0
	for b.Loop() {
		for i := range pts {
			s += Partition(&pts[i], 16)
		}
	}
	b.ReportMetric(float64(len(pts)*b.N)/b.Elapsed().Seconds(), "points/s")
	_ = s
}
