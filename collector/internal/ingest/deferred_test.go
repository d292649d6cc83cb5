package ingest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citysense/citysense/collector/internal/bus"
	"github.com/citysense/citysense/protocols"
)

// holdingSink is a DeferredSink that keeps every done until the test
// releases it.
type holdingSink struct {
	mu      sync.Mutex
	points  int
	dones   []func(error)
	flushed int
}

func (h *holdingSink) WriteDeferred(_ context.Context, batches []protocols.Batch, done func(error)) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	pts, put := concat(batches)
	n := len(pts)
	put()
	h.points += n
	h.dones = append(h.dones, done)
	return n, nil
}

func (h *holdingSink) Write(context.Context, []protocols.Batch) (int, error) {
	panic("the Ingester must use WriteDeferred")
}

func (h *holdingSink) Flush(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.flushed++
	return nil
}

func (h *holdingSink) release(err error) {
	h.mu.Lock()
	dones := h.dones
	h.dones = nil
	h.mu.Unlock()
	for _, d := range dones {
		d(err)
	}
}

func (h *holdingSink) held() (points, dones int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.points, len(h.dones)
}

// runStoppable runs an Ingester on CS_RAW that the test can stop; stop
// cancels it and waits.
func (h *harness) runStoppable(t *testing.T, w Sink, cfg Config) (in *Ingester, stop func()) {
	t.Helper()
	cfg.Stream = bus.StreamRaw
	in, err := New(h.bus.JetStream(), w, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return in, stop
}

func TestIngester_Run_deferredAcksOnlyWhenPersisted(t *testing.T) {
	h := newHarness(t)
	sink := &holdingSink{}
	in, _ := h.runStoppable(t, sink, Config{})
	h.publish(t, "gw-1-1", "", []byte("air,station=s1 pm25=1 1735689600000000000\n"))
	h.publish(t, "gw-1-2", "", []byte("air,station=s1 pm25=2 1735689660000000000\nair,station=s2 pm25=3 1735689660000000000\n"))
	waitFor(t, "both batches in the sink", func() bool { p, _ := sink.held(); return p == 3 })
	// Taken, not persisted: the work queue still holds both.
	time.Sleep(50 * time.Millisecond)
	if n := h.rawMsgs(t); n != 2 {
		t.Fatalf("CS_RAW holds %d messages before done, want 2", n)
	}
	if b := in.batches.Get(); b != 0 {
		t.Fatalf("batches acknowledged before done: %d", b)
	}
	sink.release(nil)
	waitFor(t, "CS_RAW to empty", func() bool { return h.rawMsgs(t) == 0 })
	if b, p := in.batches.Get(), in.points.Get(); b != 2 || p != 3 {
		t.Errorf("batches %d points %d, want 2 and 3", b, p)
	}
}

// A run that stops without its points persisted (a crash, as far as the
// stream can tell) must not delay the next run by the hours of AckWait a
// deferred sink needs: the next run replays at once.
func TestIngester_Run_deferredReplaysUnackedAtStart(t *testing.T) {
	h := newHarness(t)
	cfg := Config{AckWait: time.Hour}
	first := &holdingSink{}
	_, stop := h.runStoppable(t, first, cfg)
	h.publish(t, "gw-1-1", "", []byte("air,station=s1 pm25=1 1735689600000000000\n"))
	h.publish(t, "gw-1-2", "", []byte("air,station=s1 pm25=2 1735689660000000000\n"))
	waitFor(t, "the first run to take both", func() bool { p, _ := first.held(); return p == 2 })
	stop()
	if first.flushed != 1 {
		t.Errorf("the sink was flushed %d times at stop, want 1", first.flushed)
	}

	second := &holdingSink{}
	in, _ := h.runStoppable(t, second, cfg)
	waitFor(t, "the second run to get both again", func() bool { p, _ := second.held(); return p == 2 })
	second.release(nil)
	waitFor(t, "CS_RAW to empty", func() bool { return h.rawMsgs(t) == 0 })
	if b := in.batches.Get(); b != 2 {
		t.Errorf("second run acknowledged %d batches, want 2", b)
	}
	// The first run's dones come too late to matter and must not panic.
	first.release(nil)
}

func TestIngester_Run_deferredFailureRedelivers(t *testing.T) {
	h := newHarness(t)
	sink := &holdingSink{}
	in, _ := h.runStoppable(t, sink, Config{RetryDelay: 20 * time.Millisecond})
	h.publish(t, "gw-1-1", "", []byte("air,station=s1 pm25=1 1735689600000000000\n"))
	waitFor(t, "the batch in the sink", func() bool { _, d := sink.held(); return d == 1 })
	sink.release(context.DeadlineExceeded)
	waitFor(t, "the batch again", func() bool { p, d := sink.held(); return p == 2 && d == 1 })
	sink.release(nil)
	waitFor(t, "CS_RAW to empty", func() bool { return h.rawMsgs(t) == 0 })
	if e := in.writeErrors.Get(); e != 1 {
		t.Errorf("write errors %d, want 1", e)
	}
}

// With the real store: points are readable as soon as they are taken, the
// messages stay unacknowledged while the points are only in the head, and
// a flush acknowledges them.
func TestIngester_Run_deferredStore(t *testing.T) {
	h := newHarness(t)
	in, _ := h.runStoppable(t, DeferredPoints(h.store), Config{})
	h.publish(t, "gw-1-1", "", []byte("air,station=s1 pm25=1.5 1735689600000000000\nair,station=s1 pm25=2.5 1735689660000000000\n"))
	waitFor(t, "the points to be readable", func() bool { return len(selectAll(t, h.store, "pm25")) == 2 })
	if n := h.rawMsgs(t); n != 1 {
		t.Fatalf("CS_RAW holds %d messages while the points are in the head, want 1", n)
	}
	if err := h.store.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "CS_RAW to empty", func() bool { return h.rawMsgs(t) == 0 })
	if b := in.batches.Get(); b != 1 {
		t.Errorf("batches %d, want 1", b)
	}
}

