package coap

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

// Poll defaults.
const (
	DefaultPollInterval = 30 * time.Second
	DefaultPollTimeout  = 5 * time.Second
	defaultMaxAge       = 60 * time.Second // CoAP's Max-Age when an answer has none
	maxAgeGrace         = 2 * time.Second  // for a notification sent as Max-Age expires
)

// Poll is one CoAP resource the input reads itself: a GET every Interval
// (after a random pause of up to Jitter, so that many gateways started
// together do not poll in step), or, with Observe, a registration after
// which the server sends each new state (RFC 7641). The payload is JSON or
// line protocol, read as a POST to the input's server would be.
type Poll struct {
	// URL is coap://host[:port]/path[?query]; the port defaults to 5683.
	URL string `yaml:"url"`
	// Format is json or line; empty: from the answer's Content-Format
	// (application/json: json, else line).
	Format string `yaml:"format"`
	// Measurement of JSON points; empty: the last segment of the path.
	Measurement string            `yaml:"measurement"`
	Tags        map[string]string `yaml:"tags"`
	Precision   string            `yaml:"precision"` // line protocol without a unit; empty: the input's
	Interval    confx.Duration    `yaml:"interval"`
	Jitter      confx.Duration    `yaml:"jitter"`
	Timeout     confx.Duration    `yaml:"timeout"`
	// Observe registers for notifications instead of polling; the
	// registration is renewed when the server cancels it or the exchange
	// fails, at most once per Interval.
	Observe bool `yaml:"observe"`

	// compiled by Init
	addr, path  string
	queries     []string
	tags        []protocols.Tag
	precision   protocols.Precision
	measurement string
}

// compilePolls checks the poll blocks; problems are reported under
// poll[i].key.
func (in *Input) compilePolls(bad func(path, format string, args ...any)) {
	for i := range in.Poll {
		p := &in.Poll[i]
		key := func(k string) string { return fmt.Sprintf("poll[%d].%s", i, k) }
		u, err := url.Parse(p.URL)
		switch {
		case p.URL == "":
			bad(key("url"), "required, e.g. coap://192.0.2.7/sensors/air")
		case err != nil || u.Scheme != "coap" || u.Host == "":
			bad(key("url"), "want coap://host[:port]/path, got %q", p.URL)
		default:
			p.addr = u.Host
			if u.Port() == "" {
				p.addr = net.JoinHostPort(u.Hostname(), "5683")
			}
			p.path = u.Path
			if p.path == "" {
				p.path = "/"
			}
			p.queries = nil
			if u.RawQuery != "" {
				p.queries = strings.Split(u.RawQuery, "&")
			}
			p.measurement = p.Measurement
			if p.measurement == "" {
				p.measurement = p.path[strings.LastIndexByte(p.path, '/')+1:]
			}
			if p.measurement == "" && p.Format != "line" {
				bad(key("measurement"), "required when the path (%q) does not end in a name", p.path)
			}
		}
		if p.Format != "" && p.Format != "json" && p.Format != "line" {
			bad(key("format"), "want json or line, got %q", p.Format)
		}
		p.precision = in.precision
		if p.Precision != "" {
			prec, err := protocols.ParsePrecision(p.Precision)
			if err != nil {
				bad(key("precision"), "%v", err)
			}
			p.precision = prec
		}
		if p.Interval == 0 {
			p.Interval = confx.Duration(DefaultPollInterval)
		}
		if p.Interval.D() < 100*time.Millisecond {
			bad(key("interval"), "must be at least 100ms, got %v", p.Interval)
		}
		if p.Jitter < 0 || p.Jitter > p.Interval {
			bad(key("jitter"), "must be between 0 and the interval (%v), got %v", p.Interval, p.Jitter)
		}
		if p.Timeout == 0 {
			p.Timeout = confx.Duration(min(DefaultPollTimeout, p.Interval.D()))
		}
		if p.Timeout <= 0 {
			bad(key("timeout"), "must be positive, got %v", p.Timeout)
		}
		tags, err := protocols.SortedTags(p.Tags)
		if err != nil {
			bad(key("tags"), "%v", err)
		}
		// The input's tags apply too, the poll's win.
		for _, t := range in.tags {
			if _, ok := slices.BinarySearchFunc(tags, t.Key, func(a protocols.Tag, k string) int { return strings.Compare(a.Key, k) }); !ok {
				tags = append(tags, t)
			}
		}
		slices.SortFunc(tags, func(a, b protocols.Tag) int { return strings.Compare(a.Key, b.Key) })
		p.tags = tags
	}
}

