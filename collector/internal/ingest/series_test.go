package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citysense/citysense/collector/internal/bus"
	"github.com/citysense/citysense/collector/internal/ring"
	"github.com/citysense/citysense/collector/internal/wire"
	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

// tagEnricher adds a tag to every point, so the test can see that the store
// holds enriched data and not the raw batch.
type tagEnricher struct{ fail bool }

func (e tagEnricher) Enrich(pts []protocols.Point) ([]protocols.Point, error) {
	if e.fail {
		return nil, errors.New("stage broke")
	}
	for i := range pts {
		pts[i].SetTag("enriched", "yes")
	}
	return pts, nil
}

// runStages wires the collector's two ingest stages on a real bus:
// CS_RAW → enrich → CS_SERIES partitions → store.
func (h *harness) runStages(t *testing.T, enrich Enricher, partitions int) (*SeriesPublisher, *Ingester, *Ingester) {
	t.Helper()
	sp, err := NewSeriesPublisher(h.bus.JetStream(), enrich, SeriesConfig{SubjectPrefix: "cs.series.", Partitions: partitions}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// As in the collector: CS_SERIES keeps messages only for existing
	// consumers, so the store's comes first.
	series := h.runSink(t, Points(h.store), Config{Stream: bus.StreamSeries, Durable: "store"})
	<-series.ConsumerReady()
	raw := h.runSink(t, sp, Config{Stream: bus.StreamRaw, Durable: "enrich"})
	return sp, raw, series
}

// holdSeries adds a durable consumer to CS_SERIES that never acknowledges,
// so that the stream keeps every message it took for inspection.
func (h *harness) holdSeries(t *testing.T) {
	t.Helper()
	_, err := h.bus.JetStream().CreateOrUpdateConsumer(context.Background(), bus.StreamSeries, jetstream.ConsumerConfig{
		Durable: "hold", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
}

func (h *harness) runSink(t *testing.T, s Sink, cfg Config) *Ingester {
	t.Helper()
	in, err := New(h.bus.JetStream(), s, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run(%s) = %v", cfg.Stream, err)
		}
	})
	return in
}

func TestSeriesPublisher_TwoStages_storeEnrichedPointsExactly(t *testing.T) {
	h := newHarness(t)
	h.holdSeries(t)
	_, raw, series := h.runStages(t, tagEnricher{}, 8)

	params := sim.Params{Stations: 40, Seed: 7, Interval: 10 * time.Second, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var want []protocols.Point
	for tick := 0; tick < 5; tick++ {
		pts := sim.Generate(params, tick)
		body, err := protocols.AppendLines(nil, pts, protocols.Nanosecond)
		if err != nil {
			t.Fatal(err)
		}
		h.publish(t, "gw-1-"+string(rune('a'+tick)), "zstd", zstdBytes(t, body))
		want = append(want, pts...)
	}
	waitFor(t, "raw stage to take 5 batches", func() bool { return raw.batches.Get() == 5 })
	waitFor(t, "store stage to write every point", func() bool { return series.points.Get() == uint64(len(want)) })

	// Every field value is in the store under the enriched series key, and
	// nothing else is.
	stored := map[string]sample{}
	for _, f := range []string{"pm25", "pm10", "no2", "temperature", "humidity", "laeq", "count", "lat", "lon"} {
		for _, s := range selectAll(t, h.store, f) {
			stored[s.key+"@"+strconv.FormatInt(s.t, 10)] = s
		}
	}
	nvalues := 0
	for _, p := range want {
		p = p.Clone()
		p.SetTag("enriched", "yes")
		for _, f := range p.Fields {
			nvalues++
			s, ok := stored[p.SeriesKey(f.Key)+"@"+strconv.FormatInt(p.Time, 10)]
			if !ok || !s.v.Equal(f.Value) {
				t.Fatalf("%s at %d = %v not stored enriched (got %v)", p.SeriesKey(f.Key), p.Time, f.Value, s.v)
			}
		}
	}
	if len(stored) != nvalues {
		t.Fatalf("store holds %d values, want %d", len(stored), nvalues)
	}
	// Partition messages: each lands on the subject of its partition.
	st, err := h.bus.JetStream().Stream(context.Background(), bus.StreamSeries)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter("cs.series.>"))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.State.Subjects) < 6 {
		t.Fatalf("only %d of 8 partitions used by 40 stations: %v", len(info.State.Subjects), info.State.Subjects)
	}
	for subj := range info.State.Subjects {
		if !strings.HasPrefix(subj, "cs.series.") {
			t.Fatalf("unexpected subject %q", subj)
		}
	}
}

