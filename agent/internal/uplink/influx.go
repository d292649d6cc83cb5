package uplink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/citysense/citysense/agent/internal/buffer"
)

// InfluxConfig configures the influx output: the InfluxDB line-protocol
// write API, which InfluxDB 1.x and 2.x, VictoriaMetrics and the CitySense
// collector all serve.
type InfluxConfig struct {
	URL string // base URL, e.g. http://influx.example:8086
	API string // v1 (/write) or v2 (/api/v2/write)

	Database        string // v1
	RetentionPolicy string // v1, optional
	Org             string // v2
	Bucket          string // v2

	Token              string // sent as "Authorization: Token …"
	Username, Password string // v1 basic auth
	Gzip               bool   // compress request bodies
	TLS                TLS
}

// Influx API versions.
const (
	InfluxV1 = "v1"
	InfluxV2 = "v2"
)

// maxRetryAfter caps what a server may ask for: a misconfigured proxy
// answering "Retry-After: 86400" must not park a gateway for a day.
const maxRetryAfter = 5 * time.Minute

type influxSender struct {
	cfg    InfluxConfig
	log    *slog.Logger
	write  string // the write URL with its query
	client *http.Client
	tc     *buffer.Transcoder
	ctx    context.Context
	cancel context.CancelFunc
	conn   atomic.Bool
	upCh   chan struct{}
}

func newInflux(cfg Config, log *slog.Logger) (*influxSender, error) {
	ic := cfg.Influx
	u, err := url.Parse(ic.URL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("want an http:// or https:// url, got %q", ic.URL)
	}
	q := url.Values{"precision": {"ns"}}
	switch ic.API {
	case InfluxV1:
		if ic.Database == "" {
			return nil, errors.New("api v1 needs a database")
		}
		q.Set("db", ic.Database)
		if ic.RetentionPolicy != "" {
			q.Set("rp", ic.RetentionPolicy)
		}
		u = u.JoinPath("write")
	case InfluxV2:
		if ic.Bucket == "" {
			return nil, errors.New("api v2 needs a bucket")
		}
		q.Set("bucket", ic.Bucket)
		if ic.Org != "" {
			q.Set("org", ic.Org)
		}
		u = u.JoinPath("api", "v2", "write")
	default:
		return nil, fmt.Errorf("api %q: want v1 or v2", ic.API)
	}
	u.RawQuery = q.Encode()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.MaxInflight
	if ic.TLS.enabled() {
		tc, err := ic.TLS.config()
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	s := &influxSender{
		cfg:    ic,
		log:    log,
		write:  u.String(),
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout},
		upCh:   make(chan struct{}, 1),
	}
	s.conn.Store(true) // until a request says otherwise
	return s, nil
}

func (s *influxSender) open(context.Context) error {
	tc, err := buffer.NewTranscoder()
	if err != nil {
		return err
	}
	s.tc = tc
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return nil
}

func (s *influxSender) close() {
	s.cancel()
	s.client.CloseIdleConnections()
	s.tc.Close()
}

func (s *influxSender) connected() bool     { return s.conn.Load() }
func (s *influxSender) up() <-chan struct{} { return s.upCh }

func (s *influxSender) setConnected(ok bool) {
	if ok && !s.conn.Swap(true) {
		select {
		case s.upCh <- struct{}{}:
		default:
		}
	}
	if !ok {
		s.conn.Store(false)
	}
}

func (s *influxSender) send(b buffer.Batch, id string) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- s.post(b, id) }()
	return ch
}

func (s *influxSender) post(b buffer.Batch, id string) result {
	lp, err := s.tc.Lines(&b)
	if err != nil {
		// The buffer checked the body's checksum: this batch will never
		// decode, whatever the server.
		return result{err: fmt.Errorf("decompress: %w", err), permanent: true}
	}
	body := lp
	if s.cfg.Gzip {
		var buf bytes.Buffer
		buf.Grow(len(lp) / 4)
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		zw.Write(lp)
		zw.Close()
		body = buf.Bytes()
	}
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.write, bytes.NewReader(body))
	if err != nil {
		return result{err: err, permanent: true}
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("X-Request-Id", id) // lets an operator follow the batch in the server's log
	if s.cfg.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	switch {
	case s.cfg.Token != "":
		req.Header.Set("Authorization", "Token "+s.cfg.Token)
	case s.cfg.Username != "":
		req.SetBasicAuth(s.cfg.Username, s.cfg.Password)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.setConnected(false)
		return result{err: err}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // so the connection is reused
	text := strings.TrimSpace(string(msg))
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		s.setConnected(true)
		return result{}
	case code == http.StatusBadRequest, code == http.StatusRequestEntityTooLarge, code == http.StatusUnprocessableEntity:
		// The server understood and refuses this data: sending it again
		// cannot help. (Influx-compatible servers store the valid lines of
		// a batch and name the bad one.)
		s.setConnected(true)
		return result{err: fmt.Errorf("%s: %s", resp.Status, text), permanent: true}
	case code == http.StatusTooManyRequests || code >= 500:
		s.setConnected(false)
		return result{err: fmt.Errorf("%s: %s", resp.Status, text), retryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	default:
		// 401, 403, 404…: a configuration problem the operator must fix;
		// the data waits in the buffer meanwhile.
		s.setConnected(true)
		return result{err: fmt.Errorf("%s: %s", resp.Status, text)}
	}
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
