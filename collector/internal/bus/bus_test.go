package bus

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startTest(t *testing.T) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Start(ctx, Config{Name: "test", StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(b.Shutdown)
	return b
}

func TestBus_Start_streams(t *testing.T) {
	b := startTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Ready(); err != nil {
		t.Fatalf("Ready = %v", err)
	}
	tests := []struct {
		name      string
		subjects  []string
		retention jetstream.RetentionPolicy
		dupes     time.Duration
	}{
		{StreamRaw, []string{"cs.raw.>"}, jetstream.WorkQueuePolicy, 2 * time.Minute},
		// The server fills in its default duplicate window for CS_SERIES.
		{StreamSeries, []string{"cs.series.>"}, jetstream.InterestPolicy, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := b.JetStream().Stream(ctx, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			c := s.CachedInfo().Config
			if strings.Join(c.Subjects, ",") != strings.Join(tt.subjects, ",") || c.Retention != tt.retention ||
				c.Storage != jetstream.FileStorage || c.Duplicates != tt.dupes || c.Replicas != 1 {
				t.Errorf("config = subjects %v retention %v storage %v duplicates %v replicas %d",
					c.Subjects, c.Retention, c.Storage, c.Duplicates, c.Replicas)
			}
		})
	}
}

func TestBus_Start_restartIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := Config{Name: "test", StoreDir: dir, Listen: "127.0.0.1:0"}
	b, err := Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.JetStream().Publish(ctx, "cs.raw.gw1", []byte("m v=1 1")); err != nil {
		t.Fatal(err)
	}
	b.Shutdown()
	// The file store lives in <StoreDir>/jetstream, nowhere else.
	if _, err := os.Stat(filepath.Join(dir, "jetstream", "$G", "streams", StreamRaw)); err != nil {
		t.Errorf("CS_RAW not in the store directory: %v", err)
	}
	b, err = Start(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("second Start on the same directory: %v", err)
	}
	defer b.Shutdown()
	s, err := b.JetStream().Stream(ctx, StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("after restart CS_RAW holds %d messages, want the 1 published before", n)
	}
}

// An agent connects over TCP, publishes the same batch twice with one
// Nats-Msg-Id, and the collector's consumer sees it once.
func TestBus_publishDedupeAck(t *testing.T) {
	b := startTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	agent, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("air,station=s1 pm25=1 1\n")
	var acks []*jetstream.PubAck
	for range 2 {
		ack, err := agent.Publish(ctx, "cs.raw.gw-017", body, jetstream.WithMsgID("gw-017-1"))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	if acks[0].Stream != StreamRaw || acks[0].Duplicate || !acks[1].Duplicate || acks[1].Sequence != acks[0].Sequence {
		t.Fatalf("acks = %+v, %+v; want the second a duplicate of the first", acks[0], acks[1])
	}
	if _, err := agent.Publish(ctx, "cs.raw.gw-017", body, jetstream.WithMsgID("gw-017-2")); err != nil {
		t.Fatal(err)
	}

	cons, err := b.JetStream().CreateOrUpdateConsumer(ctx, StreamRaw, jetstream.ConsumerConfig{Durable: "test", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(10, jetstream.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for m := range batch.Messages() {
		ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
		if !bytes.Equal(m.Data(), body) {
			t.Errorf("body = %q, want %q", m.Data(), body)
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(ids, ",") != "gw-017-1,gw-017-2" {
		t.Errorf("consumed ids %v, want [gw-017-1 gw-017-2]", ids)
	}
	// Work-queue retention: acknowledged messages leave the stream.
	s, err := b.JetStream().Stream(ctx, StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("CS_RAW holds %d messages after ack, want 0", info.State.Msgs)
	}
}

func TestBus_Start_portInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	b, err := Start(ctx, Config{Name: "test", StoreDir: t.TempDir(), Listen: ln.Addr().String()}, log)
	if err == nil {
		b.Shutdown()
		t.Fatal("Start on a busy port succeeded")
	}
	// The server reports a busy port through Fatalf; the adapter must turn
	// that into an error promptly and leave the process alone.
	if !strings.Contains(err.Error(), "listen") || time.Since(start) > 5*time.Second {
		t.Errorf("Start error = %v after %v", err, time.Since(start))
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "fatal=true") {
		t.Errorf("fatal not logged at error:\n%s", logs.String())
	}
}

func TestStart_noStoreDir(t *testing.T) {
	b, err := Start(context.Background(), Config{Name: "test", Listen: "127.0.0.1:0"}, nil)
	if err == nil {
		b.Shutdown()
		t.Fatal("Start without a store directory succeeded")
	}
}

func TestSlogLogger_levels(t *testing.T) {
	var buf bytes.Buffer
	l := &slogLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))}
	l.Noticef("n %d", 1)
	l.Warnf("w %d", 2)
	l.Errorf("e %d", 3)
	l.Debugf("d %d", 4)
	l.Tracef("t %d", 5)
	l.Fatalf("f %d", 6)
	l.Fatalf("f %d", 7)
	for _, want := range []string{"level=INFO msg=\"n 1\"", "level=WARN msg=\"w 2\"", "level=ERROR msg=\"e 3\"",
		"level=DEBUG msg=\"d 4\"", "level=DEBUG-4 msg=\"t 5\"", "level=ERROR msg=\"f 6\" fatal=true"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
	if err := l.fatal(); err == nil || err.Error() != "f 6" {
		t.Errorf("recorded fatal = %v, want the first one, f 6", err)
	}
}

func TestSplitListen(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port int
		ok   bool
	}{
		{"127.0.0.1:4222", "127.0.0.1", 4222, true},
		{"127.0.0.1:0", "127.0.0.1", -1, true},
		{":4222", "0.0.0.0", 4222, true},
		{"[::1]:4222", "::1", 4222, true},
		{"localhost", "", 0, false},
		{"h:x", "", 0, false},
	}
	for _, tt := range tests {
		host, port, err := splitListen(tt.in)
		if (err == nil) != tt.ok || host != tt.host || port != tt.port {
			t.Errorf("splitListen(%q) = %q, %d, %v", tt.in, host, port, err)
		}
	}
}