type pollMetrics struct {
	polls, errors, points, badPayloads, refused, notifications *metrics.Counter
}

func (in *Input) pollMetrics(p *Poll) *pollMetrics {
	c := protocols.InputCounters(in.set, "coap", "url", p.URL)
	return &pollMetrics{
		polls: c("polls"), errors: c("poll_errors"), points: c("points"), badPayloads: c("parse_errors"),
		refused: c("writes_refused"), notifications: c("notifications"),
	}
}

// runPoll reads one resource until ctx is done.
func (in *Input) runPoll(ctx context.Context, acc protocols.Accumulator, p *Poll) {
	m := in.pollMetrics(p)
	var periodic sync.WaitGroup
	defer periodic.Wait()
	var cc *udpclient.Conn
	defer func() {
		if cc != nil {
			cc.Close()
		}
	}()
	// A new exchange waits Interval after the previous one started, plus
	// up to Jitter, and the first waits the jitter alone.
	wait := jitter(p.Jitter.D())
	backoff := time.Duration(0) // between registrations that brought nothing
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		started := time.Now()
		if cc == nil || isDone(cc) {
			if cc != nil {
				cc.Close()
			}
			var err error
			cc, err = udp.Dial(p.addr,
				options.WithContext(ctx),
				options.WithPeriodicRunner(periodicRunner(ctx, &periodic)),
				options.WithMaxMessageSize(uint32(in.MaxBody)+1024),
				options.WithErrors(func(err error) { in.logBad("coap poll: connection error", "url", p.URL, "err", err) }),
			)
			if err != nil {
				cc = nil
				m.errors.Inc()
				in.logBad("coap poll: cannot dial", "url", p.URL, "err", err)
				wait = p.Interval.D() + jitter(p.Jitter.D())
				continue
			}
		}
		if !p.Observe {
			in.pollOnce(ctx, acc, p, cc, m)
			wait = max(0, p.Interval.D()-time.Since(started)) + jitter(p.Jitter.D())
			continue
		}
		// An observation that ended is renewed after a second, and after
		// twice as long each time one brings nothing, up to the interval.
		if in.observe(ctx, acc, p, cc, m) {
			backoff = time.Second
		} else {
			backoff = min(max(2*backoff, time.Second), p.Interval.D())
		}
		wait = min(backoff, p.Interval.D()) + jitter(p.Jitter.D())
	}
}

