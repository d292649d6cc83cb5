package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citysense/citysense/collector/internal/ring"
	"github.com/citysense/citysense/collector/internal/wire"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/protocols"
)

// Enricher is the enrichment chain as the series stage needs it.
type Enricher interface {
	Enrich(pts []protocols.Point) ([]protocols.Point, error)
}

// SeriesConfig tunes the raw → series stage.
type SeriesConfig struct {
	// SubjectPrefix is prepended to the partition number: "cs.series.".
	SubjectPrefix string
	// Partitions is how many partitions points are spread over (≥ 1).
	Partitions int
	// Limits refuse implausible points from any writer (agents included,
	// whose batches the write API never sees); zero fields disable a limit.
	Limits Limits
	// Quarantine receives each refused point with the reason; nil drops
	// them (still counted).
	Quarantine Quarantine
	// Now is the clock the time limits are measured from; nil: time.Now.
	Now func() time.Time
}

// Limits bound what one point may look like.
type Limits struct {
	MaxPast   time.Duration // oldest timestamp accepted, before now
	MaxFuture time.Duration // newest timestamp accepted, after now
	MaxTags   int
	MaxFields int
}

// Quarantine keeps refused points for inspection. It is called on the
// ingest path and must not block.
type Quarantine interface {
	Quarantine(stage string, p protocols.Point, reason string)
}

// SeriesPublisher is the Sink of the first ingest stage: it enriches each
// raw batch, splits it by partition and publishes every part to
// <prefix><partition>, s2-compressed, returning only when JetStream has
// acknowledged every part — then the raw messages may be acknowledged.
//
// Each part carries the Nats-Msg-Id <raw-batch-id>-p<partition>, so when a
// raw batch is processed twice (the collector died between publishing and
// acknowledging it) the second copy is dropped by CS_SERIES's duplicate
// window instead of reaching the stateful enrichment downstream twice.
type SeriesPublisher struct {
	js     jetstream.JetStream
	enrich Enricher
	cfg    SeriesConfig
	log    *slog.Logger

	encPool sync.Pool // *seriesEncoder

	set       *metrics.Set
	refused   [4]*metrics.Counter // by reason, see limitReasons
	published *metrics.Counter
	parts     *metrics.Counter
	enrichErr *metrics.Counter
	bytesOut  *metrics.Counter
}

type seriesEncoder struct {
	idx  [][]int32 // point indexes per partition
	enc  wire.Encoder
	buf  []byte
	comp []byte
}

