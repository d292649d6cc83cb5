package coap

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed sample.yaml
var sampleConfig string

func init() {
	protocols.Register("coap", func() protocols.Input { return New() })
}

// Defaults.
const (
	DefaultListen  = "127.0.0.1:5683"
	DefaultMaxBody = 64 << 10
)

// Input is the "coap" input. Its exported fields are its YAML configuration.
type Input struct {
	// Listen is the UDP address of the input's server; empty: no server
	// (the input only polls).
	Listen    string            `yaml:"listen"`
	Precision string            `yaml:"precision"`
	MaxBody   confx.Size        `yaml:"max_body"`
	Tags      map[string]string `yaml:"tags"`
	// Poll lists resources the input reads itself (GET or Observe).
	Poll []Poll `yaml:"poll"`

	log       *slog.Logger
	set       *metrics.Set
	m         *inputMetrics
	precision protocols.Precision
	tags      []protocols.Tag

	mu   sync.Mutex
	addr net.Addr

	logLim protocols.LogLimiter
}

// New returns an Input with the documented defaults.
func New() *Input {
	return &Input{Listen: DefaultListen, Precision: "s", MaxBody: DefaultMaxBody}
}

// SampleConfig returns the documented example configuration.
func (*Input) SampleConfig() string { return sampleConfig }

// SetMetrics makes the input register its metrics in set (the agent's, so
// that they appear on its /metrics). Without it they go to a private set.
func (in *Input) SetMetrics(set *metrics.Set) { in.set = set }

// Init validates the configuration without I/O.
func (in *Input) Init(log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in.log = log
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, confx.Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if in.Listen == "" && len(in.Poll) == 0 {
		bad("listen", "%v", errNothingToDo)
	} else if in.Listen != "" {
		if err := confx.CheckListen(in.Listen, "127.0.0.1:5683"); err != nil {
			bad("listen", "%v", err)
		}
	}
	p, err := protocols.ParsePrecision(in.Precision)
	if err != nil {
		bad("precision", "%v", err)
	}
	in.precision = p
	if in.MaxBody < 64 || in.MaxBody > 16<<20 {
		bad("max_body", "must be between 64 bytes and 16MiB, got %d", in.MaxBody)
	}
	tags, err := protocols.SortedTags(in.Tags)
	if err != nil {
		bad("tags", "%v", err)
	}
	in.tags = tags
	in.compilePolls(bad)
	return errors.Join(errs...)
}

// Addr returns the bound UDP address once Run listens.
func (in *Input) Addr() net.Addr {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.addr
}

type inputMetrics struct {
	requests, points, badPayloads, refused, tooLarge *metrics.Counter
}

func (in *Input) metrics() *inputMetrics {
	if in.m == nil {
		c := protocols.InputCounters(in.set, "coap", "listen", in.Listen)
		in.m = &inputMetrics{requests: c("requests"), points: c("points"), badPayloads: c("parse_errors"), refused: c("writes_refused"), tooLarge: c("too_large")}
	}
	return in.m
}

