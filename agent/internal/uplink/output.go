package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/time/rate"

	"github.com/citysense/citysense/agent/internal/buffer"
	"github.com/citysense/citysense/internal/cli"
)

// Source is the buffer as an output sees it; *buffer.Buffer is one. Each
// output reads and acknowledges under its own id.
type Source interface {
	// Head is the number the next stored batch gets.
	Head() uint64
	// Read returns batches from ≤ seq < to that output has not
	// acknowledged, oldest first.
	Read(output string, from, to uint64, maxBatches, maxBytes int) ([]buffer.Batch, error)
	// Ack records batches as delivered.
	Ack(output string, seqs ...uint64) error
	// Changed is closed at the next change of the buffer.
	Changed() <-chan struct{}
	// Quarantine keeps a batch the destination refused for good.
	Quarantine(output string, b buffer.Batch, reason string)
	// SetLive says whether the output is delivering: while none is, the
	// buffer merges its small batches into full ones.
	SetLive(output string, live bool)
}

// Types of output.
const (
	TypeNATS   = "nats"
	TypeInflux = "influx"
)

// Defaults of Config.
const (
	DefaultMaxInflightNATS   = 64
	DefaultMaxInflightInflux = 4
	DefaultBackfillRate      = 10000 // points/s
	DefaultTimeout           = 10 * time.Second
	DefaultMinBackoff        = 100 * time.Millisecond
	DefaultMaxBackoff        = 30 * time.Second
	DefaultReconnectWait     = 2 * time.Second
	// ackInterval is how often delivered batches are acknowledged to the
	// buffer: one commit for all of them. A crash loses at most this much
	// of acknowledgements, which only means a resend the collector drops
	// as a duplicate.
	ackInterval  = 100 * time.Millisecond
	maxReadBytes = 8 << 20
)

// TLS configures a client's TLS. All files are PEM.
type TLS struct {
	CA                 string // CA bundle to verify the server; empty: the system's
	Cert, Key          string // client certificate, for mutual TLS
	ServerName         string // expected name in the server's certificate
	InsecureSkipVerify bool   // tests and emergencies only
}

