package uplink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citysense/citysense/agent/internal/buffer"
)

// Header values of the agent → collector contract.
const (
	HeaderContentEncoding = "Content-Encoding"
	SubjectPrefix         = "cs.raw."
)

// NATSConfig configures the nats output.
type NATSConfig struct {
	URL string // nats://host:4222 or tls://…, comma-separated for several servers
	// Creds is a file holding either a user NKey seed (as `citysense-collector
	// agent add` writes it) or a standard .creds file with a user JWT.
	Creds         string
	TLS           TLS
	ReconnectWait time.Duration // between reconnect attempts, plus jitter
}

// publisher is the part of jetstream.JetStream the output uses, so tests
// can stand in for the server.
type publisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

type natsSender struct {
	cfg        Config
	log        *slog.Logger
	subject    string
	auth       nats.Option // from Creds; nil without
	tlsOpt     nats.Option
	reconnects *metrics.Counter

	// dial connects; tests replace it.
	dial func(ctx context.Context) (publisher, func() bool, func(), error)

	pub         publisher
	isConnected atomic.Pointer[func() bool] // set by open, read by anyone
	closeConn   func()
	tc          *buffer.Transcoder
	conn        atomic.Bool
	upCh        chan struct{}
	closed      chan struct{}

	lastErrLog    atomic.Int64 // unix ns
	errSuppressed atomic.Int64
}

// errLogEvery limits the connection error log.
const errLogEvery = 10 * time.Second

func newNATS(cfg Config, log *slog.Logger) (*natsSender, error) {
	if err := checkNATSURLs(cfg.NATS.URL); err != nil {
		return nil, err
	}
	s := &natsSender{
		cfg:     cfg,
		log:     log,
		subject: SubjectPrefix + cfg.AgentID,
		upCh:    make(chan struct{}, 1),
		closed:  make(chan struct{}),
	}
	s.dial = s.dialNATS
	return s, nil
}

// checkNATSURLs accepts what nats.Connect accepts for servers: a
// comma-separated list of nats:// or tls:// URLs with a host.
func checkNATSURLs(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("no url, e.g. nats://collector.example:4222")
	}
	for _, part := range strings.Split(s, ",") {
		u, err := parseURL(strings.TrimSpace(part))
		if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls") {
			return fmt.Errorf("want nats://host:port or tls://host:port, got %q", part)
		}
	}
	return nil
}

func parseURL(s string) (*url.URL, error) { return url.Parse(s) }

// CredsKind tells what a credentials file holds.
type CredsKind int

// Kinds of credentials files.
const (
	CredsNKeySeed CredsKind = iota + 1 // a user NKey seed, decorated or bare
	CredsJWT                           // a user JWT with its seed (.creds)
)

// DetectCreds reads a credentials file and says which kind it is, so that
// both what the collector issues and a standard NATS .creds file work.
func DetectCreds(path string) (CredsKind, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read credentials: %w", err)
	}
	defer clear(data) // a seed is a secret: do not leave it on the heap
	switch {
	case bytes.Contains(data, []byte("BEGIN NATS USER JWT")):
		return CredsJWT, nil
	case bytes.Contains(data, []byte("BEGIN USER NKEY SEED")), bytes.HasPrefix(bytes.TrimSpace(data), []byte("SU")):
		return CredsNKeySeed, nil
	}
	return 0, fmt.Errorf("credentials file %q holds neither a user NKey seed nor a user JWT", path)
}

// authOption returns the nats option for a credentials file.
func authOption(path string) (nats.Option, error) {
	kind, err := DetectCreds(path)
	if err != nil {
		return nil, err
	}
	if kind == CredsJWT {
		return nats.UserCredentials(path), nil
	}
	opt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return nil, fmt.Errorf("credentials %q: %w", path, err)
	}
	return opt, nil
}

func (s *natsSender) open(ctx context.Context) error {
	if s.cfg.NATS.Creds != "" {
		opt, err := authOption(s.cfg.NATS.Creds)
		if err != nil {
			return err
		}
		s.auth = opt
	}
	if s.cfg.NATS.TLS.enabled() {
		tc, err := s.cfg.NATS.TLS.config()
		if err != nil {
			return err
		}
		s.tlsOpt = nats.Secure(tc)
	}
	tc, err := buffer.NewTranscoder()
	if err != nil {
		return err
	}
	pub, isConnected, closeConn, err := s.dial(ctx)
	if err != nil {
		tc.Close()
		return err
	}
	s.tc = tc
	s.pub, s.closeConn = pub, closeConn
	s.isConnected.Store(&isConnected)
	if isConnected() {
		s.setUp()
	} else {
		s.log.Warn("collector not reachable yet; buffering and retrying")
	}
	return nil
}

