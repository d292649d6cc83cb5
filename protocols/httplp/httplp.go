package httplp

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed sample.yaml
var sampleConfig string

func init() {
	protocols.Register("http", func() protocols.Input { return New() })
}

// Defaults.
const (
	DefaultListen      = "127.0.0.1:8186"
	DefaultMaxBody     = 32 << 20
	DefaultMeasurement = "http"
	DefaultReadTimeout = 30 * time.Second
)

// Input is the "http" input. Its exported fields are its YAML configuration.
type Input struct {
	Listen      string            `yaml:"listen"`
	MaxBody     confx.Size        `yaml:"max_body"`
	Token       string            `yaml:"token"`
	Precision   string            `yaml:"precision"`
	Measurement string            `yaml:"measurement"`
	Tags        map[string]string `yaml:"tags"`
	TLSCert     string            `yaml:"tls_cert"`
	TLSKey      string            `yaml:"tls_key"`
	ReadTimeout confx.Duration    `yaml:"read_timeout"`

	log       *slog.Logger
	set       *metrics.Set
	m         *inputMetrics
	precision protocols.Precision
	tags      []protocols.Tag

	mu   sync.Mutex
	addr net.Addr // bound address, once listening

	logLim protocols.LogLimiter
}

// New returns an Input with the documented defaults.
func New() *Input {
	return &Input{
		Listen:      DefaultListen,
		MaxBody:     DefaultMaxBody,
		Precision:   "ns",
		Measurement: DefaultMeasurement,
		ReadTimeout: confx.Duration(DefaultReadTimeout),
	}
}

// SampleConfig returns the documented example configuration.
func (*Input) SampleConfig() string { return sampleConfig }

// SetMetrics makes the input register its metrics in set (the agent's, so
// that they appear on its /metrics). Without it they go to a private set.
func (in *Input) SetMetrics(set *metrics.Set) { in.set = set }

// Init validates the configuration without I/O and reports every problem.
func (in *Input) Init(log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in.log = log
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, confx.Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if err := confx.CheckListen(in.Listen, "127.0.0.1:8186"); err != nil {
		bad("listen", "%v", err)
	}
	if in.MaxBody < 1024 {
		bad("max_body", "must be at least 1KiB, got %d bytes", in.MaxBody)
	}
	p, err := protocols.ParsePrecision(in.Precision)
	if err != nil {
		bad("precision", "%v", err)
	}
	in.precision = p
	if in.Measurement == "" {
		bad("measurement", "must not be empty")
	}
	tags, err := protocols.SortedTags(in.Tags)
	if err != nil {
		bad("tags", "%v", err)
	}
	in.tags = tags
	if (in.TLSCert == "") != (in.TLSKey == "") {
		bad("tls_cert", "tls_cert and tls_key go together")
	}
	if in.ReadTimeout.D() <= 0 {
		bad("read_timeout", "must be positive, got %v", in.ReadTimeout)
	}
	return errors.Join(errs...)
}

// Addr returns the address the input listens on, once Run has bound it.
func (in *Input) Addr() net.Addr {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.addr
}

type inputMetrics struct {
	requests *metrics.Counter
	points   *metrics.Counter
	badLines *metrics.Counter
	badReqs  *metrics.Counter
	tooLarge *metrics.Counter
	unauth   *metrics.Counter
	refused  *metrics.Counter
}

func newInputMetrics(set *metrics.Set, listen string) *inputMetrics {
	c := protocols.InputCounters(set, "http", "listen", listen)
	return &inputMetrics{
		requests: c("requests"), points: c("points"), badLines: c("parse_errors"), badReqs: c("bad_requests"),
		tooLarge: c("too_large"), unauth: c("unauthorized"), refused: c("writes_refused"),
	}
}