func (t TLS) enabled() bool {
	return t.CA != "" || t.Cert != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// Config configures one output.
type Config struct {
	ID      string // the buffer cursor's name; stable across renames and reorders
	Type    string // nats or influx
	AgentID string

	MaxInflight  int           // batches sent and not yet confirmed; 0: the type's default
	BackfillRate float64       // points/s for the backlog after an outage; 0: DefaultBackfillRate, <0: unlimited
	Timeout      time.Duration // wait for one confirmation; 0: DefaultTimeout
	MinBackoff   time.Duration // 0: DefaultMinBackoff
	MaxBackoff   time.Duration // 0: DefaultMaxBackoff

	NATS   NATSConfig
	Influx InfluxConfig
}

func (c *Config) setDefaults() {
	if c.MaxInflight <= 0 {
		c.MaxInflight = DefaultMaxInflightNATS
		if c.Type == TypeInflux {
			c.MaxInflight = DefaultMaxInflightInflux
		}
	}
	if c.BackfillRate == 0 {
		c.BackfillRate = DefaultBackfillRate
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.NATS.ReconnectWait <= 0 {
		c.NATS.ReconnectWait = DefaultReconnectWait
	}
}

// result is the outcome of one delivery.
type result struct {
	err        error
	permanent  bool          // the destination refuses the batch for good
	retryAfter time.Duration // the destination asked for this pause
	duplicate  bool          // stored before: a resend
}

// sender delivers batches to one kind of destination. Its methods are
// called from the output's goroutine, except connected.
type sender interface {
	// open prepares the connection; it fails only on a configuration that
	// can never work (an unreadable credentials file). A destination that
	// is down is not an error: the output buffers and retries.
	open(ctx context.Context) error
	close()
	// connected reports whether sending can work now. Safe for concurrent use.
	connected() bool
	// up is signalled when the destination comes (back) up.
	up() <-chan struct{}
	// send starts delivering b under the deduplication id and returns
	// where the outcome arrives, exactly once.
	send(b buffer.Batch, id string) <-chan result
}

// Output drains the buffer to one destination.
type Output struct {
	cfg Config
	log *slog.Logger
	snd sender
	m   outputMetrics

	inflight    atomic.Int64
	resets      atomic.Int64 // times the positions were reset, for tests
	lastAck     atomic.Int64 // unix ns of the last confirmed batch
	lastAttempt atomic.Int64 // unix ns of the last batch sent
}

type outputMetrics struct {
	batches, points, backlogPoints, errors, duplicates, rejected, rejectedPoints *metrics.Counter
	reconnects                                                                   *metrics.Counter
	latency                                                                      *metrics.Histogram
}

// Stats are an output's counters since the agent started.
type Stats struct {
	ID            string `json:"id"`
	Type          string `json:"type"`
	Connected     bool   `json:"connected"`
	BatchesSent   uint64 `json:"batches_sent"`
	PointsSent    uint64 `json:"points_sent"` // confirmed, duplicates included
	BacklogPoints uint64 `json:"backlog_points_sent"`
	Errors        uint64 `json:"errors"`
	Duplicates    uint64 `json:"duplicates"`
	Rejected      uint64 `json:"batches_rejected"` // refused for good, quarantined
	Reconnects    uint64 `json:"reconnects"`
	Inflight      int64  `json:"inflight"`
	// LastConfirmed is when the destination last confirmed a batch.
	LastConfirmed time.Time `json:"last_confirmed,omitzero"`
}

// New returns an output; it validates cfg and does no I/O. Its metrics go
// to set (nil: a private set) with the label output="<id>", so that they
// survive a reload that restarts it.
func New(cfg Config, set *metrics.Set, log *slog.Logger) (*Output, error) {
	if cfg.ID == "" {
		cfg.ID = cfg.Type
	}
	if cfg.AgentID == "" || strings.ContainsAny(cfg.AgentID, ".*> \t\r\n") {
		return nil, fmt.Errorf("uplink: agent id %q cannot be a subject token", cfg.AgentID)
	}
	cfg.setDefaults()
	if set == nil {
		set = metrics.NewSet()
	}
	if log == nil {
		log = cli.Discard()
	}
	o := &Output{cfg: cfg}
	var err error
	switch cfg.Type {
	case TypeNATS:
		o.log = log.With("output", cfg.ID, "type", cfg.Type, "url", redact(cfg.NATS.URL))
		o.snd, err = newNATS(cfg, o.log)
	case TypeInflux:
		o.log = log.With("output", cfg.ID, "type", cfg.Type, "url", redact(cfg.Influx.URL))
		o.snd, err = newInflux(cfg, o.log)
	default:
		err = fmt.Errorf("unknown output type %q (known: %s, %s)", cfg.Type, TypeNATS, TypeInflux)
	}
	if err != nil {
		return nil, fmt.Errorf("uplink %s: %w", cfg.ID, err)
	}
	label := func(name string) string { return fmt.Sprintf(`%s{output=%q}`, name, cfg.ID) }
	o.m = outputMetrics{
		batches:        set.GetOrCreateCounter(label("citysense_agent_output_batches_sent_total")),
		points:         set.GetOrCreateCounter(label("citysense_agent_output_points_sent_total")),
		backlogPoints:  set.GetOrCreateCounter(label("citysense_agent_output_backlog_points_sent_total")),
		errors:         set.GetOrCreateCounter(label("citysense_agent_output_errors_total")),
		duplicates:     set.GetOrCreateCounter(label("citysense_agent_output_duplicates_total")),
		rejected:       set.GetOrCreateCounter(label("citysense_agent_output_batches_rejected_total")),
		rejectedPoints: set.GetOrCreateCounter(`citysense_agent_points_dropped_total{reason="rejected"}`),
		reconnects:     set.GetOrCreateCounter(label("citysense_agent_output_reconnects_total")),
		latency:        set.GetOrCreateHistogram(label("citysense_agent_output_latency_seconds")),
	}
	if ns, ok := o.snd.(*natsSender); ok {
		ns.reconnects = o.m.reconnects
	}
	return o, nil
}

// ID returns the output's id.
func (o *Output) ID() string { return o.cfg.ID }

// Config returns the output's configuration with defaults filled in.
func (o *Output) Config() Config { return o.cfg }

// Connected reports whether the destination is reachable as far as the
// output knows.
func (o *Output) Connected() bool { return o.snd.connected() }

// Stats returns the output's counters.
func (o *Output) Stats() Stats {
	st := Stats{
		ID: o.cfg.ID, Type: o.cfg.Type, Connected: o.snd.connected(),
		BatchesSent: o.m.batches.Get(), PointsSent: o.m.points.Get(), BacklogPoints: o.m.backlogPoints.Get(),
		Errors: o.m.errors.Get(), Duplicates: o.m.duplicates.Get(), Rejected: o.m.rejected.Get(),
		Reconnects: o.m.reconnects.Get(), Inflight: o.inflight.Load(),
	}
	if t := o.lastAck.Load(); t > 0 {
		st.LastConfirmed = time.Unix(0, t).UTC()
	}
	return st
}

// MsgID is the deduplication id of batch seq: <agent-id>-<seq>.
func MsgID(agentID string, seq uint64) string {
	return agentID + "-" + strconv.FormatUint(seq, 10)
}

// flight is a batch sent and not yet confirmed.
type flight struct {
	b       buffer.Batch
	backlog bool
	sent    time.Time
	done    <-chan result
}

// Run drains src until ctx is done, then waits up to the timeout for the
// batches in flight, acknowledges what was confirmed and returns nil. It
// returns an error only when the output cannot work at all.
//
// Live first, backfill gently: the output reads from two positions. The
// live position starts at the buffer's head when the output (re)connects
// and follows new batches as they are stored; they go out as soon as
// there is room in flight. The backlog position walks from the oldest
// unacknowledged batch up to where the live position started, and only
// when no live batch waits, paced by a token bucket of BackfillRate
// points/s. Both skip what the buffer records as acknowledged, so the pair
// of positions needs no state of its own: after any failure both are
// reset and the buffer's acknowledged ranges say what is left.
func (o *Output) Run(ctx context.Context, src Source) error {
	if err := o.snd.open(ctx); err != nil {
		return fmt.Errorf("uplink %s: %w", o.cfg.ID, err)
	}
	defer o.snd.close()
	o.log.Info("output started", "max_inflight", o.cfg.MaxInflight, "backfill_rate", o.cfg.BackfillRate)

	var (
		inflight  []*flight
		acks      []uint64
		split     uint64 // live batches are at or after it, backlog before
		livePos   uint64
		backPos   uint64
		held      *buffer.Batch // backlog batch waiting for tokens
		heldAt    time.Time
		failures  int       // consecutive failed rounds, for the backoff
		failing   bool      // a delivery failed: send nothing until the backoff ends
		notBefore time.Time // the destination asked for a pause until then
		live      bool      // the last delivery worked (Source.SetLive)
	)
	defer src.SetLive(o.cfg.ID, false)
	var limiter *rate.Limiter
	if o.cfg.BackfillRate > 0 {
		limiter = rate.NewLimiter(rate.Limit(o.cfg.BackfillRate), max(1, int(o.cfg.BackfillRate)))
	}
	flushAcks := func() {
		if len(acks) == 0 {
			return
		}
		if err := src.Ack(o.cfg.ID, acks...); err != nil {
			// Kept and tried again: until then they count as unsent and
			// may be sent twice, which the destination tolerates.
			o.log.Error("cannot record delivered batches in the buffer", "err", err, "batches", len(acks))
			return
		}
		acks = acks[:0]
	}
	reset := func() {
		flushAcks()
		split = src.Head()
		livePos, backPos, held = split, 0, nil
		o.resets.Add(1)
	}
	reset()

	backoff := time.NewTimer(time.Hour)
	backoff.Stop()
	backoffArmed := false
	tokens := time.NewTimer(time.Hour)
	tokens.Stop()
	ackTick := time.NewTicker(ackInterval)
	defer ackTick.Stop()

	send := func(b buffer.Batch, backlog bool) {
		now := time.Now()
		f := &flight{b: b, backlog: backlog, sent: now, done: o.snd.send(b, MsgID(o.cfg.AgentID, b.Seq))}
		inflight = append(inflight, f)
		o.inflight.Store(int64(len(inflight)))
		o.lastAttempt.Store(now.UnixNano())
	}
	// fill sends what there is room for: live batches first, then the
	// backlog as the token bucket allows.
	fill := func() {
		limit := o.cfg.MaxInflight
		if !o.snd.connected() {
			// One batch probes a connection that is down; a full window
			// would only fail 64 times over.
			limit = 1
		}
		for len(inflight) < limit {
			room := limit - len(inflight)
			bs, err := src.Read(o.cfg.ID, livePos, math.MaxUint64, room, maxReadBytes)
			if err != nil {
				o.log.Error("cannot read the buffer", "err", err)
				return
			}
			if len(bs) > 0 {
				for _, b := range bs {
					send(b, false)
				}
				livePos = bs[len(bs)-1].Seq + 1
				continue
			}
			if held == nil && backPos < split {
				bs, err := src.Read(o.cfg.ID, backPos, split, 1, maxReadBytes)
				if err != nil {
					o.log.Error("cannot read the buffer", "err", err)
					return
				}
				if len(bs) == 0 {
					backPos = split // the backlog is drained
					return
				}
				held, backPos = &bs[0], bs[0].Seq+1
				heldAt = time.Now()
				if limiter != nil {
					if held.Points > limiter.Burst() {
						limiter.SetBurst(held.Points)
					}
					heldAt = heldAt.Add(limiter.ReserveN(heldAt, held.Points).Delay())
				}
			}
			if held == nil {
				return
			}
			if d := time.Until(heldAt); d > 0 {
				tokens.Reset(d)
				return
			}
			send(*held, true)
			held = nil
		}
	}
	// settle handles the outcome of the oldest batch in flight.
	settle := func(r result) {
		f := inflight[0]
		inflight = inflight[1:]
		o.inflight.Store(int64(len(inflight)))
		id := MsgID(o.cfg.AgentID, f.b.Seq)
		switch {
		case r.err == nil:
			if !live {
				live = true
				src.SetLive(o.cfg.ID, true)
			}
			o.m.batches.Inc()
			o.m.points.Add(f.b.Points)
			if f.backlog {
				o.m.backlogPoints.Add(f.b.Points)
			}
			if r.duplicate {
				o.m.duplicates.Inc()
			}
			o.m.latency.UpdateDuration(f.sent)
			o.lastAck.Store(time.Now().UnixNano())
			acks = append(acks, f.b.Seq)
			if failures > 0 && !failing {
				o.log.Info("delivering again", "batch", id, "after_failures", failures)
				failures = 0
			}
			o.log.Debug("batch delivered", "batch", id, "points", f.b.Points, "bytes", len(f.b.Body), "backlog", f.backlog, "duplicate", r.duplicate)
		case r.permanent:
			// Retrying would fail the same way forever: keep it for an
			// operator and move on.
			o.m.rejected.Inc()
			o.m.rejectedPoints.Add(f.b.Points)
			src.Quarantine(o.cfg.ID, f.b, fmt.Sprintf("output %s refused batch %s (%d points): %v", o.cfg.ID, id, f.b.Points, r.err))
			acks = append(acks, f.b.Seq)
			o.log.Error("batch refused for good; kept in quarantine", "batch", id, "points", f.b.Points, "err", r.err)
		default:
			o.m.errors.Inc()
			if live {
				live = false
				src.SetLive(o.cfg.ID, false)
			}
			if !failing {
				failing = true
				failures++
				// The first failure of a streak is news; the rest would
				// flood the log of a gateway whose collector is away a day.
				lvl := slog.LevelDebug
				if failures == 1 {
					lvl = slog.LevelWarn
				}
				o.log.Log(ctx, lvl, "delivery failed; will retry with the same id", "batch", id, "err", r.err)
			}
			if r.retryAfter > 0 {
				notBefore = time.Now().Add(r.retryAfter)
			}
		}
	}

	for ctx.Err() == nil {
		changed := src.Changed()
		if live && !o.snd.connected() {
			// Gone without a failed delivery (an idle link dropped): what
			// is committed from now on waits, so let it be merged.
			live = false
			src.SetLive(o.cfg.ID, false)
		}
		if !failing {
			fill()
		}
		if failing && len(inflight) == 0 && !backoffArmed {
			flushAcks()
			wait := max(o.backoff(failures), time.Until(notBefore))
			backoff.Reset(wait)
			backoffArmed = true
		}
		var oldest <-chan result
		if len(inflight) > 0 {
			oldest = inflight[0].done
		}
		select {
		case <-ctx.Done():
		case r := <-oldest:
			settle(r)
		case <-changed:
		case <-tokens.C:
		case <-ackTick.C:
			flushAcks()
		case <-o.snd.up():
			if backoffArmed && time.Now().After(notBefore) {
				// A destination that is back should not wait out a 30s pause.
				backoff.Reset(0)
			}
		case <-backoff.C:
			// Try again. What piled up meanwhile is backlog now: the live
			// position starts afresh at the head.
			backoffArmed, failing = false, false
			reset()
		}
	}

	// Shutdown: send nothing new, let what is in flight finish.
	deadline := time.NewTimer(o.cfg.Timeout)
	defer deadline.Stop()
	for len(inflight) > 0 {
		select {
		case r := <-inflight[0].done:
			settle(r)
		case <-deadline.C:
			o.log.Warn("stopping with batches unconfirmed; they are sent again by the next run", "batches", len(inflight))
			inflight = nil
		}
	}
	flushAcks()
	o.log.Info("output stopped")
	return nil
}

// backoff returns the wait after n consecutive failed rounds: exponential
// from MinBackoff, capped at MaxBackoff, with jitter over its upper half so
// that a fleet of gateways does not come back to a collector in step.
func (o *Output) backoff(n int) time.Duration {
	d := o.cfg.MinBackoff
	for i := 1; i < n && d < o.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, o.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// errClosed resolves deliveries cut short by closing the output.
var errClosed = errors.New("output closed")

// redact hides passwords and tokens in a comma-separated URL list for logs.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := parseURL(strings.TrimSpace(p)); err == nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// Interface guards.
var _ Source = (*buffer.Buffer)(nil)
