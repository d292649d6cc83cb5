package uplink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/klauspost/compress/zstd"
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

func openBuffer(t *testing.T, outputs ...string) *buffer.Buffer {
	t.Helper()
	if len(outputs) == 0 {
		outputs = []string{"nats"}
	}
	b, err := buffer.Open(t.TempDir(), buffer.Options{Outputs: outputs, FlushInterval: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// appendBatches stores test batches from..to, one buffer batch each.
func appendBatches(t *testing.T, b *buffer.Buffer, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := b.Append(context.Background(), batch(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func pending(b *buffer.Buffer, output string) int64 { return b.Stats().Outputs[output].PendingBatches }

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

// start runs o in the background; the returned func cancels it and returns
// Run's error.
func start(t *testing.T, o *Output, src Source) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx, src) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				err = errors.New("Run did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// fakeSender records every attempt and answers from a script.
type fakeSender struct {
	mu       sync.Mutex
	attempts []string // ids, in order
	bodies   map[string][]byte
	answer   func(id string, attempt int) result // nil: success
	block    chan struct{}                       // if set, answers wait for it
	conn     atomic.Bool
	upCh     chan struct{}
}

func newFakeSender() *fakeSender {
	f := &fakeSender{bodies: map[string][]byte{}, upCh: make(chan struct{}, 1)}
	f.conn.Store(true)
	return f
}

func (f *fakeSender) open(context.Context) error { return nil }
func (f *fakeSender) close()                     {}
func (f *fakeSender) connected() bool            { return f.conn.Load() }
func (f *fakeSender) up() <-chan struct{}        { return f.upCh }

func (f *fakeSender) send(b buffer.Batch, id string) <-chan result {
	f.mu.Lock()
	f.attempts = append(f.attempts, id)
	f.bodies[id] = b.Body
	n := 0
	for _, a := range f.attempts {
		if a == id {
			n++
		}
	}
	answer, block := f.answer, f.block
	f.mu.Unlock()
	ch := make(chan result, 1)
	if !f.conn.Load() {
		ch <- result{err: ErrNotConnected}
		return ch
	}
	go func() {
		if block != nil {
			<-block
		}
		if answer == nil {
			ch <- result{}
			return
		}
		ch <- answer(id, n)
	}()
	return ch
}

func (f *fakeSender) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.attempts...)
}

func (f *fakeSender) count(id string) int {
	n := 0
	for _, a := range f.ids() {
		if a == id {
			n++
		}
	}
	return n
}

func newFakeOutput(t *testing.T, f *fakeSender, cfg Config) *Output {
	t.Helper()
	cfg.Type, cfg.AgentID = TypeNATS, agentID
	if cfg.ID == "" {
		cfg.ID = "nats"
	}
	if cfg.NATS.URL == "" {
		cfg.NATS.URL = "nats://fake:4222"
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 20*time.Millisecond
	}
	if cfg.BackfillRate == 0 {
		cfg.BackfillRate = -1
	}
	o, err := New(cfg, metrics.NewSet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	o.snd = f
	return o
}

func TestOutput_Run_deliversAndAcks(t *testing.T) {
	b := openBuffer(t)
	appendBatches(t, b, 1, 5)
	f := newFakeSender()
	o := newFakeOutput(t, f, Config{})
	stop := start(t, o, b)
	waitFor(t, "the buffer to drain", func() bool { return pending(b, "nats") == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := []string{"gw-test-1", "gw-test-2", "gw-test-3", "gw-test-4", "gw-test-5"}
	if !reflect.DeepEqual(f.ids(), want) {
		t.Fatalf("sent %v, want %v", f.ids(), want)
	}
	if st := o.Stats(); st.BatchesSent != 5 || st.PointsSent != 15 || st.BacklogPoints != 15 || st.Errors != 0 {
		t.Fatalf("stats %+v (everything there at start is backlog)", st)
	}
}

func TestOutput_Run_retriesWithSameID(t *testing.T) {
	b := openBuffer(t)
	appendBatches(t, b, 1, 3)
	f := newFakeSender()
	f.answer = func(id string, n int) result {
		if id == "gw-test-2" && n <= 3 {
			return result{err: errors.New("nats: timeout")}
		}
		return result{}
	}
	o := newFakeOutput(t, f, Config{MaxInflight: 1})
	stop := start(t, o, b)
	waitFor(t, "the buffer to drain", func() bool { return pending(b, "nats") == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if f.count("gw-test-1") != 1 || f.count("gw-test-2") != 4 || f.count("gw-test-3") != 1 {
		t.Fatalf("attempts %v: want 1 once, 2 four times (3 failures), 3 once", f.ids())
	}
	if st := o.Stats(); st.BatchesSent != 3 || st.Errors != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOutput_Run_liveFirstBacklogPaced(t *testing.T) {
	b := openBuffer(t)
	appendBatches(t, b, 1, 4) // the backlog: there before the output started
	f := newFakeSender()
	// 0.1 point/s: the first backlog batch (3 points) has to wait 20 s.
	o := newFakeOutput(t, f, Config{BackfillRate: 0.1})
	stop := start(t, o, b)
	waitFor(t, "the output to take its positions", func() bool { return o.resets.Load() > 0 })
	appendBatches(t, b, 5, 7) // live
	waitFor(t, "the live batches", func() bool { return f.count("gw-test-7") == 1 })
	got := f.ids()
	if !reflect.DeepEqual(got, []string{"gw-test-5", "gw-test-6", "gw-test-7"}) {
		t.Fatalf("sent %v; want the live batches 5..7 and no backlog yet", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Outputs["nats"].PendingBatches != 4 {
		t.Fatalf("pending %+v, want the 4 backlog batches", st.Outputs)
	}

	// Unpaced, the next run drains the backlog, oldest first.
	f2 := newFakeSender()
	o2 := newFakeOutput(t, f2, Config{BackfillRate: -1})
	stop = start(t, o2, b)
	waitFor(t, "the backlog", func() bool { return pending(b, "nats") == 0 })
	stop()
	if got := f2.ids(); !reflect.DeepEqual(got, []string{"gw-test-1", "gw-test-2", "gw-test-3", "gw-test-4"}) {
		t.Fatalf("backlog sent as %v", got)
	}
}

func TestOutput_Run_reconnectMakesBacklog(t *testing.T) {
	b := openBuffer(t)
	f := newFakeSender()
	o := newFakeOutput(t, f, Config{})
	stop := start(t, o, b)
	defer stop()
	waitFor(t, "the output to take its positions", func() bool { return o.resets.Load() > 0 })
	appendBatches(t, b, 1, 1)
	waitFor(t, "batch 1", func() bool { return o.Stats().BatchesSent == 1 })
	// An outage: what is stored meanwhile waits, and goes out as backlog
	// once the destination is back.
	f.conn.Store(false)
	appendBatches(t, b, 2, 3)
	// A failure after both were stored: the retry that follows starts
	// its live position after them.
	errs := o.Stats().Errors
	waitFor(t, "a failed attempt", func() bool { return o.Stats().Errors > errs })
	f.conn.Store(true)
	f.upCh <- struct{}{}
	waitFor(t, "the backlog", func() bool { return o.Stats().BatchesSent == 3 })
	if st := o.Stats(); st.BacklogPoints != 6 {
		t.Fatalf("stats %+v: batches 2 and 3 (6 points) should have gone as backlog", st)
	}
	// Back to normal: new data is live.
	appendBatches(t, b, 4, 4)
	waitFor(t, "the live batch 4", func() bool { return o.Stats().BatchesSent == 4 })
	if st := o.Stats(); st.BacklogPoints != 6 {
		t.Fatalf("stats %+v: batch 4 went as backlog", st)
	}
}

func TestOutput_Run_permanentRefusalIsQuarantined(t *testing.T) {
	b := openBuffer(t)
	appendBatches(t, b, 1, 3)
	f := newFakeSender()
	f.answer = func(id string, _ int) result {
		if id == "gw-test-2" {
			return result{err: errors.New("400 Bad Request: unable to parse line 1"), permanent: true}
		}
		return result{}
	}
	set := metrics.NewSet()
	o, _ := New(Config{ID: "nats", Type: TypeNATS, AgentID: agentID, NATS: NATSConfig{URL: "nats://x:1"}, BackfillRate: -1}, set, nil)
	o.snd = f
	stop := start(t, o, b)
	waitFor(t, "the buffer to drain", func() bool { return pending(b, "nats") == 0 })
	stop()
	if f.count("gw-test-2") != 1 {
		t.Fatalf("refused batch tried %d times, want once", f.count("gw-test-2"))
	}
	q := buffer.QuarantinedFiles(b.Dir())
	if len(q) != 1 || !strings.HasPrefix(q[0], "rejected-nats-2.") {
		t.Fatalf("quarantine %v", q)
	}
	reason, _ := os.ReadFile(filepath.Join(b.QuarantineDir(), q[0]+".txt"))
	if !strings.Contains(string(reason), "unable to parse line 1") {
		t.Fatalf("quarantine reason %q", reason)
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	body, _ := os.ReadFile(filepath.Join(b.QuarantineDir(), q[0]))
	lp, err := dec.DecodeAll(body, nil)
	pts, _ := protocols.DecodeAll(lp, protocols.DecodeOptions{})
	if err != nil || !reflect.DeepEqual(pts, batch(2)) {
		t.Fatalf("quarantined body holds %v, %v", pts, err)
	}
	if st := o.Stats(); st.Rejected != 1 || st.BatchesSent != 2 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(writeProm(set), `citysense_agent_points_dropped_total{reason="rejected"} 3`) {
		t.Fatal("rejected points not counted as dropped")
	}
}

func writeProm(set *metrics.Set) string {
	var sb strings.Builder
	set.WritePrometheus(&sb)
	return sb.String()
}

func TestOutput_Run_finishesInFlightOnCancel(t *testing.T) {
	b := openBuffer(t)
	appendBatches(t, b, 1, 3)
	f := newFakeSender()
	f.block = make(chan struct{})
	o := newFakeOutput(t, f, Config{MaxInflight: 2})
	stop := start(t, o, b)
	waitFor(t, "two batches in flight", func() bool { return len(f.ids()) == 2 })
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(20 * time.Millisecond) // let the cancel land while they wait
	close(f.block)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	bs, _ := b.Read("nats", 0, 1<<62, 10, 1<<20)
	if len(f.ids()) != 2 || len(bs) != 1 || bs[0].Seq != 3 {
		t.Fatalf("after cancel: %d attempts, %d pending; want 1 and 2 delivered and recorded, 3 kept", len(f.ids()), len(bs))
	}
}

func TestOutput_backoff(t *testing.T) {
	o := newFakeOutput(t, newFakeSender(), Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
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
			if d := o.backoff(tt.n); d < tt.lo || d > tt.hi {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tt.n, d, tt.lo, tt.hi)
			}
		}
	}
}

func TestNew_badConfig(t *testing.T) {
	for _, c := range []Config{
		{Type: TypeNATS, AgentID: "a.b", NATS: NATSConfig{URL: "nats://x:1"}},
		{Type: TypeNATS, AgentID: "", NATS: NATSConfig{URL: "nats://x:1"}},
		{Type: TypeNATS, AgentID: "a"},
		{Type: TypeNATS, AgentID: "a", NATS: NATSConfig{URL: "http://x:1"}},
		{Type: TypeInflux, AgentID: "a", Influx: InfluxConfig{URL: "http://x", API: InfluxV2}},
		{Type: TypeInflux, AgentID: "a", Influx: InfluxConfig{URL: "http://x", API: InfluxV1}},
		{Type: TypeInflux, AgentID: "a", Influx: InfluxConfig{URL: "nats://x", API: InfluxV1, Database: "d"}},
		{Type: "kafka", AgentID: "a"},
	} {
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
