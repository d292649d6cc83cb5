package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Message is one publication received from the broker.
type Message interface {
	Topic() string
	Payload() []byte
	// Ack acknowledges a QoS 1 or 2 message to the broker; it is a no-op
	// for QoS 0 and safe to call from any goroutine.
	Ack()
}

// Client is the part of an MQTT client the input uses. Messages are handed to
// ClientConfig.Handle.
type Client interface {
	// Connect returns once the client is connected and subscribed, or with
	// an error when ctx is done first. The client then reconnects and
	// resubscribes by itself until Disconnect.
	Connect(ctx context.Context) error
	Disconnect()
}

// ClientConfig is everything a Client needs.
type ClientConfig struct {
	Broker         string
	ClientID       string
	Username       string
	Password       string
	CleanSession   bool
	TLS            *tls.Config // nil: plain TCP, or the system roots for ssl://
	KeepAlive      time.Duration
	ConnectTimeout time.Duration
	ReconnectMin   time.Duration
	ReconnectMax   time.Duration
	Subscriptions  map[string]byte // filter → QoS
	// Handle is called for each message in the order the broker sent them,
	// from one goroutine; it may block, which holds back further messages.
	// The message must be acknowledged with Message.Ack, never by the client.
	Handle func(Message)
	Log    *slog.Logger
}

// ClientFactory creates a Client; tests substitute a fake.
type ClientFactory func(ClientConfig) (Client, error)

// pahoClient adapts github.com/eclipse/paho.mqtt.golang.
type pahoClient struct {
	c   paho.Client
	cfg ClientConfig
}

// NewPahoClient returns a Client on paho with manual acknowledgement,
// in-order delivery, automatic reconnection with exponential backoff up to
// ReconnectMax, and a resubscription after every connect.
func NewPahoClient(cfg ClientConfig) (Client, error) {
	o := paho.NewClientOptions().
		AddBroker(cfg.Broker).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(cfg.CleanSession).
		SetKeepAlive(cfg.KeepAlive).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(cfg.ReconnectMin).
		SetMaxReconnectInterval(cfg.ReconnectMax).
		SetOrderMatters(true).
		// The input acknowledges after the buffer commit, not paho after
		// the handler returns.
		SetAutoAckDisabled(true).
		// Subscriptions live in the broker's session; on reconnect the
		// client subscribes again itself (OnConnect), so paho need not.
		SetResumeSubs(false)
	if cfg.TLS != nil {
		o.SetTLSConfig(cfg.TLS)
	}
	if u, err := url.Parse(cfg.Broker); err == nil && u.Scheme != "ws" && u.Scheme != "wss" {
		o.SetCustomOpenConnectionFn(OpenBuffered)
	}
	// Messages of a persistent session can arrive before SubscribeMultiple
	// returns; the default handler takes every message, so nothing is
	// dropped for want of a route.
	o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { cfg.Handle(m) })
	pc := &pahoClient{cfg: cfg}
	o.SetOnConnectHandler(func(c paho.Client) {
		cfg.Log.Info("mqtt connected", "broker", cfg.Broker, "client_id", cfg.ClientID)
		if err := pc.subscribe(c); err != nil {
			// Subscriptions of a persistent session survive at the broker;
			// a failure is logged and retried on the next connect.
			cfg.Log.Error("mqtt subscribe failed", "broker", cfg.Broker, "err", err)
		}
	})
	o.SetConnectionLostHandler(func(_ paho.Client, err error) {
		cfg.Log.Warn("mqtt connection lost, reconnecting", "broker", cfg.Broker, "err", err)
	})
	o.SetConnectionAttemptHandler(func(broker *url.URL, t *tls.Config) *tls.Config {
		cfg.Log.Debug("mqtt connecting", "broker", broker.Redacted())
		return t
	})
	pc.c = paho.NewClient(o)
	return pc, nil
}

func (pc *pahoClient) subscribe(c paho.Client) error {
	tok := c.SubscribeMultiple(pc.cfg.Subscriptions, nil)
	if !tok.WaitTimeout(pc.cfg.ConnectTimeout + 5*time.Second) {
		return errors.New("subscribe timed out")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		for f, code := range st.Result() {
			if code == 0x80 {
				return fmt.Errorf("broker refused subscription %q", f)
			}
		}
	}
	return nil
}

func (pc *pahoClient) Connect(ctx context.Context) error {
	tok := pc.c.Connect()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (pc *pahoClient) Disconnect() { pc.c.Disconnect(250) }

// bufferedConn reads through a bufio.Reader and coalesces writes. paho
// reads each packet's type byte and every byte of its length with a
// read(2) of its own, and writes every PUBACK with a write(2) of its own:
// at tens of thousands of messages a second those system calls are most
// of the input's CPU. Write appends to a buffer that one goroutine writes
// out, so the acknowledgements of a whole commit leave in one or two
// writes; an error of the connection is returned by the next Write, and
// Close flushes what is pending (for at most a second) before closing.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader

	mu      sync.Mutex
	cond    *sync.Cond // signals pending data, space, closing and errors
	pending []byte
	err     error
	closed  bool
	done    chan struct{} // closed when the flusher returns
}

// maxPending is how much Write buffers before it waits for the flusher.
const maxPending = 1 << 20

func newBufferedConn(conn net.Conn) *bufferedConn {
	c := &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, 64<<10), done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go c.flusher()
	return c
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *bufferedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) >= maxPending && c.err == nil && !c.closed {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closed:
		return 0, net.ErrClosed
	}
	c.pending = append(c.pending, p...)
	c.cond.Broadcast()
	return len(p), nil
}

func (c *bufferedConn) flusher() {
	defer close(c.done)
	var out []byte
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for len(c.pending) == 0 && !c.closed {
			c.cond.Wait()
		}
		if len(c.pending) == 0 {
			return // closed, nothing left
		}
		out, c.pending = c.pending, out[:0]
		c.mu.Unlock()
		_, err := c.Conn.Write(out)
		c.mu.Lock()
		c.cond.Broadcast()
		if err != nil {
			c.err, c.pending = err, nil
			return
		}
	}
}

func (c *bufferedConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	<-c.done
	return c.Conn.Close()
}

// OpenBuffered is a paho OpenConnectionFunc: it dials tcp://, mqtt:// and
// the TLS schemes as paho does, and wraps the connection so that reads go
// through a buffer and writes are coalesced (see bufferedConn). Clients
// other than the input's (a load generator, say) may use it too.
func OpenBuffered(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	d := &net.Dialer{Timeout: o.ConnectTimeout}
	var conn net.Conn
	var err error
	switch uri.Scheme {
	case "tcp", "mqtt":
		conn, err = d.Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts", "tcps":
		conn, err = tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
	default:
		return nil, fmt.Errorf("unsupported scheme %q", uri.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return newBufferedConn(conn), nil
}

// Interface guards.
var (
	_ Client                  = (*pahoClient)(nil)
	_ Message                 = paho.Message(nil)
	_ ClientFactory           = NewPahoClient
	_ paho.OpenConnectionFunc = OpenBuffered
)