// dialNATS connects with endless, jittered reconnects. With
// RetryOnFailedConnect the agent starts even when the collector is down.
func (s *natsSender) dialNATS(context.Context) (publisher, func() bool, func(), error) {
	wait := s.cfg.NATS.ReconnectWait
	opts := []nats.Option{
		nats.Name("citysense-agent " + s.cfg.AgentID),
		// The collector lets an agent subscribe to its own inbox only
		// (_INBOX.<id>.>), where its PubAcks arrive.
		nats.CustomInboxPrefix("_INBOX." + s.cfg.AgentID),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(wait),
		nats.ReconnectJitter(wait/2, wait),
		// The buffer on disk is the queue; publishing while disconnected
		// should fail and back off, not pile up in memory.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(nc *nats.Conn) {
			s.setUp()
			s.log.Info("connected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			if s.reconnects != nil {
				s.reconnects.Inc()
			}
			s.setUp()
			s.log.Info("reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			s.conn.Store(false)
			if err != nil { // nil: we closed it
				s.log.Warn("disconnected; buffering", "err", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			// A refused publish (permissions) comes back once per batch
			// in flight: say it once per errLogEvery, with a count.
			now := time.Now().UnixNano()
			if last := s.lastErrLog.Load(); now-last < int64(errLogEvery) || !s.lastErrLog.CompareAndSwap(last, now) {
				s.errSuppressed.Add(1)
				return
			}
			s.log.Warn("connection error", "err", err, "suppressed", s.errSuppressed.Swap(0))
		}),
	}
	if s.auth != nil {
		opts = append(opts, s.auth)
	}
	if s.tlsOpt != nil {
		opts = append(opts, s.tlsOpt)
	}
	nc, err := nats.Connect(s.cfg.NATS.URL, opts...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("connect to %s: %w", redact(s.cfg.NATS.URL), err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(s.cfg.MaxInflight),
		jetstream.WithPublishAsyncTimeout(s.cfg.Timeout))
	if err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("jetstream on %s: %w", redact(s.cfg.NATS.URL), err)
	}
	return js, nc.IsConnected, nc.Close, nil
}

func (s *natsSender) setUp() {
	s.conn.Store(true)
	select {
	case s.upCh <- struct{}{}:
	default:
	}
}

func (s *natsSender) connected() bool {
	if f := s.isConnected.Load(); f != nil {
		return (*f)()
	}
	return s.conn.Load()
}

func (s *natsSender) up() <-chan struct{} { return s.upCh }

func (s *natsSender) close() {
	close(s.closed)
	if s.closeConn != nil {
		s.closeConn()
	}
	if s.tc != nil {
		s.tc.Close()
	}
	s.conn.Store(false)
}

// ErrNotConnected is the delivery error while the connection is down.
var ErrNotConnected = errors.New("not connected to the collector")

func (s *natsSender) send(b buffer.Batch, id string) <-chan result {
	ch := make(chan result, 1)
	if !s.connected() {
		// Fail fast and back off; nats.go would fail too, with a confusing
		// "headers not supported" before the first connect.
		ch <- result{err: ErrNotConnected}
		return ch
	}
	// The buffer stores columns; the collector takes line protocol.
	body, err := s.tc.Wire(&b)
	if err != nil {
		// The buffer checked the body's checksum: this batch will never
		// decode, whatever the server.
		ch <- result{err: fmt.Errorf("batch %s: %w", id, err), permanent: true}
		return ch
	}
	msg := nats.NewMsg(s.subject)
	msg.Header.Set(jetstream.MsgIDHeader, id)
	msg.Header.Set(HeaderContentEncoding, b.Codec.String())
	msg.Data = body
	f, err := s.pub.PublishMsgAsync(msg)
	if err != nil {
		ch <- natsResult(err)
		return ch
	}
	// Futures resolve by ack, by error or by the publish timeout; the
	// closed case only guards against a client that forgets one.
	go func() {
		select {
		case ack := <-f.Ok():
			ch <- result{duplicate: ack.Duplicate}
		case err := <-f.Err():
			ch <- natsResult(err)
		case <-s.closed:
			ch <- result{err: errClosed}
		}
	}()
	return ch
}

// natsResult classifies a publish error: a message larger than the server
// takes is refused for good, everything else is worth retrying.
func natsResult(err error) result {
	if errors.Is(err, nats.ErrMaxPayload) {
		return result{err: err, permanent: true}
	}
	return result{err: err}
}