func TestSeriesPublisher_Write_replayIsDeduplicated(t *testing.T) {
	h := newHarness(t)
	h.holdSeries(t)
	sp, err := NewSeriesPublisher(h.bus.JetStream(), nil, SeriesConfig{SubjectPrefix: "cs.series.", Partitions: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pts := sim.Generate(sim.Params{Stations: 20, Seed: 1, Interval: time.Second, Start: time.Unix(1767225600, 0)}, 0)
	ctx := context.Background()
	n1, err := sp.Write(ctx, []protocols.Batch{{ID: "gw-9-1", Points: pts}})
	if err != nil || n1 != len(pts) {
		t.Fatalf("first write = %d, %v; want %d", n1, err, len(pts))
	}
	st, _ := h.bus.JetStream().Stream(ctx, bus.StreamSeries)
	info, _ := st.Info(ctx)
	msgs := info.State.Msgs
	if msgs == 0 || msgs > 4 {
		t.Fatalf("CS_SERIES holds %d messages after one batch over 4 partitions", msgs)
	}
	// The raw batch comes again (the collector died before acking it).
	if _, err := sp.Write(ctx, []protocols.Batch{{ID: "gw-9-1", Points: pts}}); err != nil {
		t.Fatal(err)
	}
	info, _ = st.Info(ctx)
	if info.State.Msgs != msgs {
		t.Fatalf("replayed batch added messages: %d → %d", msgs, info.State.Msgs)
	}
	// Points of one reading stay together in their partition.
	for i := range pts {
		if ring.Partition(&pts[i], 4) < 0 {
			t.Fatal("bad partition")
		}
	}
}

func TestSeriesPublisher_Write_enrichErrorRetriesRaw(t *testing.T) {
	h := newHarness(t)
	_, raw, series := h.runStages(t, tagEnricher{fail: true}, 2)
	h.publish(t, "gw-1-x", "", []byte("air,station=s1 pm25=1 1767225600000000000\n"))
	waitFor(t, "a failed write", func() bool { return raw.writeErrors.Get() >= 1 })
	if raw.batches.Get() != 0 || series.points.Get() != 0 {
		t.Fatalf("a batch the chain failed on was acknowledged (%d) or stored (%d)", raw.batches.Get(), series.points.Get())
	}
	if n := h.rawMsgs(t); n != 1 {
		t.Fatalf("CS_RAW holds %d messages, want the failed one kept", n)
	}
}

func TestNewSeriesPublisher_badConfig(t *testing.T) {
	if _, err := NewSeriesPublisher(nil, nil, SeriesConfig{SubjectPrefix: "x.", Partitions: 0}, nil); err == nil {
		t.Error("0 partitions accepted")
	}
	if _, err := NewSeriesPublisher(nil, nil, SeriesConfig{Partitions: 2}, nil); err == nil {
		t.Error("empty prefix accepted")
	}
}

type recordingQuarantine struct {
	mu      sync.Mutex
	reasons []string
}

func (q *recordingQuarantine) Quarantine(stage string, p protocols.Point, reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reasons = append(q.reasons, stage+": "+reason)
}

func TestSeriesPublisher_Write_limitsQuarantinePointsOutOfBounds(t *testing.T) {
	h := newHarness(t)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	q := &recordingQuarantine{}
	sp, err := NewSeriesPublisher(h.bus.JetStream(), nil, SeriesConfig{
		SubjectPrefix: "cs.series.", Partitions: 2, Quarantine: q, Now: func() time.Time { return now },
		Limits: Limits{MaxPast: 24 * time.Hour, MaxFuture: time.Hour, MaxTags: 2, MaxFields: 2},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := []protocols.Field{{Key: "v", Value: protocols.Float(1)}}
	pts := []protocols.Point{
		{Measurement: "ok", Fields: f, Time: now.UnixNano()},
		{Measurement: "old", Fields: f, Time: now.AddDate(-100, 0, 0).UnixNano()},
		{Measurement: "new", Fields: f, Time: now.AddDate(100, 0, 0).UnixNano()},
		{Measurement: "tags", Tags: []protocols.Tag{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}, {Key: "c", Value: "3"}}, Fields: f, Time: now.UnixNano()},
		{Measurement: "fields", Fields: []protocols.Field{{Key: "a", Value: protocols.Int(1)}, {Key: "b", Value: protocols.Int(1)}, {Key: "c", Value: protocols.Int(1)}}, Time: now.UnixNano()},
		{Measurement: "ok2", Fields: f, Time: now.Add(59 * time.Minute).UnixNano()},
	}
	n, err := sp.Write(context.Background(), []protocols.Batch{{ID: "gw-1-7", Points: pts}})
	if err != nil || n != 2 {
		t.Fatalf("Write = %d, %v; want the 2 good points published", n, err)
	}
	want := []string{"too_old", "too_new", "too_many_tags", "too_many_fields"}
	if len(q.reasons) != len(want) {
		t.Fatalf("quarantined %v", q.reasons)
	}
	for i, w := range want {
		if !strings.HasPrefix(q.reasons[i], "ingest: "+w+" (batch gw-1-7, time ") {
			t.Errorf("reason %d = %q, want %s", i, q.reasons[i], w)
		}
	}
	for i, c := range sp.refused {
		if c.Get() != 1 {
			t.Errorf("refused[%s] = %d, want 1", limitReasons[i], c.Get())
		}
	}
}

// The write API calls Write from concurrent requests; with the demo's
// stateful chain (aqi, quality) every point still arrives exactly once.
func TestSeriesPublisher_Write_concurrent(t *testing.T) {
	h := newHarness(t)
	h.holdSeries(t)
	sp, err := NewSeriesPublisher(h.bus.JetStream(), demoChain(t), SeriesConfig{SubjectPrefix: "cs.series.", Partitions: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const writers, ticks = 4, 5
	start := time.Now().Add(-time.Hour).Truncate(time.Minute)
	errs := make(chan error, writers)
	total := make(chan int, writers)
	for w := range writers {
		go func() {
			n := 0
			for tick := range ticks {
				params := sim.Params{Stations: 10, Seed: int64(w + 1), Interval: time.Minute, Start: start.Add(time.Duration(w) * time.Hour * 24)}
				pts := sim.Generate(params, tick)
				k, err := sp.Write(context.Background(), []protocols.Batch{{ID: fmt.Sprintf("w%d-%d", w, tick), Points: pts}})
				if err != nil {
					errs <- err
					return
				}
				n += k
			}
			total <- n
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	sum := 0
	for range writers {
		sum += <-total
	}
	if sum == 0 || int(sp.published.Get()) != sum {
		t.Fatalf("published %d points, Write reported %d", sp.published.Get(), sum)
	}
	st, err := h.bus.JetStream().Stream(context.Background(), bus.StreamSeries)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 || info.State.Msgs > writers*ticks*4 {
		t.Fatalf("CS_SERIES holds %d messages for %d batches over 4 partitions", info.State.Msgs, writers*ticks)
	}
	// Every generated reading is in the stream once (the chain may add
	// derived points, such as AQI, but must not lose or repeat one).
	want := map[string]int{}
	for w := range writers {
		for tick := range ticks {
			params := sim.Params{Stations: 10, Seed: int64(w + 1), Interval: time.Minute, Start: start.Add(time.Duration(w) * time.Hour * 24)}
			for _, p := range sim.Generate(params, tick) {
				st, _ := p.Tag("station")
				want[fmt.Sprintf("%s %s %d", p.Measurement, st, p.Time)]++
			}
		}
	}
	got := map[string]int{}
	cons, err := st.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for range info.State.Msgs {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		body, err := s2.Decode(nil, m.Data())
		if err != nil {
			t.Fatal(err)
		}
		pts, err := wire.Decode(body, wire.Options{Validate: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pts {
			st, _ := p.Tag("station")
			if k := fmt.Sprintf("%s %s %d", p.Measurement, st, p.Time); want[k] > 0 {
				got[k]++
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d of %d readings in CS_SERIES", len(got), len(want))
	}
	for k, n := range got {
		if n != want[k] {
			t.Fatalf("%s: %d times, want %d", k, n, want[k])
		}
	}
}