// Run listens until ctx is done, then shuts the server down, letting
// requests in progress finish for up to five seconds. It returns an error
// when it cannot listen.
func (in *Input) Run(ctx context.Context, acc protocols.Accumulator) error {
	if in.log == nil {
		if err := in.Init(nil); err != nil {
			return err
		}
	}
	l, err := net.Listen("tcp", in.Listen)
	if err != nil {
		return fmt.Errorf("http input: listen %s: %w", in.Listen, err)
	}
	in.mu.Lock()
	in.addr = l.Addr()
	in.mu.Unlock()
	srv := &http.Server{
		Handler:           in.Handler(acc),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       in.ReadTimeout.D(),
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(in.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	in.log.Info("http input listening", "addr", l.Addr().String(), "tls", in.TLSCert != "")
	done := make(chan error, 1)
	go func() {
		if in.TLSCert != "" {
			done <- srv.ServeTLS(l, in.TLSCert, in.TLSKey)
		} else {
			done <- srv.Serve(l)
		}
	}()
	select {
	case err := <-done:
		return fmt.Errorf("http input: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-done
	return nil
}

// Handler returns the input's HTTP handler writing to acc; Run serves it.
func (in *Input) Handler(acc protocols.Accumulator) http.Handler {
	if in.log == nil {
		_ = in.Init(nil)
	}
	if in.m == nil {
		in.m = newInputMetrics(in.set, in.Listen)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) { in.serveLine(w, r, acc, "precision") })
	mux.HandleFunc("POST /api/v2/write", func(w http.ResponseWriter, r *http.Request) { in.serveLine(w, r, acc, "precision") })
	mux.HandleFunc("POST /api/v1/push", func(w http.ResponseWriter, r *http.Request) { in.servePush(w, r, acc) })
	// Telegraf's outputs.influxdb pings and creates its database first.
	ping := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }
	mux.HandleFunc("GET /ping", ping)
	mux.HandleFunc("HEAD /ping", ping)
	mux.HandleFunc("POST /query", func(w http.ResponseWriter, r *http.Request) {
		if !in.authorized(r) {
			in.fail(w, http.StatusUnauthorized, "unauthorized", "missing or wrong token")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"results":[{"statement_id":0}]}`)
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"pass"}`)
	})
	return mux
}

// authorized checks the token in the forms InfluxDB clients send it.
func (in *Input) authorized(r *http.Request) bool {
	if in.Token == "" {
		return true
	}
	got := ""
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		switch strings.ToLower(scheme) {
		case "token", "bearer":
			got = strings.TrimSpace(cred)
		case "basic":
			if _, p, ok := r.BasicAuth(); ok {
				got = p
			}
		}
	} else if p := r.URL.Query().Get("p"); p != "" {
		got = p
	} else {
		got = r.URL.Query().Get("token")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(in.Token)) == 1
}

// errTooLarge marks a body over max_body.
var errTooLarge = errors.New("request body too large")

