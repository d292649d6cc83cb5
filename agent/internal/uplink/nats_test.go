package uplink

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/citysense/citysense/agent/internal/buffer"
	"github.com/citysense/citysense/protocols"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const agentID = "gw-test"

// batch returns the points of test batch i.
func batch(i int) []protocols.Point {
	out := make([]protocols.Point, 3)
	for j := range out {
		out[j] = protocols.Point{
			Measurement: "air",
			Tags:        []protocols.Tag{{Key: "station", Value: fmt.Sprintf("s%04d", i)}},
			Fields:      []protocols.Field{{Key: "pm25", Value: protocols.Float(float64(i*10+j) / 10)}},
			Time:        time.Date(2025, 1, 1, 0, 0, i, j, time.UTC).UnixNano(),
		}
	}
	return out
}

func openBuffer(t *testing.T) *buffer.Buffer {
	t.Helper()
	b, err := buffer.Open(t.TempDir(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func appendBatches(t *testing.T, b *buffer.Buffer, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := b.Append(context.Background(), batch(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func fastConfig(url string) Config {
	return Config{
		AgentID: agentID, URL: url,
		PublishTimeout: 2 * time.Second,
		MinBackoff:     10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		ReconnectWait: 50 * time.Millisecond,
	}
}

// start runs u in the background; the returned func cancels it and returns
// Run's error.
func start(t *testing.T, u *NATS, src Source) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx, src) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func empty(b *buffer.Buffer) func() bool {
	return func() bool { n, _ := b.Pending(); return n == 0 }
}

// fakePub records every attempt and answers from a script.
type fakePub struct {
	mu       sync.Mutex
	attempts []*nats.Msg
	fail     int           // fail this many attempts first
	failID   string        // fail attempts with this id …
	failOpen chan struct{} // … until this is closed
	block    chan struct{} // if set, each publish waits for it
	started  chan struct{} // if set, signalled when a publish begins
}

func (f *fakePub) PublishMsg(ctx context.Context, m *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if f.started != nil {
		f.started <- struct{}{}
	}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts = append(f.attempts, m)
	if len(f.attempts) <= f.fail {
		return nil, errors.New("nats: timeout")
	}
	if f.failID != "" && m.Header.Get(jetstream.MsgIDHeader) == f.failID {
		select {
		case <-f.failOpen:
		default:
			return nil, errors.New("nats: timeout")
		}
	}
	return &jetstream.PubAck{Stream: "CS_RAW", Sequence: uint64(len(f.attempts))}, nil
}

func newFake(t *testing.T, f *fakePub) *NATS {
	t.Helper()
	u, err := New(fastConfig("nats://fake:4222"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	u.dial = func() (publisher, func(), error) { return f, func() {}, nil }
	return u
}

func TestNATS_Run_retriesWithSameID(t *testing.T) {
	b := openBuffer(t)
	appendBatches(t, b, 1, 2)
	want, _ := b.Peek(2)
	f := &fakePub{fail: 3}
	u := newFake(t, f)
	stop := start(t, u, b)
	waitFor(t, "the buffer to drain", empty(b))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range f.attempts {
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
		if m.Subject != "cs.raw.gw-test" || m.Header.Get("Content-Encoding") != "zstd" {
			t.Fatalf("attempt to %q with headers %v", m.Subject, m.Header)
		}
	}
	wantIDs := []string{"gw-test-1", "gw-test-1", "gw-test-1", "gw-test-1", "gw-test-2"}
	if !reflect.DeepEqual(ids, wantIDs) {
		t.Fatalf("attempts %v, want %v", ids, wantIDs)
	}
	if !reflect.DeepEqual(f.attempts[3].Data, want[0].Body) || !reflect.DeepEqual(f.attempts[4].Data, want[1].Body) {
		t.Fatal("bodies differ from the buffered entries")
	}
	if got := u.Stats(); got != (Stats{BatchesSent: 2, PointsSent: 6, PublishErrors: 3}) {
		t.Fatalf("stats %+v", got)
	}
}

func (f *fakePub) count(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.attempts {
		if m.Header.Get(jetstream.MsgIDHeader) == id {
			n++
		}
	}
	return n
}

func TestNATS_Run_acksSentBatchesBeforeBackingOff(t *testing.T) {
	b := openBuffer(t)
	appendBatches(t, b, 1, 3)
	f := &fakePub{failID: "gw-test-2", failOpen: make(chan struct{})}
	u := newFake(t, f)
	stop := start(t, u, b)
	// While batch 2 keeps failing, batch 1 (sent in the same round) must
	// already be out of the buffer: a long outage would otherwise outlast
	// the stream's duplicate window and a crash would store it twice.
	waitFor(t, "batch 2 to be retried", func() bool { return f.count("gw-test-2") >= 3 })
	es, _ := b.Peek(10)
	if !reflect.DeepEqual([]uint64{es[0].Seq, es[1].Seq}, []uint64{2, 3}) || len(es) != 2 {
		t.Fatalf("while batch 2 fails the buffer holds %d entries from seq %d; want 2 and 3", len(es), es[0].Seq)
	}
	close(f.failOpen)
	waitFor(t, "the buffer to drain", empty(b))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if f.count("gw-test-1") != 1 || f.count("gw-test-3") != 1 {
		t.Fatal("batches 1 and 3 were not sent exactly once")
	}
}

func TestNATS_Run_finishesInFlightPublishOnCancel(t *testing.T) {
	b := openBuffer(t)
	appendBatches(t, b, 1, 3)
	f := &fakePub{block: make(chan struct{}), started: make(chan struct{}, 10)}
	u := newFake(t, f)
	stop := start(t, u, b)
	<-f.started // batch 1 is in flight
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(20 * time.Millisecond) // let the cancel land while the publish waits
	close(f.block)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	es, _ := b.Peek(10)
	if len(f.attempts) != 1 || len(es) != 2 || es[0].Seq != 2 {
		t.Fatalf("after cancel: %d attempts, buffer holds %d entries; want batch 1 sent and acknowledged, 2 and 3 kept", len(f.attempts), len(es))
	}
}

func TestNATS_backoff(t *testing.T) {
	u := newFake(t, &fakePub{})
	for _, tt := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{1, 5 * time.Millisecond, 10 * time.Millisecond},
		{2, 10 * time.Millisecond, 20 * time.Millisecond},
		{4, 40 * time.Millisecond, 80 * time.Millisecond},
		{5, 50 * time.Millisecond, 100 * time.Millisecond}, // capped
		{500, 50 * time.Millisecond, 100 * time.Millisecond},
	} {
		for range 50 {
			if d := u.backoff(tt.n); d < tt.lo || d > tt.hi {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tt.n, d, tt.lo, tt.hi)
			}
		}
	}
}

func TestNew_badConfig(t *testing.T) {
	for _, c := range []Config{{AgentID: "a.b", URL: "nats://x"}, {AgentID: "", URL: "nats://x"}, {AgentID: "a"}} {
		if _, err := New(c, nil, nil); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
}

func TestMsgID(t *testing.T) {
	if got := MsgID("gw-017", 42); got != "gw-017-42" {
		t.Fatalf("MsgID = %q", got)
	}
}

func TestRedact(t *testing.T) {
	got := redact("nats://user:secret@a:4222, nats://b:4222")
	if got != "nats://user:xxxxx@a:4222,nats://b:4222" {
		t.Fatalf("redact = %q", got)
	}
}

// streamMsgs returns every message of the stream, in stream order.
func streamMsgs(t *testing.T, url string) []*jetstream.RawStreamMsg {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "CS_RAW")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get stream seq %d: %v", seq, err)
		}
		out = append(out, m)
	}
	if uint64(len(out)) != info.State.Msgs {
		t.Fatalf("read %d messages, stream says %d", len(out), info.State.Msgs)
	}
	return out
}

// checkStream asserts the stream holds batches 1..n exactly once, in order,
// with the contract's subject, headers and bodies.
func checkStream(t *testing.T, url string, n int) {
	t.Helper()
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	msgs := streamMsgs(t, url)
	if len(msgs) != n {
		var ids []string
		for _, m := range msgs {
			ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
		}
		t.Fatalf("stream holds %d messages %v, want %d", len(msgs), ids, n)
	}
	for i, m := range msgs {
		if id := m.Header.Get(jetstream.MsgIDHeader); id != MsgID(agentID, uint64(i+1)) {
			t.Fatalf("message %d has id %q, want %q", i+1, id, MsgID(agentID, uint64(i+1)))
		}
		if m.Subject != "cs.raw."+agentID || m.Header.Get("Content-Encoding") != "zstd" {
			t.Fatalf("message %d on %q with %v", i+1, m.Subject, m.Header)
		}
		lp, err := dec.DecodeAll(m.Data, nil)
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		pts, err := protocols.DecodeAll(lp, protocols.DecodeOptions{})
		if err != nil || !reflect.DeepEqual(pts, batch(i+1)) {
			t.Fatalf("message %d holds %v (%v), want %v", i+1, pts, err, batch(i+1))
		}
	}
}

func TestNATS_Run_jetStream(t *testing.T) {
	srv := startServer(t, t.TempDir(), -1)
	url := srv.ClientURL()
	createStream(t, url)
	b := openBuffer(t)
	appendBatches(t, b, 1, 5)
	u, err := New(fastConfig(url), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, u, b)
	waitFor(t, "the buffer to drain", empty(b))
	if !u.Connected() {
		t.Error("Connected() = false while sending")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, url, 5)
	if got := u.Stats(); got != (Stats{BatchesSent: 5, PointsSent: 15}) {
		t.Fatalf("stats %+v", got)
	}
}

func TestNATS_Run_resendIsDeduplicated(t *testing.T) {
	srv := startServer(t, t.TempDir(), -1)
	url := srv.ClientURL()
	createStream(t, url)
	b := openBuffer(t)
	appendBatches(t, b, 1, 5)

	// An earlier run published batches 1–3 and died before acknowledging
	// them in the buffer.
	es, _ := b.Peek(3)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	for _, e := range es {
		m := nats.NewMsg("cs.raw." + agentID)
		m.Header.Set(jetstream.MsgIDHeader, MsgID(agentID, e.Seq))
		m.Header.Set("Content-Encoding", "zstd")
		m.Data = e.Body
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()

	u, _ := New(fastConfig(url), nil, nil)
	stop := start(t, u, b)
	waitFor(t, "the buffer to drain", empty(b))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, url, 5)
	if got := u.Stats(); got.BatchesSent != 5 || got.Duplicates != 3 {
		t.Fatalf("stats %+v, want 5 sent of which 3 duplicates", got)
	}
}

func TestNATS_Run_serverRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a server")
	}
	store := t.TempDir()
	srv := startServer(t, store, -1)
	url := srv.ClientURL()
	createStream(t, url)
	b := openBuffer(t)
	u, _ := New(fastConfig(url), nil, nil)
	stop := start(t, u, b)

	// A writer keeps appending while the server goes away and comes back.
	const total = 30
	written := make(chan struct{})
	go func() {
		defer close(written)
		for i := 1; i <= total; i++ {
			if err := b.Append(context.Background(), batch(i)); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	waitFor(t, "some batches sent", func() bool { return u.Stats().BatchesSent >= 5 })
	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, "the uplink to notice", func() bool { return !u.Connected() })
	time.Sleep(100 * time.Millisecond) // publishes fail meanwhile; the writer goes on
	startServer(t, store, clientPort(t, url))

	<-written
	waitFor(t, "the buffer to drain", empty(b))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, url, total)
	st := u.Stats()
	if st.BatchesSent != total || st.PointsSent != 3*total {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("publish errors during the outage: %d, duplicates: %d", st.PublishErrors, st.Duplicates)
}
