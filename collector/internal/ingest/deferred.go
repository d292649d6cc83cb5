package ingest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/citysense/citysense/protocols"
)

// DeferredSink is a Sink that persists later than it returns: the store
// keeps points in memory until their window closes, and the stream is its
// write-ahead log. An Ingester whose sink is a DeferredSink acknowledges
// each message only when done reports it persisted, so a crash in between
// replays it.
type DeferredSink interface {
	Sink
	// WriteDeferred hands the batches over and returns how many points it
	// took. done is called exactly once, possibly before WriteDeferred
	// returns and from any goroutine: nil once every point is persisted,
	// or the error that kept them from it. It must not block.
	WriteDeferred(ctx context.Context, batches []protocols.Batch, done func(error)) (int, error)
	// Flush persists everything handed over and runs the pending dones.
	// The Ingester calls it when it stops, so that a clean shutdown leaves
	// nothing to replay.
	Flush(ctx context.Context) error
}

// DeferredWriter is the store as a DeferredSink needs it.
type DeferredWriter interface {
	// Append takes the points into memory; done runs once they are on
	// disk.
	Append(pts []protocols.Point, done func(error)) (int, error)
	// Flush writes everything taken so far and returns when it is on
	// disk.
	Flush(ctx context.Context) error
}

// DeferredPoints adapts a DeferredWriter to a DeferredSink: all points of a
// fetch go to one Append.
func DeferredPoints(w DeferredWriter) DeferredSink { return deferredPoints{w} }

type deferredPoints struct{ w DeferredWriter }

func (d deferredPoints) WriteDeferred(_ context.Context, batches []protocols.Batch, done func(error)) (int, error) {
	pts, put := concat(batches)
	defer put()
	return d.w.Append(pts, done)
}

// Write is the synchronous fallback: append, then flush everything.
func (d deferredPoints) Write(ctx context.Context, batches []protocols.Batch) (int, error) {
	pts, put := concat(batches)
	n, err := d.w.Append(pts, nil)
	put()
	if err != nil {
		return 0, err
	}
	if err := d.w.Flush(ctx); err != nil {
		return 0, err
	}
	return n, nil
}

func (d deferredPoints) Flush(ctx context.Context) error { return d.w.Flush(ctx) }

// concatPool holds the slices concat joins batches in: the writer copies
// what it keeps before Append returns, so put gives the slice back then.
var concatPool sync.Pool // *[]protocols.Point

// concat joins the batches' points; put returns the memory once the
// points were handed over.
func concat(batches []protocols.Batch) (pts []protocols.Point, put func()) {
	if len(batches) == 1 {
		return batches[0].Points, func() {}
	}
	n := 0
	for _, b := range batches {
		n += len(b.Points)
	}
	bp, _ := concatPool.Get().(*[]protocols.Point)
	if bp == nil {
		bp = new([]protocols.Point)
	}
	if cap(*bp) < n {
		*bp = make([]protocols.Point, 0, n)
	}
	pts = (*bp)[:0]
	for _, b := range batches {
		pts = append(pts, b.Points...)
	}
	return pts, func() {
		clear(pts) // the pool must not keep the points' memory alive
		if cap(pts) <= 1<<18 {
			*bp = pts[:0]
			concatPool.Put(bp)
		}
	}
}

// heldMsg is what acknowledging a message later takes: its reply subject
// (and its batch id, for the log).
type heldMsg struct{ reply, id string }

// JetStream's acknowledgement bodies, sent to a message's reply subject.
var (
	ackBody = []byte("+ACK")
	nakBody = []byte("-NAK")
)

// settle acknowledges held messages once their points are persisted, or
// has them redelivered when that failed. It runs on the sink's goroutine.
func (in *Ingester) settle(msgs []heldMsg, err error) {
	defer in.held.Add(-int64(len(msgs)))
	nc := in.js.Conn()
	if err != nil {
		in.writeErrors.Inc()
		in.log.Warn("ingest: held batches not persisted, will be redelivered", "stream", in.cfg.Stream,
			"batches", len(msgs), "err", err)
		nak := nakBody
		if d := in.cfg.RetryDelay; d > 0 {
			nak = fmt.Appendf(nil, "-NAK {\"delay\": %d}", d.Nanoseconds())
		}
		for _, m := range msgs {
			// Failing here only means the message comes back after
			// AckWait (or at the next start) instead of RetryDelay.
			_ = nc.Publish(m.reply, nak)
		}
		return
	}
	for _, m := range msgs {
		if err := nc.Publish(m.reply, ackBody); err != nil {
			in.log.Warn("ingest: ack failed, batch will be redelivered", "batch", m.id, "err", err)
			continue
		}
		in.batches.Inc()
	}
}

// replayUnacked resets the consumer to its ack floor when it has messages
// out, so that they are delivered again now.
func (in *Ingester) replayUnacked(ctx context.Context, cons jetstream.Consumer) error {
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("ingest: consumer %s info: %w", in.cfg.Durable, err)
	}
	if info.NumAckPending == 0 {
		return nil
	}
	if _, err := in.js.ResetConsumer(ctx, in.cfg.Stream, in.cfg.Durable); err != nil {
		return fmt.Errorf("ingest: reset consumer %s to its ack floor: %w", in.cfg.Durable, err)
	}
	in.log.Info("ingest: replaying unacknowledged messages", "stream", in.cfg.Stream, "consumer", in.cfg.Durable,
		"messages", info.NumAckPending, "from_stream_seq", info.AckFloor.Stream+1)
	return nil
}

// flushDeferred persists what the sink holds when Run stops and waits for
// the acknowledgements to reach the server, so that a clean stop replays
// nothing at the next start.
func (in *Ingester) flushDeferred() {
	ctx, cancel := context.WithTimeout(context.Background(), in.cfg.AckWait)
	defer cancel()
	if err := in.deferred.Flush(ctx); err != nil {
		in.log.Warn("ingest: flushing the store at stop failed; its messages will be replayed", "err", err)
		return
	}
	if nc := in.js.Conn(); nc != nil && !nc.IsClosed() {
		if err := nc.FlushTimeout(5 * time.Second); err != nil {
			in.log.Warn("ingest: acknowledgements may not have reached the server; they will be replayed", "err", err)
		}
	}
}

// Interface guards.
var _ DeferredSink = deferredPoints{}
