package ingest

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/citysense/citysense/collector/internal/bus"
	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/protocols"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness is a real embedded bus, a real store and an agent-side
// JetStream client connected over TCP.
type harness struct {
	bus   *bus.Bus
	store *store.Store
	agent jetstream.JetStream
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Name: "test", StoreDir: dir, Listen: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	st, err := store.Open(filepath.Join(dir, "store.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{bus: b, store: st, agent: js}
}

// run starts an Ingester on w and stops it at cleanup, checking that Run
// returned nil.
func (h *harness) run(t *testing.T, w Writer, cfg Config) *Ingester {
	t.Helper()
	cfg.Stream = bus.StreamRaw
	in, err := New(h.bus.JetStream(), Points(w), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
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
	return in
}

func (h *harness) publish(t *testing.T, id, encoding string, body []byte) {
	t.Helper()
	msg := nats.NewMsg("cs.raw.gw-1")
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, id)
	if encoding != "" {
		msg.Header.Set("Content-Encoding", encoding)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.agent.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
}

// rawMsgs is how many messages CS_RAW still holds (work queue: not yet acked).
func (h *harness) rawMsgs(t *testing.T) uint64 {
	t.Helper()
	s, err := h.bus.JetStream().Stream(context.Background(), bus.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

type sample struct {
	key string
	t   int64
	v   protocols.Value
}

func selectAll(t *testing.T, st *store.Store, field string) []sample {
	t.Helper()
	series, err := st.Select(store.Selector{Field: field}, 0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	var out []sample
	for _, s := range series {
		p := protocols.Point{Measurement: s.Measurement, Tags: s.Tags}
		for _, smp := range s.Samples {
			out = append(out, sample{p.SeriesKey(s.Field), smp.Time, smp.Value})
		}
	}
	return out
}

func TestIngester_Run_storesBatches(t *testing.T) {
	h := newHarness(t)
	in := h.run(t, h.store, Config{})

	h.publish(t, "gw-1-1", "zstd", zstdBytes(t, []byte(
		"air,district=d01,station=s0001 pm25=12.5,no2=30.25 1735689600000000000\n"+
			"air,district=d01,station=s0002 pm25=7 1735689600000000000\n")))
	h.publish(t, "gw-1-2", "", []byte(
		"air,district=d01,station=s0001 pm25=13.75 1735689610000000000\n"+
			"traffic,district=d01,station=s0001 count=17i 1735689610000000000\n"))
	h.publish(t, "gw-1-3", "", []byte(
		"air,district=d02,station=s0003 pm25=1.5 1735689620000000000\n"+
			"air,station=s0003 pm25=oops 1735689620000000000\n"+ // bad: not a number
			"air,district=d02,station=s0003 pm25=2.5 1735689630000000000\n"))

	waitFor(t, "3 batches", func() bool { return in.batches.Get() == 3 })
	if got := selectAll(t, h.store, "pm25"); !reflect.DeepEqual(got, []sample{
		{"air,district=d01,station=s0001 pm25", 1735689600000000000, protocols.Float(12.5)},
		{"air,district=d01,station=s0001 pm25", 1735689610000000000, protocols.Float(13.75)},
		{"air,district=d01,station=s0002 pm25", 1735689600000000000, protocols.Float(7)},
		{"air,district=d02,station=s0003 pm25", 1735689620000000000, protocols.Float(1.5)},
		{"air,district=d02,station=s0003 pm25", 1735689630000000000, protocols.Float(2.5)},
	}) {
		t.Errorf("pm25 stored:\n%v", got)
	}
	if got := selectAll(t, h.store, "no2"); !reflect.DeepEqual(got, []sample{
		{"air,district=d01,station=s0001 no2", 1735689600000000000, protocols.Float(30.25)},
	}) {
		t.Errorf("no2 stored: %v", got)
	}
	if got := selectAll(t, h.store, "count"); !reflect.DeepEqual(got, []sample{
		{"traffic,district=d01,station=s0001 count", 1735689610000000000, protocols.Int(17)},
	}) {
		t.Errorf("count stored: %v", got)
	}
	if b, p, bl, bb := in.batches.Get(), in.points.Get(), in.badLines.Get(), in.badBatches.Get(); b != 3 || p != 6 || bl != 1 || bb != 0 {
		t.Errorf("metrics batches=%d points=%d bad_lines=%d bad_batches=%d, want 3 6 1 0", b, p, bl, bb)
	}
	waitFor(t, "CS_RAW to empty", func() bool { return h.rawMsgs(t) == 0 })
}

func TestIngester_Run_encodings(t *testing.T) {
	line := []byte("noise,station=s0009 laeq=55.5 1735689600000000000\n")
	var s2stream []byte
	{
		var buf = new(bytesBuffer)
		w := s2.NewWriter(buf)
		w.Write(line)
		w.Close()
		s2stream = buf.b
	}
	tests := []struct {
		name     string
		encoding string
		body     []byte
		stored   bool
	}{
		{"s2 block", "s2", s2.Encode(nil, line), true},
		{"s2 stream", "s2", s2stream, true},
		{"identity", "identity", line, true},
		{"zstd upper case", "ZSTD", zstdBytes(t, line), true},
		{"corrupt zstd", "zstd", []byte("definitely not zstd"), false},
		{"corrupt s2", "s2", []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2}, false},
		{"unknown encoding", "gzip", line, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			in := h.run(t, h.store, Config{})
			h.publish(t, "gw-1-1", tt.encoding, tt.body)
			// Terminated or acked, the message leaves the work queue.
			waitFor(t, "the message to be settled", func() bool { return in.batches.Get()+in.badBatches.Get() == 1 })
			waitFor(t, "CS_RAW to empty", func() bool { return h.rawMsgs(t) == 0 })
			got := selectAll(t, h.store, "laeq")
			if tt.stored {
				want := []sample{{"noise,station=s0009 laeq", 1735689600000000000, protocols.Float(55.5)}}
				if !reflect.DeepEqual(got, want) || in.badBatches.Get() != 0 {
					t.Errorf("stored %v (bad batches %d), want %v", got, in.badBatches.Get(), want)
				}
			} else if len(got) != 0 || in.badBatches.Get() != 1 {
				t.Errorf("stored %v, bad batches %d; want nothing stored and 1 bad batch", got, in.badBatches.Get())
			}
		})
	}
}

type bytesBuffer struct{ b []byte }

func (b *bytesBuffer) Write(p []byte) (int, error) { b.b = append(b.b, p...); return len(p), nil }

// flakyWriter fails its first n writes.
type flakyWriter struct {
	mu    sync.Mutex
	fails int
	calls int
	w     Writer
}

func (f *flakyWriter) Write(pts []protocols.Point) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fails {
		return 0, errors.New("disk on fire")
	}
	return f.w.Write(pts)
}

func TestIngester_Run_storeErrorRedelivers(t *testing.T) {
	h := newHarness(t)
	fw := &flakyWriter{fails: 2, w: h.store}
	in := h.run(t, fw, Config{RetryDelay: 50 * time.Millisecond})
	h.publish(t, "gw-1-7", "", []byte("air,station=s1 pm25=3.25 1735689600000000000\n"))
	waitFor(t, "the batch to be stored", func() bool { return in.batches.Get() == 1 })
	if got := selectAll(t, h.store, "pm25"); len(got) != 1 || got[0].v != protocols.Float(3.25) {
		t.Errorf("stored %v, want one point 3.25", got)
	}
	if in.writeErrors.Get() != 2 || fw.calls != 3 {
		t.Errorf("write errors %d, calls %d; want 2 and 3", in.writeErrors.Get(), fw.calls)
	}
	waitFor(t, "CS_RAW to empty", func() bool { return h.rawMsgs(t) == 0 })
}

// Lines without a timestamp take the time JetStream stored the message, so
// a redelivery rewrites the same point instead of adding one.
func TestIngester_Run_missingTimestampUsesStreamTime(t *testing.T) {
	h := newHarness(t)
	fw := &flakyWriter{fails: 1, w: h.store}
	in := h.run(t, fw, Config{RetryDelay: 50 * time.Millisecond})
	before := time.Now().UnixNano()
	h.publish(t, "gw-1-8", "", []byte("air,station=s1 pm25=4\n"))
	waitFor(t, "the batch to be stored", func() bool { return in.batches.Get() == 1 })
	got := selectAll(t, h.store, "pm25")
	if len(got) != 1 || got[0].t < before || got[0].t > time.Now().UnixNano() {
		t.Fatalf("stored %v, want exactly one point stamped at publish time", got)
	}
}

func TestLogLimiter(t *testing.T) {
	l := logLimiter{every: time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at         time.Duration
		allowed    bool
		suppressed int
	}{
		{0, true, 0},
		{100 * time.Millisecond, false, 0},
		{900 * time.Millisecond, false, 0},
		{time.Second, true, 2},
		{1500 * time.Millisecond, false, 0},
		{3 * time.Second, true, 1},
	}
	for _, s := range steps {
		ok, n := l.allow(t0.Add(s.at))
		if ok != s.allowed || n != s.suppressed {
			t.Errorf("at %v: allow = %v, %d; want %v, %d", s.at, ok, n, s.allowed, s.suppressed)
		}
	}
}
