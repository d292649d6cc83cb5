package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citysense/citysense/agent/internal/buffer"
	"github.com/citysense/citysense/internal/cli"
)

// Source is the queue the uplink drains; *buffer.Buffer is one. Peek and
// Ack are called from one goroutine.
type Source interface {
	Peek(n int) ([]buffer.Entry, error)
	Ack(seqs ...uint64) error
	// Appended is signalled when new entries may be there.
	Appended() <-chan struct{}
}

// Config configures the nats output.
type Config struct {
	AgentID string // subject token and batch id prefix
	URL     string // nats://host:4222, comma-separated for several servers
	Creds   string // NATS credentials file, optional

	PublishTimeout time.Duration // wait for one PubAck; 0: 10s
	PeekEntries    int           // entries taken per round; 0: 64
	MinBackoff     time.Duration // first wait after a failed publish; 0: 100ms
	MaxBackoff     time.Duration // longest wait between retries; 0: 30s
	ReconnectWait  time.Duration // between reconnect attempts, plus jitter; 0: 2s
}

func (c *Config) setDefaults() {
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.PeekEntries <= 0 {
		c.PeekEntries = 64
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = 2 * time.Second
	}
}

// Header values of the agent → collector contract.
const (
	HeaderContentEncoding = "Content-Encoding"
	EncodingZstd          = "zstd"
	SubjectPrefix         = "cs.raw."
)

// Stats are the output's counters since it was created.
type Stats struct {
	BatchesSent   uint64 // batches the stream confirmed (duplicates included)
	PointsSent    uint64
	PublishErrors uint64
	Duplicates    uint64 // confirmed as already stored: a resend
}

// publisher is the part of a JetStream context the output uses, so tests
// can stand in for the server; jetstream.JetStream satisfies it.
type publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// NATS publishes buffered batches to NATS JetStream.
type NATS struct {
	cfg     Config
	log     *slog.Logger
	subject string
	dial    func() (publisher, func(), error)

	connected atomic.Bool
	// isConnected reports the connection state where there is a real
	// connection; publishing is not even tried while it is down.
	isConnected func() bool
	// up is signalled on every (re)connect, cutting a backoff short: a
	// collector that is back should not wait out a 30s pause.
	up chan struct{}

	batchesSent   *metrics.Counter
	pointsSent    *metrics.Counter
	publishErrors *metrics.Counter
	duplicates    *metrics.Counter
}

// New returns a nats output. It does no I/O; Run connects. Its metrics are
// registered in set (nil: a private set) and log may be nil.
func New(cfg Config, set *metrics.Set, log *slog.Logger) (*NATS, error) {
	if cfg.AgentID == "" || strings.ContainsAny(cfg.AgentID, ".*> \t\r\n") {
		return nil, fmt.Errorf("uplink: agent id %q cannot be a subject token", cfg.AgentID)
	}
	if cfg.URL == "" {
		return nil, errors.New("uplink: no collector URL")
	}
	cfg.setDefaults()
	if set == nil {
		set = metrics.NewSet()
	}
	if log == nil {
		log = cli.Discard()
	}
	u := &NATS{
		cfg:           cfg,
		log:           log.With("output", "nats", "url", redact(cfg.URL)),
		subject:       SubjectPrefix + cfg.AgentID,
		batchesSent:   set.NewCounter("citysense_agent_batches_sent_total"),
		pointsSent:    set.NewCounter("citysense_agent_points_sent_total"),
		publishErrors: set.NewCounter("citysense_agent_publish_errors_total"),
		duplicates:    set.NewCounter("citysense_agent_publish_duplicates_total"),
	}
	set.NewGauge("citysense_agent_uplink_connected", func() float64 {
		if u.connected.Load() {
			return 1
		}
		return 0
	})
	u.up = make(chan struct{}, 1)
	u.dial = u.dialNATS
	return u, nil
}

// Stats returns the counters.
func (u *NATS) Stats() Stats {
	return Stats{
		BatchesSent:   u.batchesSent.Get(),
		PointsSent:    u.pointsSent.Get(),
		PublishErrors: u.publishErrors.Get(),
		Duplicates:    u.duplicates.Get(),
	}
}

// Connected reports whether the connection to the collector is up.
func (u *NATS) Connected() bool { return u.connected.Load() }

// MsgID is the deduplication id of buffer entry seq: <agent-id>-<seq>.
func MsgID(agentID string, seq uint64) string {
	return agentID + "-" + strconv.FormatUint(seq, 10)
}

// dialNATS connects with infinite, jittered reconnects. With
// RetryOnFailedConnect the agent starts even when the collector is down.
func (u *NATS) dialNATS() (publisher, func(), error) {
	opts := []nats.Option{
		nats.Name("citysense-agent " + u.cfg.AgentID),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(u.cfg.ReconnectWait),
		nats.ReconnectJitter(u.cfg.ReconnectWait/2, u.cfg.ReconnectWait),
		// The buffer on disk is the queue; publishing while disconnected
		// should fail and back off, not pile up in memory.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(nc *nats.Conn) {
			u.setUp()
			u.log.Info("uplink connected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			u.setUp()
			u.log.Info("uplink reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			u.connected.Store(false)
			if err != nil { // nil: we closed it
				u.log.Warn("uplink disconnected", "err", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			u.log.Warn("uplink error", "err", err)
		}),
	}
	if u.cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(u.cfg.Creds))
	}
	nc, err := nats.Connect(u.cfg.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", redact(u.cfg.URL), err)
	}
	if nc.IsConnected() {
		u.connected.Store(true) // ConnectHandler runs asynchronously; be right from the start
	} else {
		u.log.Warn("uplink: collector not reachable yet; buffering and retrying")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream on %s: %w", redact(u.cfg.URL), err)
	}
	u.isConnected = nc.IsConnected
	return js, func() { nc.Close(); u.connected.Store(false) }, nil
}