// Run serves CoAP over UDP until ctx is done.
func (in *Input) Run(ctx context.Context, acc protocols.Accumulator) error {
	if in.log == nil {
		if err := in.Init(nil); err != nil {
			return err
		}
	}
	// Polls end with Run, also when the server fails.
	ctx, cancel := context.WithCancel(ctx)
	var polls sync.WaitGroup
	defer polls.Wait()
	defer cancel()
	for i := range in.Poll {
		p := &in.Poll[i]
		polls.Go(func() { in.runPoll(ctx, acc, p) })
	}
	if in.Listen == "" {
		<-ctx.Done()
		return nil
	}
	m := in.metrics()
	l, err := coapnet.NewListenUDP("udp", in.Listen)
	if err != nil {
		return fmt.Errorf("coap input: listen %s: %w", in.Listen, err)
	}
	in.mu.Lock()
	in.addr = l.LocalAddr()
	in.mu.Unlock()
	r := mux.NewRouter()
	r.DefaultHandle(mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		m.requests.Inc()
		path, _ := req.Path()
		queries, _ := req.Queries()
		cf := -1
		if f, err := req.ContentFormat(); err == nil {
			cf = int(f)
		}
		var body []byte
		if req.Body() != nil {
			body, err = req.ReadBody()
			if err != nil {
				respond(w, codes.BadRequest, "cannot read body: "+err.Error())
				return
			}
		}
		if req.Code() != codes.POST {
			respond(w, codes.MethodNotAllowed, "POST only")
			return
		}
		code, msg := in.Handle(req.Context(), acc, path, queries, cf, body)
		if code == codes.ServiceUnavailable {
			_ = w.SetResponse(code, message.TextPlain, bytes.NewReader([]byte(msg)), message.Option{ID: message.MaxAge, Value: []byte{1}})
			return
		}
		respond(w, code, msg)
	}))
	// go-coap's default periodic runner sleeps in a goroutine that outlives
	// the server; this one ends with ctx and is waited for.
	var periodic sync.WaitGroup
	defer periodic.Wait()
	srv := udp.NewServer(
		options.WithPeriodicRunner(periodicRunner(ctx, &periodic)),
		options.WithMux(r),
		options.WithContext(ctx),
		options.WithMaxMessageSize(uint32(in.MaxBody)+1024),
		options.WithErrors(func(err error) { in.logBad("coap: server error", "err", err) }),
	)
	in.log.Info("coap input listening", "addr", l.LocalAddr().String())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		l.Close()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("coap input: %w", err)
	case <-ctx.Done():
	}
	srv.Stop()
	<-done
	l.Close()
	return nil
}

// periodicRunner runs go-coap's housekeeping every second until ctx ends.
func periodicRunner(ctx context.Context, wg *sync.WaitGroup) func(func(time.Time) bool) {
	return func(f func(time.Time) bool) {
		wg.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-t.C:
					if !f(now) {
						return
					}
				}
			}
		})
	}
}

func respond(w mux.ResponseWriter, code codes.Code, msg string) {
	var body *bytes.Reader
	if msg != "" {
		body = bytes.NewReader([]byte(msg))
		_ = w.SetResponse(code, message.TextPlain, body)
		return
	}
	_ = w.SetResponse(code, message.TextPlain, nil)
}

// Handle turns one request into points, writes them and returns the
// response code and diagnostic; it is the whole protocol-independent part
// of the input. cf is the request's content format, -1 when absent.
func (in *Input) Handle(ctx context.Context, acc protocols.Accumulator, path string, queries []string, cf int, body []byte) (codes.Code, string) {
	m := in.metrics()
	if int64(len(body)) > int64(in.MaxBody) {
		m.tooLarge.Inc()
		return codes.RequestEntityTooLarge, fmt.Sprintf("body exceeds max_body (%d bytes)", int64(in.MaxBody))
	}
	path = strings.Trim(path, "/")
	q := map[string]string{}
	for _, kv := range queries {
		k, v, _ := strings.Cut(kv, "=")
		q[k] = v
	}
	var pts []protocols.Point
	var perr error
	switch {
	case path == "write":
		prec, err := protocols.PrecisionOr(q["precision"], in.precision)
		if err != nil {
			return codes.BadRequest, err.Error()
		}
		pts, perr = protocols.DecodeTagged(body, prec, in.tags)
	case path == "" || strings.Contains(path, "/"):
		return codes.NotFound, "POST to /write (line protocol) or /<measurement> (JSON)"
	default:
		if cf != -1 && cf != int(message.AppJSON) && cf != int(message.TextPlain) {
			return codes.UnsupportedMediaType, "want application/json"
		}
		tags := map[string]string{}
		for k, v := range q {
			if k != "" {
				tags[k] = v
			}
		}
		pts, perr = decodeJSON(body, path, tags, time.Now())
	}
	for i := range pts {
		protocols.AddMissingTags(&pts[i], in.tags)
	}
	if len(pts) > 0 {
		if err := acc.Write(ctx, pts); err != nil {
			m.refused.Inc()
			in.logBad("coap: write refused", "points", len(pts), "err", err)
			return codes.ServiceUnavailable, "buffer refused the points: " + err.Error()
		}
		m.points.AddInt64(int64(len(pts)))
	}
	if perr != nil {
		m.badPayloads.Inc()
		in.logBad("coap: bad payload", "path", path, "stored", len(pts), "err", perr)
		if err := protocols.Quarantine(ctx, acc, "coap /"+path, body, perr); err != nil && ctx.Err() == nil {
			in.logBad("coap: quarantine failed", "err", err)
		}
		return codes.BadRequest, fmt.Sprintf("%d points stored; %v", len(pts), perr)
	}
	return codes.Changed, ""
}

