package ingest

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citysense/citysense/collector/internal/bus"
	"github.com/citysense/citysense/enrich"
	_ "github.com/citysense/citysense/enrich/all"
	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

// BenchmarkRawToSeries measures the first ingest stage end to end on a real
// embedded JetStream: zstd-compressed agent batches waiting in CS_RAW are
// fetched, decompressed, decoded, partitioned, re-encoded, s2-compressed,
// published to CS_SERIES and acknowledged. b.N is the number of 5,000-point
// batches.
func BenchmarkRawToSeries(b *testing.B) { benchRawToSeries(b, nil) }

func benchRawToSeries(b *testing.B, chain Enricher) {
	h := newHarness(b)
	params := sim.Params{Stations: 50, Seed: 1, Interval: time.Minute, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
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

	sp, err := NewSeriesPublisher(h.bus.JetStream(), chain, SeriesConfig{SubjectPrefix: "cs.series.", Partitions: 16}, nil)
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
	if got := sp.published.Get(); chain == nil && got != uint64(total) {
		b.Fatalf("published %d points, want %d", got, total)
	} else if got < uint64(total) {
		b.Fatalf("published %d points, want at least %d", got, total)
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkRawToSeries_DemoChain is BenchmarkRawToSeries with the demo
// city's full enrichment chain (schema, registry, geo, aqi, quality,
// privacy) between CS_RAW and CS_SERIES.
func BenchmarkRawToSeries_DemoChain(b *testing.B) {
	benchRawToSeries(b, demoChain(b))
}

// demoChain builds the enrichment chain of configs/demo/collector.yaml.
func demoChain(b testing.TB) Enricher {
	_, file, _, _ := runtime.Caller(0)
	demo := filepath.Join(filepath.Dir(file), "..", "..", "..", "configs", "demo")
	var cfg struct {
		Enrich []yaml.Node `yaml:"enrich"`
	}
	raw, err := os.ReadFile(filepath.Join(demo, "collector.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		b.Fatal(err)
	}
	if err := root.Decode(&cfg); err != nil {
		b.Fatal(err)
	}
	chain, err := enrich.Build(nil, cfg.Enrich, "enrich", enrich.Env{Dir: demo})
	if err != nil {
		b.Fatal(err)
	}
	return chain
}