func (u *NATS) setUp() {
	u.connected.Store(true)
	select {
	case u.up <- struct{}{}:
	default:
	}
}

// ErrNotConnected is the publish error while the connection is down.
var ErrNotConnected = errors.New("not connected to the collector")

// Run drains src until ctx is done and returns nil then; it returns an
// error only when it cannot connect at all (a malformed URL or credentials
// file). A publish in flight when ctx ends is finished and acknowledged.
func (u *NATS) Run(ctx context.Context, src Source) error {
	pub, closeConn, err := u.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	u.log.Info("uplink started", "subject", u.subject)

	failures := 0 // consecutive failed attempts, for the backoff
	for ctx.Err() == nil {
		entries, err := src.Peek(u.cfg.PeekEntries)
		if err != nil {
			u.log.Error("uplink: cannot read the buffer", "err", err)
			failures++
			if !u.sleep(ctx, u.backoff(failures)) {
				return nil
			}
			continue
		}
		if len(entries) == 0 {
			select {
			case <-ctx.Done():
			case <-src.Appended():
			}
			continue
		}
		// One commit per round for the entries sent. Should the agent die
		// before it, they are sent again and the stream drops them as
		// duplicates, but only within its duplicate window (2 min): so the
		// round is also committed before any backoff, which may be longer.
		var sent []uint64
		ack := func() error {
			if len(sent) == 0 {
				return nil
			}
			err := src.Ack(sent...)
			if err != nil {
				u.log.Error("uplink: cannot acknowledge sent batches in the buffer; they will be resent", "err", err, "batches", len(sent))
			}
			sent = sent[:0]
			return err
		}
		for _, e := range entries {
			if !u.publishUntilStored(ctx, pub, e, &failures, ack) {
				break
			}
			sent = append(sent, e.Seq)
			if ctx.Err() != nil {
				break
			}
		}
		if err := ack(); err != nil {
			failures++
			if !u.sleep(ctx, u.backoff(failures)) {
				return nil
			}
		}
	}
	return nil
}

// publishUntilStored publishes e until the stream confirms it, backing off
// between attempts and calling beforeWait before the first wait. It reports
// false if ctx ended before e was stored.
func (u *NATS) publishUntilStored(ctx context.Context, pub publisher, e buffer.Entry, failures *int, beforeWait func() error) bool {
	waited := false
	id := MsgID(u.cfg.AgentID, e.Seq)
	for {
		ack, err := u.publish(ctx, pub, e, id)
		if err == nil {
			if *failures > 0 {
				u.log.Info("uplink: publishing again", "batch", id, "after_failures", *failures)
			}
			*failures = 0
			u.batchesSent.Inc()
			u.pointsSent.Add(e.Points)
			if ack.Duplicate {
				u.duplicates.Inc()
			}
			u.log.Debug("batch sent", "batch", id, "points", e.Points, "bytes", len(e.Body), "stream", ack.Stream, "stream_seq", ack.Sequence, "duplicate", ack.Duplicate)
			return true
		}
		u.publishErrors.Inc()
		*failures++
		wait := u.backoff(*failures)
		// The first failure of a streak is news; the rest would flood the log
		// of a gateway whose collector is down for a day.
		lvl := slog.LevelDebug
		if *failures == 1 {
			lvl = slog.LevelWarn
		}
		u.log.Log(ctx, lvl, "uplink: publish failed, retrying with the same id", "batch", id, "err", err, "retry_in", wait.Round(time.Millisecond))
		if !waited {
			waited = true
			_ = beforeWait() // logged there; the entries stay and are resent
		}
		if !u.sleep(ctx, wait) {
			return false
		}
	}
}

func (u *NATS) publish(ctx context.Context, pub publisher, e buffer.Entry, id string) (*jetstream.PubAck, error) {
	if u.isConnected != nil && !u.isConnected() {
		// nats.go would fail anyway, with a confusing "headers not
		// supported" before the first connect.
		return nil, ErrNotConnected
	}
	msg := nats.NewMsg(u.subject)
	msg.Header.Set(jetstream.MsgIDHeader, id)
	msg.Header.Set(HeaderContentEncoding, EncodingZstd)
	msg.Data = e.Body
	// Not ctx: a publish already under way is finished on shutdown, so its
	// ack is not lost and the batch is not left to be sent twice.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.cfg.PublishTimeout)
	defer cancel()
	return pub.PublishMsg(pctx, msg)
}

// backoff returns the wait after n consecutive failures: exponential from
// MinBackoff, capped at MaxBackoff, with jitter over its upper half so that
// a fleet of agents does not reconnect to a recovered collector in step.
func (u *NATS) backoff(n int) time.Duration {
	d := u.cfg.MinBackoff
	for i := 1; i < n && d < u.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, u.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d, or less if the connection comes up meanwhile; it reports
// false if ctx ended.
func (u *NATS) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-u.up:
		return true
	}
}

// redact hides passwords and tokens in a comma-separated URL list for logs.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// Interface guards.
var (
	_ Source    = (*buffer.Buffer)(nil)
	_ publisher = (jetstream.JetStream)(nil)
)