// A message delivered to a pull request nobody reads (here one made by
// hand to an inbox without a subscriber, queued before the Ingester's own)
// stays unacknowledged until AckWait, an hour here: the Ingester notices
// that the server counts one more unacknowledged message than it holds
// and replays, so the message reaches the sink within seconds.
func TestIngester_Run_deferredReplaysStranded(t *testing.T) {
	h := newHarness(t)
	cfg := Config{AckWait: time.Hour, StrandedCheck: 100 * time.Millisecond, Durable: "stranded"}
	// Create the consumer, then stop: the next run starts with nothing
	// unacknowledged, so its start-up replay does not apply.
	first, stop := h.runStoppable(t, &holdingSink{}, cfg)
	<-first.ConsumerReady()
	stop()

	if _, err := h.bus.JetStream().Consumer(context.Background(), bus.StreamRaw, "stranded"); err != nil {
		t.Fatalf("consumer: %v", err)
	}
	nc := h.bus.Conn()
	// The server drops pull requests whose inbox has no subscriber, so the
	// abandoned reader subscribes and then never acknowledges.
	lost, err := nc.SubscribeSync("_INBOX.abandoned-reader")
	if err != nil {
		t.Fatal(err)
	}
	defer lost.Unsubscribe()
	req := []byte(`{"batch":1,"expires":60000000000}`)
	if err := nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+bus.StreamRaw+".stranded", "_INBOX.abandoned-reader", req); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	sink := &holdingSink{}
	in, _ := h.runStoppable(t, sink, cfg)
	<-in.ConsumerReady()
	time.Sleep(200 * time.Millisecond) // the Ingester's own pull request is queued
	h.publish(t, "gw-1-1", "", []byte("air,station=s1 pm25=1 1735689600000000000\n"))
	h.publish(t, "gw-1-2", "", []byte("air,station=s1 pm25=2 1735689660000000000\nair,station=s2 pm25=3 1735689660000000000\n"))
	// The first message went to the abandoned reader; the Ingester got
	// the second (2 points). After the replay it has the first too.
	if m, err := lost.NextMsg(5 * time.Second); err != nil || !strings.Contains(string(m.Data), "pm25=1 ") {
		t.Fatalf("the abandoned reader did not get the first message: %v", err)
	}
	waitFor(t, "the stranded message replayed", func() bool { p, _ := sink.held(); return p >= 3 })
	if r := in.strandedResets.Get(); r < 1 {
		t.Errorf("stranded replays = %d, want at least 1", r)
	}
	sink.release(nil)
	waitFor(t, "CS_RAW to empty", func() bool { return h.rawMsgs(t) == 0 })
}
