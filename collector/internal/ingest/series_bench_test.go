package ingest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citysense/citysense/collector/internal/bus"
	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

// BenchmarkRawToSeries measures the first ingest stage end to end on a real
// embedded JetStream: zstd-compressed agent batches waiting in CS_RAW are
// fetched, decompressed, decoded, partitioned, re-encoded, s2-compressed,
// published to CS_SERIES and acknowledged. b.N is the number of 5,000-point
// batches.
func BenchmarkRawToSeries(b *testing.B) {
	h := newHarness(b)
	params := sim.Params{Stations: 2000, Seed: 1, Interval: time.Minute, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	// Pre-encode a pool of batches of 5,000 points.
	var bodies [][]byte
	var perBody []int
	var pending []protocols.Point
	for tick := 0; len(bodies) < 16; tick++ {
		pending = append(pending, sim.Generate(params, tick)...)
		for len(pending) >= 5000 {
			body, err := protocols.AppendLines(nil, pending[:5000], protocols.Nanosecond)
			if err != nil {
				b.Fatal(err)
			}
			bodies = append(bodies, zstdBytes(b, body))
			perBody = append(perBody, 5000)
			pending = pending[5000:]
		}
	}
	ctx := context.Background()
	total := 0
	for i := 0; i < b.N; i++ {
		msg := nats.NewMsg("cs.raw.bench")
		msg.Data = bodies[i%len(bodies)]
		msg.Header.Set(jetstream.MsgIDHeader, "bench-"+strconv.Itoa(i))
		msg.Header.Set("Content-Encoding", "zstd")
		if _, err := h.agent.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
		total += perBody[i%len(perBody)]
	}
	select {
	case <-h.agent.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("raw publishes not acknowledged")
	}

	sp, err := NewSeriesPublisher(h.bus.JetStream(), nil, SeriesConfig{SubjectPrefix: "cs.series.", Partitions: 16}, nil)
	if err != nil {
		b.Fatal(err)
	}
	in, err := New(h.bus.JetStream(), sp, Config{Stream: bus.StreamRaw, Durable: "enrich", Batch: 16}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(runCtx) }()
	deadline := time.Now().Add(5 * time.Minute)
	for in.batches.Get() < uint64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
	if got := sp.published.Get(); got != uint64(total) {
		b.Fatalf("published %d points, want %d", got, total)
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "points/s")
}