func isDone(cc *udpclient.Conn) bool {
	select {
	case <-cc.Done():
		return true
	default:
		return false
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

func (p *Poll) options() []message.Option {
	opts := make([]message.Option, 0, len(p.queries))
	for _, q := range p.queries {
		opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	return opts
}

// pollOnce GETs the resource and stores what it answers.
func (in *Input) pollOnce(ctx context.Context, acc protocols.Accumulator, p *Poll, cc *udpclient.Conn, m *pollMetrics) {
	m.polls.Inc()
	rctx, cancel := context.WithTimeout(ctx, p.Timeout.D())
	defer cancel()
	resp, err := cc.Get(rctx, p.path, p.options()...)
	if err != nil {
		if ctx.Err() == nil {
			m.errors.Inc()
			in.logBad("coap poll failed", "url", p.URL, "err", err)
		}
		return
	}
	defer cc.ReleaseMessage(resp)
	in.consume(ctx, acc, p, resp, m)
}

// observe registers for notifications and stores each until the
// observation ends: ctx done, the server cancelling, no notification within
// the last one's Max-Age, or the connection failing. Notifications are
// handed to this goroutine, so a slow buffer commit holds back only this
// resource's notifications. It reports whether any arrived.
func (in *Input) observe(ctx context.Context, acc protocols.Accumulator, p *Poll, cc *udpclient.Conn, m *pollMetrics) (delivered bool) {
	m.polls.Inc()
	type note struct {
		code   codes.Code
		cf     int
		body   []byte
		maxAge time.Duration
	}
	notes := make(chan note, 16)
	rctx, cancel := context.WithTimeout(ctx, p.Timeout.D())
	obs, err := cc.Observe(rctx, p.path, func(r *pool.Message) {
		n := note{code: r.Code(), cf: -1, maxAge: defaultMaxAge}
		if f, err := r.ContentFormat(); err == nil {
			n.cf = int(f)
		}
		if ma, err := r.GetOptionUint32(message.MaxAge); err == nil {
			n.maxAge = time.Duration(ma) * time.Second
		}
		if r.Body() != nil {
			n.body, _ = r.ReadBody()
		}
		select {
		case notes <- n:
		case <-ctx.Done():
		}
	}, p.options()...)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			m.errors.Inc()
			in.logBad("coap observe failed", "url", p.URL, "err", err)
		}
		return
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.Timeout.D())
		_ = obs.Cancel(cctx)
		cancel()
	}()
	check := time.NewTicker(p.Interval.D())
	defer check.Stop()
	// RFC 7641 3.3.1: a representation older than its Max-Age means the
	// server may have lost the observation (a reboot, say): register again.
	fresh := time.NewTimer(defaultMaxAge + maxAgeGrace)
	defer fresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-cc.Done():
			m.errors.Inc()
			in.logBad("coap observe: connection closed, registering again", "url", p.URL)
			return
		case <-check.C:
			if obs.Canceled() {
				in.logBad("coap observe: the server ended the observation, registering again", "url", p.URL)
				return
			}
		case <-fresh.C:
			in.logBad("coap observe: no notification within Max-Age, registering again", "url", p.URL)
			return
		case n := <-notes:
			m.notifications.Inc()
			delivered = true
			fresh.Reset(n.maxAge + maxAgeGrace)
			in.store(ctx, acc, p, n.code, n.cf, n.body, m)
		}
	}
}

func (in *Input) consume(ctx context.Context, acc protocols.Accumulator, p *Poll, r *pool.Message, m *pollMetrics) {
	cf := -1
	if f, err := r.ContentFormat(); err == nil {
		cf = int(f)
	}
	var body []byte
	if r.Body() != nil {
		var err error
		if body, err = r.ReadBody(); err != nil {
			m.errors.Inc()
			in.logBad("coap poll: cannot read the answer", "url", p.URL, "err", err)
			return
		}
	}
	in.store(ctx, acc, p, r.Code(), cf, body, m)
}

// store decodes one answer and writes its points.
func (in *Input) store(ctx context.Context, acc protocols.Accumulator, p *Poll, code codes.Code, cf int, body []byte, m *pollMetrics) {
	if code != codes.Content && code != codes.Valid {
		m.errors.Inc()
		in.logBad("coap poll: unexpected answer", "url", p.URL, "code", code.String(), "body", string(body[:min(len(body), 200)]))
		return
	}
	format := p.Format
	if format == "" {
		format = "line"
		if cf == int(message.AppJSON) {
			format = "json"
		}
	}
	var pts []protocols.Point
	var perr error
	if format == "json" {
		pts, perr = decodeJSON(body, p.measurement, nil, time.Now())
		for i := range pts {
			protocols.AddMissingTags(&pts[i], p.tags)
		}
	} else {
		pts, perr = protocols.DecodeTagged(body, p.precision, p.tags)
	}
	if perr != nil {
		m.badPayloads.Inc()
		in.logBad("coap poll: bad payload", "url", p.URL, "stored", len(pts), "err", perr)
		if err := protocols.Quarantine(ctx, acc, "coap "+p.URL, body, perr); err != nil && ctx.Err() == nil {
			in.logBad("coap: quarantine failed", "err", err)
		}
	}
	if len(pts) == 0 {
		return
	}
	if err := acc.Write(ctx, pts); err != nil {
		if ctx.Err() == nil {
			// Nothing to acknowledge and no one to retry for us: the
			// next poll reads the resource's newer state.
			m.refused.Inc()
			in.logBad("coap poll: write refused; these readings are lost", "url", p.URL, "points", len(pts), "err", err)
		}
		return
	}
	m.points.AddInt64(int64(len(pts)))
}

// errNothingToDo is reported by Init for an input with neither a server
// nor polls.
var errNothingToDo = errors.New("listen is empty and there is nothing to poll")
