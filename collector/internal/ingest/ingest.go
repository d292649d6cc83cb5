package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citysense/citysense/collector/internal/wire"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/protocols"
)

// Sink takes the decoded batches of one fetch, one Batch per message with
// the message's id (the agent's <agent-id>-<batch-seq>). Write must return
// only once the points are durable: the messages are acknowledged next. An
// error makes every message of the fetch come back later.
type Sink interface {
	Write(ctx context.Context, batches []protocols.Batch) (int, error)
}

// Writer is the store as ingest needs it: a point-level Write that returns
// once the points are durable.
type Writer interface {
	Write(pts []protocols.Point) (int, error)
}

// Points adapts a Writer to a Sink: all points of a fetch go to the store in
// one Write, so in one transaction.
func Points(w Writer) Sink { return pointsSink{w} }

type pointsSink struct{ w Writer }

func (s pointsSink) Write(_ context.Context, batches []protocols.Batch) (int, error) {
	if len(batches) == 1 {
		return s.w.Write(batches[0].Points)
	}
	n := 0
	for _, b := range batches {
		n += len(b.Points)
	}
	pts := make([]protocols.Point, 0, n)
	for _, b := range batches {
		pts = append(pts, b.Points...)
	}
	return s.w.Write(pts)
}

// Config tunes the consumer.
type Config struct {
	// Stream is the stream to consume, CS_RAW in the collector.
	Stream string
	// Durable is the consumer's name; it keeps its place across restarts.
	// Empty means "ingest".
	Durable string
	// Batch is the most messages written in one store transaction; zero
	// means 100.
	Batch int
	// AckWait is how long JetStream waits for an ack before redelivering;
	// zero means 30s.
	AckWait time.Duration
	// RetryDelay is the redelivery delay after a store error; zero means 5s.
	RetryDelay time.Duration
	// TrustWire skips validating messages in the collector's binary
	// format (package wire): set it only for a stream that nobody but the
	// collector can publish to (CS_SERIES).
	TrustWire bool
	// MaxDecodedBytes bounds one decompressed message, so that a small
	// hostile message cannot expand into all of memory; zero means 64 MiB.
	MaxDecodedBytes int
	// MaxAckPending bounds the messages delivered and not yet
	// acknowledged; zero means 4×Batch, or unlimited (-1) for a
	// DeferredSink, which holds acknowledgements for as long as the store
	// keeps the points in memory. A deferred sink needs AckWait above that
	// time too (store.Options.AckWait).
	MaxAckPending int
	// FilterSubject restricts the consumer to one subject of the stream,
	// such as one partition of CS_SERIES (cs.series.3); empty consumes
	// all of it.
	FilterSubject string
	// A new consumer starts at the first message the stream still holds,
	// which is what a node taking over a partition replays; an existing
	// durable resumes where it stopped.
	//
	// Metrics, when set, receives the ingester's counters instead of a set
	// of its own, labelled with Label as well as the stream, so that many
	// ingesters (one per partition a cluster node owns) share one set and
	// one that restarts continues its counters.
	Metrics *metrics.Set
	Label   string
	// StrandedCheck is how often a deferred consumer looks for messages
	// delivered but never received (see checkStranded); zero means 10s.
	StrandedCheck time.Duration
}

func (c *Config) setDefaults() {
	if c.Durable == "" {
		c.Durable = "ingest"
	}
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.StrandedCheck <= 0 {
		c.StrandedCheck = 10 * time.Second
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = 5 * time.Second
	}
	if c.MaxDecodedBytes <= 0 {
		c.MaxDecodedBytes = 64 << 20
	}
}

func (c *Config) maxAckPending(deferred bool) int {
	switch {
	case c.MaxAckPending != 0:
		return c.MaxAckPending
	case deferred:
		return -1
	}
	return 4 * c.Batch
}