// readBody reads the body, decompressing gzip, and enforces max_body on
// both the wire bytes and the decompressed bytes (a small gzip bomb must
// not fill the memory).
func (in *Input) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := int64(in.MaxBody)
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, errTooLarge
			}
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		body = zr
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q (want gzip or none)", enc)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 && r.ContentLength < limit {
		buf.Grow(int(r.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(body, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, fmt.Errorf("read body: %w", err)
	}
	if n > limit {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// serveLine handles /write and /api/v2/write.
func (in *Input) serveLine(w http.ResponseWriter, r *http.Request, acc protocols.Accumulator, precParam string) {
	in.m.requests.Inc()
	if !in.authorized(r) {
		in.m.unauth.Inc()
		in.fail(w, http.StatusUnauthorized, "unauthorized", "missing or wrong token")
		return
	}
	prec, ok := in.precisionParam(w, r, precParam, in.precision)
	if !ok {
		return
	}
	body, ok := in.body(w, r)
	if !ok {
		return
	}
	pts, decErr := protocols.DecodeTagged(body, prec, in.tags)
	if !in.commit(w, r, acc, pts) {
		return
	}
	if decErr != nil {
		var de *protocols.DecodeErrors
		n := 1
		if errors.As(decErr, &de) {
			n = len(de.Errs) + de.Dropped
		}
		in.m.badLines.AddInt64(int64(n))
		in.logBad("http input: bad lines", "remote", r.RemoteAddr, "bad", n, "stored", len(pts), "err", decErr)
		in.quarantine(r.Context(), acc, "http "+r.URL.Path+" from "+r.RemoteAddr, body, decErr)
		in.fail(w, http.StatusBadRequest, "invalid", badLinesMessage(decErr, len(pts)))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// badLinesMessage names every bad line (as far as they were collected) and
// says how many valid points were stored, as InfluxDB's partial writes do.
func badLinesMessage(err error, stored int) string {
	var de *protocols.DecodeErrors
	if !errors.As(err, &de) {
		return fmt.Sprintf("partial write: %v; %d points stored", err, stored)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "partial write: %d bad lines, %d points stored", len(de.Errs)+de.Dropped, stored)
	for _, le := range de.Errs {
		b.WriteString("; ")
		b.WriteString(le.Error())
	}
	if de.Dropped > 0 {
		fmt.Fprintf(&b, "; and %d more", de.Dropped)
	}
	return b.String()
}

// body reads the request body and answers 413 or 400 itself when it cannot.
func (in *Input) body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := in.readBody(w, r)
	switch {
	case errors.Is(err, errTooLarge):
		in.m.tooLarge.Inc()
		in.fail(w, http.StatusRequestEntityTooLarge, "request too large", fmt.Sprintf("body exceeds max_body (%d bytes)", int64(in.MaxBody)))
		return nil, false
	case err != nil:
		in.m.badReqs.Inc()
		in.fail(w, http.StatusBadRequest, "invalid", err.Error())
		return nil, false
	}
	return body, true
}

// commit writes the points; on a refused write it answers 503 and reports
// false. No points is a successful commit.
func (in *Input) commit(w http.ResponseWriter, r *http.Request, acc protocols.Accumulator, pts []protocols.Point) bool {
	if len(pts) == 0 {
		return true
	}
	if err := acc.Write(r.Context(), pts); err != nil {
		in.m.refused.Inc()
		in.logBad("http input: write refused", "remote", r.RemoteAddr, "points", len(pts), "err", err)
		w.Header().Set("Retry-After", "1")
		in.fail(w, http.StatusServiceUnavailable, "unavailable", "the agent's buffer did not take the points: "+err.Error())
		return false
	}
	in.m.points.AddInt64(int64(len(pts)))
	return true
}

// precisionParam reads the request's precision parameter (def when
// absent) and answers 400 itself when it is bad.
func (in *Input) precisionParam(w http.ResponseWriter, r *http.Request, param string, def protocols.Precision) (protocols.Precision, bool) {
	prec, err := protocols.PrecisionOr(r.URL.Query().Get(param), def)
	if err != nil {
		in.m.badReqs.Inc()
		in.fail(w, http.StatusBadRequest, "invalid", err.Error())
		return prec, false
	}
	return prec, true
}

// pushPoint is one point of /api/v1/push.
type pushPoint struct {
	Measurement string            `json:"measurement"`
	Tags        map[string]string `json:"tags"`
	Fields      map[string]any    `json:"fields"`
	// Time is RFC 3339 or a number in the request's precision (default
	// seconds); absent: the receive time.
	Time json.RawMessage `json:"time"`
}

// servePush handles /api/v1/push: a JSON object or an array of objects
// {"measurement":…,"tags":{…},"fields":{…},"time":…}.
func (in *Input) servePush(w http.ResponseWriter, r *http.Request, acc protocols.Accumulator) {
	in.m.requests.Inc()
	if !in.authorized(r) {
		in.m.unauth.Inc()
		in.fail(w, http.StatusUnauthorized, "unauthorized", "missing or wrong token")
		return
	}
	prec, ok := in.precisionParam(w, r, "precision", protocols.Second)
	if !ok {
		return
	}
	body, ok := in.body(w, r)
	if !ok {
		return
	}
	pts, errs := decodePush(body, in.Measurement, prec, time.Now())
	for i := range pts {
		protocols.AddMissingTags(&pts[i], in.tags)
	}
	if !in.commit(w, r, acc, pts) {
		return
	}
	if len(errs) > 0 {
		in.m.badLines.AddInt64(int64(len(errs)))
		in.logBad("http input: bad JSON points", "remote", r.RemoteAddr, "bad", len(errs), "err", errs[0])
		in.quarantine(r.Context(), acc, "http "+r.URL.Path+" from "+r.RemoteAddr, body, errors.Join(errs...))
		msgs := make([]string, 0, min(len(errs), 20))
		for _, e := range errs[:min(len(errs), 20)] {
			msgs = append(msgs, e.Error())
		}
		in.fail(w, http.StatusBadRequest, "invalid", fmt.Sprintf("partial write: %d bad points, %d points stored; %s", len(errs), len(pts), strings.Join(msgs, "; ")))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decodePush reads the JSON body of /api/v1/push. Bad points are reported
// by their index; the good ones are returned.
func decodePush(body []byte, measurement string, prec protocols.Precision, now time.Time) ([]protocols.Point, []error) {
	body = bytes.TrimSpace(body)
	var raw []json.RawMessage
	if len(body) > 0 && body[0] == '[' {
		if err := json.Unmarshal(body, &raw); err != nil {
			return nil, []error{fmt.Errorf("body: %w", err)}
		}
	} else {
		raw = []json.RawMessage{body}
	}
	var pts []protocols.Point
	var errs []error
	for i, rm := range raw {
		p, err := pushToPoint(rm, measurement, prec, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("point %d: %w", i, err))
			continue
		}
		pts = append(pts, p)
	}
	return pts, errs
}

func pushToPoint(rm json.RawMessage, measurement string, prec protocols.Precision, now time.Time) (protocols.Point, error) {
	var pp pushPoint
	dec := json.NewDecoder(bytes.NewReader(rm))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pp); err != nil {
		return protocols.Point{}, err
	}
	if pp.Measurement == "" {
		pp.Measurement = measurement
	}
	if len(pp.Fields) == 0 {
		return protocols.Point{}, errors.New("no fields")
	}
	fields := make([]protocols.Field, 0, len(pp.Fields))
	for k, v := range pp.Fields {
		var val protocols.Value
		switch x := v.(type) {
		case json.Number:
			f, err := strconv.ParseFloat(string(x), 64)
			if err != nil || math.IsInf(f, 0) {
				return protocols.Point{}, fmt.Errorf("field %q: %s is not a finite number", k, x)
			}
			val = protocols.Float(f)
		case bool:
			val = protocols.Bool(x)
		case string:
			val = protocols.String(x)
		default:
			return protocols.Point{}, fmt.Errorf("field %q: want a number, boolean or string", k)
		}
		fields = append(fields, protocols.Field{Key: k, Value: val})
	}
	slices.SortFunc(fields, func(a, b protocols.Field) int { return strings.Compare(a.Key, b.Key) })
	ts := now.UnixNano()
	if len(pp.Time) > 0 && string(pp.Time) != "null" {
		var s string
		if err := json.Unmarshal(pp.Time, &s); err == nil {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return protocols.Point{}, fmt.Errorf("time: %w", err)
			}
			ts = t.UnixNano()
		} else {
			var n json.Number
			if err := json.Unmarshal(pp.Time, &n); err != nil {
				return protocols.Point{}, errors.New("time: want RFC 3339 or a number")
			}
			i, err := n.Int64()
			if err != nil {
				return protocols.Point{}, fmt.Errorf("time: %s is not an integer in precision %s", n, prec)
			}
			unit := int64(prec.Duration())
			if i > math.MaxInt64/unit || i < math.MinInt64/unit {
				return protocols.Point{}, fmt.Errorf("time: %d out of range", i)
			}
			ts = i * unit
		}
	}
	return protocols.NewPoint(pp.Measurement, pp.Tags, fields, ts)
}

func (in *Input) quarantine(ctx context.Context, acc protocols.Accumulator, source string, raw []byte, reason error) {
	if err := protocols.Quarantine(ctx, acc, source, raw, reason); err != nil && ctx.Err() == nil {
		in.logBad("http input: quarantine failed", "err", err)
	}
}

// fail answers with InfluxDB's error body {"code":…,"message":…}.
func (in *Input) fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Influxdb-Error", msg)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

// logBad logs at most once a second, with the number of lines suppressed.
func (in *Input) logBad(msg string, args ...any) { in.logLim.Warn(in.log, msg, args...) }

// Interface guards.
var (
	_ protocols.Input        = (*Input)(nil)
	_ protocols.SampleConfig = (*Input)(nil)
)