// NewSeriesPublisher prepares the stage without I/O. A nil enricher passes
// points through unchanged; a nil log discards.
func NewSeriesPublisher(js jetstream.JetStream, enrich Enricher, cfg SeriesConfig, log *slog.Logger) (*SeriesPublisher, error) {
	if log == nil {
		log = cli.Discard()
	}
	if cfg.Partitions < 1 {
		return nil, fmt.Errorf("ingest: %d partitions, want at least 1", cfg.Partitions)
	}
	if cfg.SubjectPrefix == "" {
		return nil, errors.New("ingest: no series subject prefix")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	set := metrics.NewSet()
	var refused [4]*metrics.Counter
	for i, r := range limitReasons {
		refused[i] = set.NewCounter(`citysense_series_refused_points_total{reason="` + r + `"}`)
	}
	return &SeriesPublisher{
		refused:   refused,
		js:        js,
		enrich:    enrich,
		cfg:       cfg,
		log:       log.With("component", "series"),
		set:       set,
		published: set.NewCounter("citysense_series_points_published_total"),
		parts:     set.NewCounter("citysense_series_messages_published_total"),
		enrichErr: set.NewCounter("citysense_series_enrich_errors_total"),
		bytesOut:  set.NewCounter("citysense_series_bytes_published_total"),
	}, nil
}

// Metrics returns the stage's metrics:
//
//   - citysense_series_points_published_total: enriched points written to CS_SERIES
//   - citysense_series_messages_published_total: partition messages published
//   - citysense_series_bytes_published_total: compressed bytes published
//   - citysense_series_enrich_errors_total: batches the enrichment chain failed on (retried)
//   - citysense_series_refused_points_total{reason}: points outside the limits (too_old,
//     too_new, too_many_tags, too_many_fields), sent to the quarantine
func (sp *SeriesPublisher) Metrics() *metrics.Set { return sp.set }

// Write enriches and publishes the batches; see SeriesPublisher.
func (sp *SeriesPublisher) Write(ctx context.Context, batches []protocols.Batch) (int, error) {
	e, _ := sp.encPool.Get().(*seriesEncoder)
	if e == nil {
		e = &seriesEncoder{idx: make([][]int32, sp.cfg.Partitions)}
	}
	defer sp.encPool.Put(e)

	var futures []jetstream.PubAckFuture
	total := 0
	now := sp.cfg.Now()
	for _, b := range batches {
		pts := sp.applyLimits(b.ID, b.Points, now)
		if sp.enrich != nil {
			var err error
			if pts, err = sp.enrich.Enrich(pts); err != nil {
				sp.enrichErr.Inc()
				return 0, fmt.Errorf("batch %s: %w", b.ID, err)
			}
		}
		for k := range e.idx {
			e.idx[k] = e.idx[k][:0]
		}
		for i := range pts {
			k := ring.Partition(&pts[i], sp.cfg.Partitions)
			e.idx[k] = append(e.idx[k], int32(i))
		}
		for k, idx := range e.idx {
			if len(idx) == 0 {
				continue
			}
			e.enc.Reset()
			for _, i := range idx {
				e.enc.Encode(&pts[i])
			}
			e.buf = e.enc.AppendTo(e.buf[:0])
			e.comp = s2.Encode(e.comp[:cap(e.comp)], e.buf)
			msg := &nats.Msg{
				Subject: sp.cfg.SubjectPrefix + strconv.Itoa(k),
				// The payload must outlive the encoder's reuse of its
				// buffer until the ack arrives.
				Data:   append([]byte(nil), e.comp...),
				Header: nats.Header{},
			}
			msg.Header.Set(jetstream.MsgIDHeader, b.ID+"-p"+strconv.Itoa(k))
			msg.Header.Set("Content-Encoding", "s2")
			f, err := sp.js.PublishMsgAsync(msg)
			if err != nil {
				return 0, fmt.Errorf("batch %s: publish partition %d: %w", b.ID, k, err)
			}
			futures = append(futures, f)
			sp.bytesOut.Add(len(msg.Data))
			total += len(idx)
		}
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return 0, fmt.Errorf("publish %s: %w", f.Msg().Header.Get(jetstream.MsgIDHeader), err)
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for CS_SERIES acks: %w", ctx.Err())
		}
	}
	sp.published.Add(total)
	sp.parts.Add(len(futures))
	return total, nil
}

var limitReasons = [4]string{"too_old", "too_new", "too_many_tags", "too_many_fields"}

// applyLimits removes the points outside the limits, in place, handing each
// to the quarantine with its reason.
func (sp *SeriesPublisher) applyLimits(batchID string, pts []protocols.Point, now time.Time) []protocols.Point {
	l := sp.cfg.Limits
	var oldest, newest int64 = math.MinInt64, math.MaxInt64
	if l.MaxPast > 0 {
		oldest = now.Add(-l.MaxPast).UnixNano()
	}
	if l.MaxFuture > 0 {
		newest = now.Add(l.MaxFuture).UnixNano()
	}
	kept := pts[:0]
	for i := range pts {
		p := &pts[i]
		reason := -1
		switch {
		case p.Time < oldest:
			reason = 0
		case p.Time > newest:
			reason = 1
		case l.MaxTags > 0 && len(p.Tags) > l.MaxTags:
			reason = 2
		case l.MaxFields > 0 && len(p.Fields) > l.MaxFields:
			reason = 3
		}
		if reason < 0 {
			kept = append(kept, *p)
			continue
		}
		sp.refused[reason].Inc()
		if sp.cfg.Quarantine != nil {
			sp.cfg.Quarantine.Quarantine("ingest", *p, fmt.Sprintf("%s (batch %s, time %s)", limitReasons[reason], batchID,
				time.Unix(0, p.Time).UTC().Format(time.RFC3339)))
		}
	}
	return kept
}

// Interface guards.
var (
	_ Sink = (*SeriesPublisher)(nil)
	_ Sink = pointsSink{}
)