// Ingester consumes one stream into a Sink.
type Ingester struct {
	js       jetstream.JetStream
	w        Sink
	deferred DeferredSink // w, when it acknowledges later
	cfg      Config
	log      *slog.Logger

	zstd *zstd.Decoder

	set         *metrics.Set
	batches     *metrics.Counter
	points      *metrics.Counter
	badLines    *metrics.Counter
	badBatches  *metrics.Counter
	writeErrors *metrics.Counter

	// consumerReady is closed once Run created its durable consumer.
	consumerReady chan struct{}

	// held counts the messages handed to a deferred sink and not yet
	// settled; strandedResets counts the times messages delivered to this
	// consumer but never received were replayed (see checkStranded).
	held           atomic.Int64
	strandedResets *metrics.Counter

	// Used only from Run's goroutine.
	wireDec wire.Decoder // reused per fetch when TrustWire (see process)
	// The decompressed body of the message being decoded: every decoder
	// copies what it keeps of it, so the next message reuses the buffer.
	bodyBuf     []byte
	badLineLog  logLimiter
	badBatchLog logLimiter
}

// New prepares an Ingester without doing I/O. A nil log discards.
func New(js jetstream.JetStream, w Sink, cfg Config, log *slog.Logger) (*Ingester, error) {
	if log == nil {
		log = cli.Discard()
	}
	if cfg.Stream == "" {
		return nil, errors.New("ingest: no stream")
	}
	cfg.setDefaults()
	// One decoder serves every message: DecodeAll is safe for concurrent
	// use and concurrency 1 starts no background goroutines.
	zd, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(cfg.MaxDecodedBytes)))
	if err != nil {
		return nil, fmt.Errorf("ingest: zstd decoder: %w", err)
	}
	set := cfg.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	labels := `{stream="` + cfg.Stream + `"}`
	if cfg.Label != "" {
		labels = `{stream="` + cfg.Stream + `",` + cfg.Label + `}`
	}
	deferred, _ := w.(DeferredSink)
	return &Ingester{
		js:             js,
		w:              w,
		deferred:       deferred,
		cfg:            cfg,
		log:            log.With("component", "ingest"),
		zstd:           zd,
		set:            set,
		batches:        set.GetOrCreateCounter(`citysense_ingest_batches_total` + labels),
		points:         set.GetOrCreateCounter(`citysense_ingest_points_total` + labels),
		badLines:       set.GetOrCreateCounter(`citysense_ingest_bad_lines_total` + labels),
		badBatches:     set.GetOrCreateCounter(`citysense_ingest_bad_batches_total` + labels),
		writeErrors:    set.GetOrCreateCounter(`citysense_ingest_write_errors_total` + labels),
		strandedResets: set.GetOrCreateCounter(`citysense_ingest_stranded_replays_total` + labels),
		badLineLog:     logLimiter{every: 10 * time.Second},
		badBatchLog:    logLimiter{every: 10 * time.Second},
		consumerReady:  make(chan struct{}),
	}, nil
}

// ConsumerReady is closed once Run has created (or found) its durable
// consumer. On a stream with interest retention, nothing published before
// that is kept for it, so a stage that feeds such a stream starts after.
func (in *Ingester) ConsumerReady() <-chan struct{} { return in.consumerReady }

// Metrics is the ingester's metrics set, for /metrics. Every name carries a
// stream label (CS_RAW, CS_SERIES), one per stage.
//
//   - citysense_ingest_batches_total: messages stored and acknowledged
//   - citysense_ingest_points_total: points handed on (to CS_SERIES, or to the store)
//   - citysense_ingest_bad_lines_total: lines that did not decode (the rest of their batch was stored)
//   - citysense_ingest_bad_batches_total: messages terminated because they could not be decompressed
//   - citysense_ingest_write_errors_total: store writes that failed (their messages are redelivered)
//   - citysense_ingest_stranded_replays_total: replays of messages the server delivered to a
//     pull request nobody read any more (deferred sinks only; see checkStranded)
func (in *Ingester) Metrics() *metrics.Set { return in.set }