// decodeJSON reads a JSON object or array of objects. Numbers and booleans
// become fields, nested keys are joined with "_", "time" is the timestamp.
func decodeJSON(body []byte, measurement string, tags map[string]string, now time.Time) ([]protocols.Point, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	var objs []map[string]any
	switch x := v.(type) {
	case map[string]any:
		objs = []map[string]any{x}
	case []any:
		for i, e := range x {
			o, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("json: element %d is not an object", i)
			}
			objs = append(objs, o)
		}
	default:
		return nil, errors.New("json: want an object or an array of objects")
	}
	var pts []protocols.Point
	for i, o := range objs {
		ts := now.UnixNano()
		if t, ok := o["time"]; ok {
			delete(o, "time")
			var err error
			if ts, err = parseTime(t); err != nil {
				return pts, fmt.Errorf("json: element %d: time: %w", i, err)
			}
		}
		var fields []protocols.Field
		if err := flatten("", o, &fields); err != nil {
			return pts, fmt.Errorf("json: element %d: %w", i, err)
		}
		slices.SortFunc(fields, func(a, b protocols.Field) int { return strings.Compare(a.Key, b.Key) })
		p, err := protocols.NewPoint(measurement, tags, fields, ts)
		if err != nil {
			return pts, fmt.Errorf("json: element %d: %w", i, err)
		}
		pts = append(pts, p)
	}
	return pts, nil
}

func flatten(prefix string, v any, out *[]protocols.Field) error {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			key := k
			if prefix != "" {
				key = prefix + "_" + k
			}
			if err := flatten(key, c, out); err != nil {
				return err
			}
		}
	case []any:
		for i, c := range x {
			if err := flatten(prefix+"_"+strconv.Itoa(i), c, out); err != nil {
				return err
			}
		}
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			return fmt.Errorf("%s: %s is not a finite number", prefix, x)
		}
		*out = append(*out, protocols.Field{Key: prefix, Value: protocols.Float(f)})
	case bool:
		*out = append(*out, protocols.Field{Key: prefix, Value: protocols.Bool(x)})
	}
	return nil // strings and nulls are not readings
}

func parseTime(v any) (int64, error) {
	switch x := v.(type) {
	case json.Number:
		whole, frac, _ := strings.Cut(string(x), ".")
		s, err := strconv.ParseInt(whole, 10, 64)
		if err != nil || s > math.MaxInt64/int64(time.Second) || s < 0 {
			return 0, fmt.Errorf("%s is not a Unix time in seconds", x)
		}
		ns := s * 1e9
		if frac != "" {
			frac = (frac + "000000000")[:9]
			f, err := strconv.ParseInt(frac, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s is not a Unix time in seconds", x)
			}
			ns += f
		}
		return ns, nil
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			return 0, err
		}
		return t.UnixNano(), nil
	}
	return 0, errors.New("want Unix seconds or an RFC 3339 string")
}

func (in *Input) logBad(msg string, args ...any) { in.logLim.Warn(in.log, msg, args...) }

// Interface guards.
var (
	_ protocols.Input        = (*Input)(nil)
	_ protocols.SampleConfig = (*Input)(nil)
)