// Run consumes until ctx is done and returns nil then. It returns an error
// only when it cannot go on: the consumer cannot be created or the
// connection to the bus is closed.
func (in *Ingester) Run(ctx context.Context) error {
	defer in.zstd.Close()
	cons, err := in.js.CreateOrUpdateConsumer(ctx, in.cfg.Stream, jetstream.ConsumerConfig{
		Durable:     in.cfg.Durable,
		Description: "collector ingest: " + in.cfg.Stream + " into the store",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     in.cfg.AckWait,
		// Deliveries are unlimited on purpose: a message is only
		// redelivered when the store failed, and giving up would lose it.
		MaxDeliver:    -1,
		MaxAckPending: in.cfg.maxAckPending(in.deferred != nil),
		FilterSubject: in.cfg.FilterSubject,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ingest: create consumer %s on %s: %w", in.cfg.Durable, in.cfg.Stream, err)
	}
	close(in.consumerReady)
	if in.deferred != nil {
		// Messages a previous run took but never acknowledged (it died
		// with them in the store's head) would come back only after
		// AckWait, which a deferred sink sets to hours: replay them now,
		// from the ack floor on.
		if err := in.replayUnacked(ctx, cons); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		defer in.flushDeferred()
	}
	in.log.Info("ingest started", "stream", in.cfg.Stream, "consumer", in.cfg.Durable, "batch", in.cfg.Batch,
		"deferred_ack", in.deferred != nil)
	msgs := make([]jetstream.Msg, 0, in.cfg.Batch)
	var lastCheck time.Time
	var excess int64
	for {
		if in.deferred != nil && time.Since(lastCheck) >= in.cfg.StrandedCheck {
			lastCheck = time.Now()
			excess = in.checkStranded(ctx, cons, excess)
		}
		msgs, err = in.fetch(ctx, cons, msgs[:0])
		if len(msgs) > 0 {
			// Even when ctx was cancelled meanwhile, what was fetched is
			// stored and acknowledged: the connection outlives Run. The
			// sink gets a context of its own, bounded by AckWait, since
			// past that the messages come back anyway.
			wctx, cancel := context.WithTimeout(context.Background(), in.cfg.AckWait)
			in.process(wctx, msgs)
			cancel()
		}
		switch {
		case ctx.Err() != nil:
			in.log.Info("ingest stopped")
			return nil
		case errors.Is(err, nats.ErrConnectionClosed):
			return fmt.Errorf("ingest: %w", err)
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			// An idle fetch expired: go round (and check for strays).
		case err != nil:
			in.log.Warn("ingest: fetch failed, retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// fetchWait bounds one wait for the first message of a fetch.
const fetchWait = 5 * time.Second

// checkStranded replays this consumer's unacknowledged messages when the
// server counts more of them than the ingester holds, by the same number in
// two checks in a row. Such messages were delivered to a pull request
// nobody read any more (a consumer leader changed or a fetch gave up while
// they were on the way); with a deferred sink's AckWait of hours they would
// otherwise come back only then, and queries would miss them until.
// Replaying also hands the held ones over again, which is harmless (writes
// are idempotent) but costs a second write of everything held, so a
// difference that moves (acknowledgements still on their way under load)
// does not trigger it. prev is the previous check's difference; the new one
// is returned.
func (in *Ingester) checkStranded(ctx context.Context, cons jetstream.Consumer, prev int64) int64 {
	// Acknowledgements sent so far must reach the server before it counts.
	if nc := in.js.Conn(); nc != nil && !nc.IsClosed() {
		if err := nc.FlushTimeout(2 * time.Second); err != nil {
			return 0
		}
	}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := cons.Info(ictx)
	if err != nil {
		return 0
	}
	held := in.held.Load()
	excess := int64(info.NumAckPending) - held
	if excess <= 0 {
		return 0
	}
	if excess != prev {
		return excess
	}
	if _, err := in.js.ResetConsumer(ictx, in.cfg.Stream, in.cfg.Durable); err != nil {
		in.log.Warn("ingest: cannot replay stranded messages", "consumer", in.cfg.Durable, "err", err)
		return excess
	}
	in.strandedResets.Inc()
	in.log.Warn("ingest: messages delivered but never received; replaying from the ack floor",
		"consumer", in.cfg.Durable, "unacknowledged", info.NumAckPending, "held", held,
		"from_stream_seq", info.AckFloor.Stream+1)
	return 0
}

// fetch waits for one message, then takes whatever else is already waiting,
// up to Batch. A single Fetch(Batch) would hold a lone message until the
// batch fills or the request expires; this way a quiet stream is stored at
// once and a busy one still commits in large transactions.
func (in *Ingester) fetch(ctx context.Context, cons jetstream.Consumer, msgs []jetstream.Msg) ([]jetstream.Msg, error) {
	// The wait is bounded so that the loop comes round when the stream is
	// idle; the server expires the request before the client gives up on
	// it, so that no message is delivered to an abandoned request.
	fctx, cancel := context.WithTimeout(ctx, fetchWait)
	defer cancel()
	first, err := cons.Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		return msgs, err
	}
	for m := range first.Messages() {
		msgs = append(msgs, m)
	}
	if err := first.Error(); err != nil || len(msgs) == 0 || in.cfg.Batch == 1 {
		return msgs, err
	}
	rest, err := cons.FetchNoWait(in.cfg.Batch - 1)
	if err != nil {
		return msgs, err
	}
	for m := range rest.Messages() {
		msgs = append(msgs, m)
	}
	return msgs, rest.Error()
}

// process hands the points of msgs to the sink in one call and settles
// every message.
func (in *Ingester) process(ctx context.Context, msgs []jetstream.Msg) {
	type decoded struct {
		msg    jetstream.Msg
		id     string
		points int
	}
	var batches []protocols.Batch
	var ok []decoded
	// The store copies what it keeps of a point before Write/WriteDeferred
	// returns, so on the store's stream one fetch's points can live in the
	// slabs of the previous one. (The enrich stage may hand points to the
	// quarantine, so it gets fresh memory.)
	in.wireDec.Reset()
	for _, m := range msgs {
		id := batchID(m)
		body, err := in.decompress(m.Headers().Get("Content-Encoding"), m.Data())
		if err != nil {
			in.badBatches.Inc()
			if allowed, suppressed := in.badBatchLog.allow(time.Now()); allowed {
				in.log.Warn("ingest: dropping batch that cannot be decompressed", "batch", id, "subject", m.Subject(),
					"err", err, "suppressed", suppressed)
			}
			if err := m.TermWithReason(err.Error()); err != nil {
				in.log.Warn("ingest: term failed", "batch", id, "err", err)
			}
			continue
		}
		// Lines without a timestamp get the time JetStream stored the
		// message, not the time of processing, so that a redelivery
		// writes the same series+timestamp again instead of a new point.
		var now time.Time
		if md, err := m.Metadata(); err == nil {
			now = md.Timestamp
		}
		var pts []protocols.Point
		if wire.Is(body) {
			// The collector's own stages publish the binary format. Where
			// it could also come from an agent (CS_RAW) it is validated
			// like decoded line protocol.
			if in.cfg.TrustWire {
				pts, err = in.wireDec.Decode(body, wire.Options{})
			} else {
				pts, err = wire.Decode(body, wire.Options{Validate: true})
			}
			if err != nil {
				in.badBatches.Inc()
				if allowed, suppressed := in.badBatchLog.allow(time.Now()); allowed {
					in.log.Warn("ingest: dropping batch that cannot be decoded", "batch", id, "subject", m.Subject(),
						"err", err, "suppressed", suppressed)
				}
				if err := m.TermWithReason(err.Error()); err != nil {
					in.log.Warn("ingest: term failed", "batch", id, "err", err)
				}
				continue
			}
			ok = append(ok, decoded{msg: m, id: id, points: len(pts)})
			batches = append(batches, protocols.Batch{ID: id, Points: pts})
			continue
		}
		err = protocols.Decode(body, protocols.DecodeOptions{Now: now}, func(p protocols.Point) error {
			pts = append(pts, p)
			return nil
		})
		var de *protocols.DecodeErrors
		if errors.As(err, &de) {
			bad := len(de.Errs) + de.Dropped
			in.badLines.Add(bad)
			if allowed, suppressed := in.badLineLog.allow(time.Now()); allowed {
				in.log.Warn("ingest: bad lines in batch, storing the rest", "batch", id, "subject", m.Subject(),
					"bad_lines", bad, "good_points", len(pts), "err", de.Errs[0], "suppressed", suppressed)
			}
		} else if err != nil {
			// Decode only fails otherwise when the callback does, and ours
			// does not; count it as a bad line rather than lose it quietly.
			in.badLines.Inc()
			in.log.Warn("ingest: decode failed", "batch", id, "err", err)
		}
		ok = append(ok, decoded{msg: m, id: id, points: len(pts)})
		batches = append(batches, protocols.Batch{ID: id, Points: pts})
	}
	if len(ok) == 0 {
		return
	}
	if in.deferred != nil {
		// Only the reply subjects are held, not the messages: their
		// bodies (already decoded) can go while the store holds the
		// points for up to a window.
		held := make([]heldMsg, len(ok))
		for i, d := range ok {
			held[i] = heldMsg{reply: d.msg.Reply(), id: d.id}
		}
		in.held.Add(int64(len(held)))
		n, err := in.deferred.WriteDeferred(ctx, batches, func(err error) { in.settle(held, err) })
		if err != nil {
			in.writeErrors.Inc()
			in.log.Error("ingest: write failed, batches will be redelivered", "stream", in.cfg.Stream, "batches", len(ok),
				"first_batch", ok[0].id, "retry_in", in.cfg.RetryDelay, "err", err)
			in.settle(held, err)
			return
		}
		in.points.Add(n)
		return
	}
	n, err := in.w.Write(ctx, batches)
	if err != nil {
		in.writeErrors.Inc()
		in.log.Error("ingest: write failed, batches will be redelivered", "stream", in.cfg.Stream, "batches", len(ok),
			"first_batch", ok[0].id, "retry_in", in.cfg.RetryDelay, "err", err)
		for _, d := range ok {
			if err := d.msg.NakWithDelay(in.cfg.RetryDelay); err != nil {
				in.log.Warn("ingest: nak failed", "batch", d.id, "err", err)
			}
		}
		return
	}
	in.points.Add(n)
	for _, d := range ok {
		// A lost ack only means a redelivery, which the store absorbs as
		// an idempotent rewrite, so the ack is not waited for.
		if err := d.msg.Ack(); err != nil {
			in.log.Warn("ingest: ack failed, batch will be redelivered", "batch", d.id, "err", err)
			continue
		}
		in.batches.Inc()
		in.log.Debug("ingest: batch done", "stream", in.cfg.Stream, "batch", d.id, "subject", d.msg.Subject(), "points", d.points)
	}
}

// batchID is the agent's <agent-id>-<batch-seq>, or the stream sequence for
// a writer that set no Nats-Msg-Id.
func batchID(m jetstream.Msg) string {
	if id := m.Headers().Get(jetstream.MsgIDHeader); id != "" {
		return id
	}
	if md, err := m.Metadata(); err == nil {
		return "seq-" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	return "unknown"
}

// s2 streams start with this chunk; anything else is taken as an s2 block.
var s2StreamMagic = []byte("\xff\x06\x00\x00S2sTwO")

func (in *Ingester) decompress(encoding string, data []byte) ([]byte, error) {
	limit := in.cfg.MaxDecodedBytes
	switch enc := strings.ToLower(strings.TrimSpace(encoding)); enc {
	case "", "identity":
		return data, nil
	case "zstd":
		out, err := in.zstd.DecodeAll(data, in.bodyBuf[:0])
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		in.keepBody(out)
		return out, nil
	case "s2":
		if bytes.HasPrefix(data, s2StreamMagic) {
			r := s2.NewReader(bytes.NewReader(data))
			out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
			if err != nil {
				return nil, fmt.Errorf("s2 stream: %w", err)
			}
			if len(out) > limit {
				return nil, fmt.Errorf("s2 stream: decodes to more than %d bytes", limit)
			}
			return out, nil
		}
		n, err := s2.DecodedLen(data)
		if err != nil {
			return nil, fmt.Errorf("s2: %w", err)
		}
		if n > limit {
			return nil, fmt.Errorf("s2: decodes to %d bytes, more than %d", n, limit)
		}
		out, err := s2.Decode(in.bodyBuf[:cap(in.bodyBuf)], data)
		if err != nil {
			return nil, fmt.Errorf("s2: %w", err)
		}
		in.keepBody(out)
		return out, nil
	default:
		return nil, fmt.Errorf("unknown Content-Encoding %q (want zstd, s2 or none)", enc)
	}
}

// keepBody keeps a decompression buffer for the next message, unless it is
// too large to keep for good.
func (in *Ingester) keepBody(b []byte) {
	if cap(b) <= 4<<20 && cap(b) > cap(in.bodyBuf) {
		in.bodyBuf = b[:0]
	}
}

// logLimiter lets one log line through per interval and counts the rest,
// so a flood of bad input is visible without drowning the log.
type logLimiter struct {
	every      time.Duration
	next       time.Time
	suppressed int
}

// allow reports whether to log now and how many were suppressed since the
// last line that was.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.next, l.suppressed = now.Add(l.every), 0
	return true, n
}
