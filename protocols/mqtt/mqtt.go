package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"os"
	"slices"
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
	protocols.Register("mqtt", func() protocols.Input { return New() })
}

// Input is the "mqtt" input. Its exported fields are its YAML configuration.
type Input struct {
	// Broker is the broker's URL: tcp://, mqtt://, ssl://, tls://, mqtts://,
	// ws:// or wss://.
	Broker string `yaml:"broker"`
	// ClientID must be stable for the broker to keep the session (and the
	// unacknowledged messages) while the agent is away. Empty: derived from
	// the host name, broker and filters.
	ClientID       string         `yaml:"client_id"`
	CleanSession   bool           `yaml:"clean_session"`
	Username       string         `yaml:"username"`
	Password       string         `yaml:"password"`
	QoS            int            `yaml:"qos"`
	KeepAlive      confx.Duration `yaml:"keep_alive"`
	ConnectTimeout confx.Duration `yaml:"connect_timeout"`
	ReconnectMin   confx.Duration `yaml:"reconnect_min"`
	ReconnectMax   confx.Duration `yaml:"reconnect_max"`
	MaxBatch       int            `yaml:"max_batch"` // messages per buffer commit
	// Connections > 1 subscribes over that many connections to shared
	// subscriptions ($share/<share_group>/<filter>, MQTT 5 and mosquitto
	// ≥ 1.6 with MQTT 3.1.1): the broker spreads the messages over them,
	// and each connection has its own window of unacknowledged QoS 1/2
	// messages (20 in stock mosquitto), which is what bounds one
	// subscription's throughput. Client ids get the suffix -1 … -N.
	Connections int `yaml:"connections"`
	// ShareGroup names the shared subscription; several agents with one
	// group share the load. Empty: the client id, when connections > 1.
	ShareGroup  string            `yaml:"share_group"`
	Measurement string            `yaml:"measurement"`
	Tags        map[string]string `yaml:"tags"`
	TLS         TLS               `yaml:"tls"`
	Topics      []Topic           `yaml:"topics"`

	log        *slog.Logger
	newClient  ClientFactory
	set        *metrics.Set
	subs       []*subscription
	clientID   string
	shareGroup string        // "" : plain subscriptions
	writeRetry time.Duration // first wait after a refused write
}

// TLS configures a TLS connection to the broker.
type TLS struct {
	CA                 string `yaml:"ca"`   // PEM file of the CAs to trust; empty: the system roots
	Cert               string `yaml:"cert"` // PEM client certificate
	Key                string `yaml:"key"`  // PEM key of the client certificate
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

func (t TLS) enabled() bool {
	return t.CA != "" || t.Cert != "" || t.Key != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// Topic is one subscription and how its messages become points.
type Topic struct {
	Filter        string            `yaml:"filter"`
	Template      string            `yaml:"template"`
	QoS           *int              `yaml:"qos"` // nil: the input's qos
	Format        string            `yaml:"format"`
	Measurement   string            `yaml:"measurement"`
	Tags          map[string]string `yaml:"tags"`
	Field         string            `yaml:"field"`     // value format: the field name
	DataType      string            `yaml:"data_type"` // value format: float, int, uint, bool, string
	ValueTemplate string            `yaml:"value_template"`
	Precision     string            `yaml:"precision"` // line format: ns, us, ms, s
	JSON          JSONOptions       `yaml:"json"`
}

// JSONOptions select what a JSON payload contributes.
type JSONOptions struct {
	// Fields lists the fields by path (a.b for nested objects, v.0 for an
	// array element); empty: every number and boolean.
	Fields []string `yaml:"fields"`
	// Tags lists paths whose values become tags.
	Tags []string `yaml:"tags"`
	// TimePath is the path of the timestamp; empty: the receive time.
	TimePath string `yaml:"time_path"`
	// TimeFormat is unix (seconds), unix_ms, unix_us, unix_ns, rfc3339 or a
	// Go time layout.
	TimeFormat string `yaml:"time_format"`
}

// subscription is a Topic compiled by Init.
type subscription struct {
	filter      string
	qos         byte
	tmpl        *Template
	measurement string
	field       string
	tags        []protocols.Tag // static tags, sorted
	newParser   func() parser
}

// Defaults.
const (
	DefaultQoS            = 1
	DefaultKeepAlive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultReconnectMin   = time.Second
	DefaultReconnectMax   = time.Minute
	DefaultMaxBatch       = 1000
	MaxConnections        = 64
	DefaultMeasurement    = "mqtt"
)

// New returns an Input with the documented defaults.
func New() *Input {
	return &Input{
		QoS:            DefaultQoS,
		KeepAlive:      confx.Duration(DefaultKeepAlive),
		ConnectTimeout: confx.Duration(DefaultConnectTimeout),
		ReconnectMin:   confx.Duration(DefaultReconnectMin),
		ReconnectMax:   confx.Duration(DefaultReconnectMax),
		MaxBatch:       DefaultMaxBatch,
		Connections:    1,
		Measurement:    DefaultMeasurement,
		newClient:      NewPahoClient,
		writeRetry:     500 * time.Millisecond,
	}
}

// SampleConfig returns the documented example configuration.
func (*Input) SampleConfig() string { return sampleConfig }

// SetMetrics makes the input register its metrics in set (the agent's, so
// that they appear on its /metrics). Without it they go to a private set.
func (in *Input) SetMetrics(set *metrics.Set) { in.set = set }

// Init validates the configuration without I/O and reports every problem,
// each a confx.Problem whose Path is the key inside the input's block.
func (in *Input) Init(log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in.log = log
	if in.newClient == nil {
		in.newClient = NewPahoClient
	}
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, confx.Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if in.Broker == "" {
		bad("broker", "required, e.g. tcp://127.0.0.1:1883")
	} else if u, err := url.Parse(in.Broker); err != nil || u.Host == "" {
		bad("broker", "want a URL such as tcp://host:1883, got %q", in.Broker)
	} else if !slices.Contains([]string{"tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"}, u.Scheme) {
		bad("broker", "unknown scheme %q (want tcp, mqtt, ssl, tls, mqtts, ws or wss)", u.Scheme)
	}
	if in.QoS < 0 || in.QoS > 2 {
		bad("qos", "must be 0, 1 or 2, got %d", in.QoS)
	}
	if in.MaxBatch < 1 {
		bad("max_batch", "must be at least 1, got %d", in.MaxBatch)
	}
	if in.Connections < 1 || in.Connections > MaxConnections {
		bad("connections", "must be between 1 and %d, got %d", MaxConnections, in.Connections)
	}
	if in.ShareGroup != "" && strings.ContainsAny(in.ShareGroup, "/+#") {
		bad("share_group", "must not contain /, + or #, got %q", in.ShareGroup)
	}
	if in.KeepAlive.D() < time.Second {
		bad("keep_alive", "must be at least 1s, got %v", in.KeepAlive)
	}
	if in.ConnectTimeout.D() <= 0 {
		bad("connect_timeout", "must be positive, got %v", in.ConnectTimeout)
	}
	if in.ReconnectMin.D() <= 0 || in.ReconnectMax.D() < in.ReconnectMin.D() {
		bad("reconnect_max", "want 0 < reconnect_min (%v) <= reconnect_max (%v)", in.ReconnectMin, in.ReconnectMax)
	}
	if (in.TLS.Cert == "") != (in.TLS.Key == "") {
		bad("tls", "cert and key go together")
	}
	if in.Password != "" && in.Username == "" {
		bad("password", "a password needs a username")
	}
	if in.Measurement == "" {
		bad("measurement", "must not be empty")
	}
	for k := range in.Tags {
		if k == "" {
			bad("tags", "empty tag key")
		}
	}
	if len(in.Topics) == 0 {
		bad("topics", "at least one topic is required")
	}
	in.subs = in.subs[:0]
	seen := map[string]int{}
	for i, t := range in.Topics {
		path := fmt.Sprintf("topics[%d]", i)
		sub, probs := in.compile(t, path)
		errs = append(errs, probs...)
		if j, dup := seen[t.Filter]; dup && t.Filter != "" {
			bad(path+".filter", "filter %q is already subscribed by topics[%d]", t.Filter, j)
		}
		seen[t.Filter] = i
		if sub != nil {
			in.subs = append(in.subs, sub)
		}
	}
	in.clientID = in.ClientID
	if in.clientID == "" {
		in.clientID = in.defaultClientID()
	}
	if len(in.connClientID(in.Connections-1)) > 64 {
		bad("client_id", "longer than 64 bytes (with the connection suffix); many brokers refuse it")
	}
	in.shareGroup = in.ShareGroup
	if in.shareGroup == "" && in.Connections > 1 {
		in.shareGroup = strings.NewReplacer("/", "_", "+", "_", "#", "_").Replace(in.clientID)
	}
	if in.shareGroup != "" {
		for i, t := range in.Topics {
			if t.Format == FormatSparkplugB {
				bad(fmt.Sprintf("topics[%d].format", i), "sparkplug_b needs BIRTH and DATA messages in order on one connection; use connections: 1 and no share_group")
			}
		}
	}
	if len(errs) > 0 {
		in.subs = nil
	}
	return errors.Join(errs...)
}

// connClientID is the client id of connection i (0-based): the configured
// id alone for a single connection, else with the suffix -1 … -N, stable
// across restarts so that each connection gets its session back.
func (in *Input) connClientID(i int) string {
	if in.Connections <= 1 {
		return in.clientID
	}
	return fmt.Sprintf("%s-%d", in.clientID, i+1)
}

// defaultClientID is stable across restarts of the same configuration and
// differs between inputs on one host, as two clients with one id would
// take the session from each other in turns.
func (in *Input) defaultClientID() string {
	host, _ := os.Hostname()
	if len(host) > 32 {
		host = host[:32]
	}
	h := fnv.New32a()
	h.Write([]byte(in.Broker))
	for _, t := range in.Topics {
		h.Write([]byte{0})
		h.Write([]byte(t.Filter))
	}
	return fmt.Sprintf("citysense-%s-%08x", host, h.Sum32())
}

func (in *Input) compile(t Topic, path string) (*subscription, []error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, confx.Problem{Path: path + "." + key, Msg: fmt.Sprintf(format, args...)})
	}
	sub := &subscription{filter: t.Filter, qos: byte(in.QoS), measurement: in.Measurement, field: "value"}
	if err := validFilter(t.Filter); err != nil {
		bad("filter", "%v", err)
	}
	if t.QoS != nil {
		if *t.QoS < 0 || *t.QoS > 2 {
			bad("qos", "must be 0, 1 or 2, got %d", *t.QoS)
		}
		sub.qos = byte(*t.QoS)
	}
	if t.Template != "" {
		tm, err := ParseTemplate(t.Template)
		if err != nil {
			bad("template", "%v", err)
		}
		sub.tmpl = tm
	}
	if t.Measurement != "" {
		sub.measurement = t.Measurement
	}
	if t.Field != "" {
		sub.field = t.Field
	}
	tags := map[string]string{}
	for k, v := range in.Tags {
		tags[k] = v
	}
	for k, v := range t.Tags {
		if k == "" {
			bad("tags", "empty tag key")
		}
		tags[k] = v
	}
	for k, v := range tags {
		sub.tags = append(sub.tags, protocols.Tag{Key: k, Value: v})
	}
	slices.SortFunc(sub.tags, func(a, b protocols.Tag) int { return strings.Compare(a.Key, b.Key) })

	format := t.Format
	if format == "" {
		format = FormatJSON
	}
	notFor := func(key string, set bool) {
		if set {
			bad(key, "only used with format %s", map[string]string{"field": "value", "data_type": "value", "value_template": "template", "precision": "line", "json": "json"}[key])
		}
	}
	jsonSet := len(t.JSON.Fields) > 0 || len(t.JSON.Tags) > 0 || t.JSON.TimePath != "" || t.JSON.TimeFormat != ""
	switch format {
	case FormatJSON:
		notFor("field", t.Field != "")
		notFor("data_type", t.DataType != "")
		notFor("value_template", t.ValueTemplate != "")
		notFor("precision", t.Precision != "")
		if t.JSON.TimeFormat != "" && t.JSON.TimePath == "" {
			bad("json.time_format", "set without json.time_path")
		}
		if tf := t.JSON.TimeFormat; tf != "" {
			if _, unix := unixScale[tf]; !unix && tf != TimeRFC3339 && !looksLikeLayout(tf) {
				bad("json.time_format", "want unix, unix_ms, unix_us, unix_ns, rfc3339 or a Go layout such as 2006-01-02 15:04:05, got %q", tf)
			}
		}
		for _, f := range t.JSON.Fields {
			if f == "" {
				bad("json.fields", "empty path")
			}
		}
		for _, f := range t.JSON.Tags {
			if f == "" {
				bad("json.tags", "empty path")
			}
			if slices.Contains(t.JSON.Fields, f) {
				bad("json.tags", "%q is listed as a field too", f)
			}
		}
		o := t.JSON
		sub.newParser = func() parser { return newJSONParser(o) }
	case FormatLine, "influx":
		notFor("field", t.Field != "")
		notFor("data_type", t.DataType != "")
		notFor("value_template", t.ValueTemplate != "")
		notFor("json", jsonSet)
		prec, err := protocols.ParsePrecision(t.Precision)
		if err != nil {
			bad("precision", "%v", err)
		}
		sub.newParser = func() parser { return &lineParser{precision: prec} }
	case FormatValue:
		notFor("value_template", t.ValueTemplate != "")
		notFor("precision", t.Precision != "")
		notFor("json", jsonSet)
		dt := t.DataType
		if dt == "" {
			dt = TypeFloat
		}
		if !slices.Contains([]string{TypeFloat, TypeInt, TypeUint, TypeBool, TypeString}, dt) {
			bad("data_type", "want float, int, uint, bool or string, got %q", dt)
		}
		sub.newParser = func() parser { return &valueParser{dataType: dt} }
	case FormatTemplate:
		notFor("field", t.Field != "")
		notFor("data_type", t.DataType != "")
		notFor("precision", t.Precision != "")
		notFor("json", jsonSet)
		vt, err := ParseValueTemplate(t.ValueTemplate)
		if err != nil {
			bad("value_template", "%v", err)
		}
		sub.newParser = func() parser { return &templateParser{vt: vt} }
	case FormatSparkplugB:
		notFor("field", t.Field != "")
		notFor("data_type", t.DataType != "")
		notFor("value_template", t.ValueTemplate != "")
		notFor("precision", t.Precision != "")
		notFor("json", jsonSet)
		if t.Measurement == "" && in.Measurement == DefaultMeasurement {
			sub.measurement = "sparkplug"
		}
		// One parser per subscription: aliases are learned from BIRTHs.
		sp := newSparkplugParser()
		sub.newParser = func() parser { return sp }
	default:
		bad("format", "want json, line, value, template or sparkplug_b, got %q", format)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return sub, nil
}

// looksLikeLayout reports whether s contains a reference-time element.
func looksLikeLayout(s string) bool {
	for _, e := range []string{"2006", "01", "02", "15", "04", "05", "Jan"} {
		if strings.Contains(s, e) {
			return true
		}
	}
	return false
}

// tlsConfig reads the certificate files; it is called by Run, not Init,
// since it does I/O.
func (in *Input) tlsConfig() (*tls.Config, error) {
	if !in.TLS.enabled() {
		return nil, nil
	}
	c := &tls.Config{ServerName: in.TLS.ServerName, InsecureSkipVerify: in.TLS.InsecureSkipVerify, MinVersion: tls.VersionTLS12} // #nosec G402 -- opt-in, documented
	if in.TLS.CA != "" {
		pem, err := os.ReadFile(in.TLS.CA)
		if err != nil {
			return nil, fmt.Errorf("read tls ca %q: %w", in.TLS.CA, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca %q: no PEM certificate found", in.TLS.CA)
		}
	}
	if in.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(in.TLS.Cert, in.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("load tls cert %q: %w", in.TLS.Cert, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// received is a message with the time it arrived.
type received struct {
	msg Message
	at  int64
}

// inputMetrics are the input's counters.
type inputMetrics struct {
	messages    *metrics.Counter
	points      *metrics.Counter
	parseErrors *metrics.Counter
	unmatched   *metrics.Counter
	refused     *metrics.Counter
	batches     *metrics.Counter
}

func newInputMetrics(set *metrics.Set, clientID string) *inputMetrics {
	c := protocols.InputCounters(set, "mqtt", "client_id", clientID)
	return &inputMetrics{
		messages: c("messages"), points: c("points"), parseErrors: c("parse_errors"),
		unmatched: c("unmatched_messages"), refused: c("writes_refused"), batches: c("commits"),
	}
}

// Run connects, subscribes and turns messages into points until ctx is done.
// It returns an error only when the TLS files cannot be read or the client
// cannot be created.
func (in *Input) Run(ctx context.Context, acc protocols.Accumulator) error {
	if in.log == nil {
		if err := in.Init(nil); err != nil {
			return err
		}
	}
	tlsCfg, err := in.tlsConfig()
	if err != nil {
		return err
	}
	set := in.set
	if set == nil {
		set = metrics.NewSet()
	}
	subs := make(map[string]byte, len(in.subs))
	for _, s := range in.subs {
		f := s.filter
		if in.shareGroup != "" {
			f = "$share/" + in.shareGroup + "/" + f
		}
		subs[f] = s.qos
	}
	// One client, queue and worker per connection. The workers commit
	// concurrently, so the buffer's group commit takes the batches of all
	// connections into one fsync.
	var wg sync.WaitGroup
	var clients []Client
	var loops []func() // started once every client exists
	for i := range in.Connections {
		clientID := in.connClientID(i)
		w := &worker{in: in, acc: acc, m: newInputMetrics(set, clientID), parsers: make([]parser, len(in.subs))}
		for j, s := range in.subs {
			w.parsers[j] = s.newParser()
		}
		queue := make(chan received, in.MaxBatch)
		cl, err := in.newClient(ClientConfig{
			Broker:         in.Broker,
			ClientID:       clientID,
			Username:       in.Username,
			Password:       in.Password,
			CleanSession:   in.CleanSession,
			TLS:            tlsCfg,
			KeepAlive:      in.KeepAlive.D(),
			ConnectTimeout: in.ConnectTimeout.D(),
			ReconnectMin:   in.ReconnectMin.D(),
			ReconnectMax:   in.ReconnectMax.D(),
			Subscriptions:  subs,
			Handle: func(m Message) {
				select {
				case queue <- received{m, time.Now().UnixNano()}:
				case <-ctx.Done():
					// Not acknowledged: the broker delivers it again.
				}
			},
			Log: in.log,
		})
		if err != nil {
			for _, c := range clients {
				c.Disconnect()
			}
			return fmt.Errorf("mqtt client: %w", err)
		}
		clients = append(clients, cl)
		loops = append(loops, func() { w.loop(ctx, queue) })
	}
	for _, loop := range loops {
		wg.Go(loop)
	}
	// Connect in parallel: Connect returns once connected and subscribed.
	var connecting sync.WaitGroup
	for i, cl := range clients {
		connecting.Go(func() {
			if err := cl.Connect(ctx); err != nil && ctx.Err() == nil {
				// paho retries connecting by itself; an error here is final.
				in.log.Error("mqtt connect failed", "broker", in.Broker, "client_id", in.connClientID(i), "err", err)
			}
		})
	}
	connecting.Wait()
	<-ctx.Done()
	wg.Wait()
	var disconnecting sync.WaitGroup
	for _, cl := range clients {
		disconnecting.Go(cl.Disconnect)
	}
	disconnecting.Wait()
	return nil
}

// worker turns queued messages into points, commits them in batches and
// acknowledges each batch's messages after the commit.
type worker struct {
	in      *Input
	acc     protocols.Accumulator
	m       *inputMetrics
	parsers []parser
	a       alloc
	logLim  protocols.LogLimiter
}

func (w *worker) loop(ctx context.Context, queue <-chan received) {
	batch := make([]received, 0, w.in.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case r := <-queue:
			batch = append(batch, r)
		}
		// Group commit: whatever arrived while the previous batch was being
		// committed goes into this one.
	fill:
		for len(batch) < cap(batch) {
			select {
			case r := <-queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		if !w.commit(ctx, batch) {
			return
		}
	}
}

// commit parses the batch, writes its points and acknowledges its messages.
// It reports false when ctx ended before the write succeeded; the messages
// stay unacknowledged and the broker redelivers them.
func (w *worker) commit(ctx context.Context, batch []received) bool {
	var pts []protocols.Point
	var env envelope
	var match topicMatch
	for _, r := range batch {
		w.m.messages.Inc()
		topic := r.msg.Topic()
		idx := w.route(topic)
		if idx < 0 {
			w.m.unmatched.Inc()
			w.logf("mqtt message on a topic no subscription matches", "topic", topic)
			quarantine(ctx, w.acc, "mqtt "+topic, r.msg.Payload(), errNoSubscription, w.in.log)
			continue
		}
		sub := w.in.subs[idx]
		env = envelope{measurement: sub.measurement, field: sub.field, topic: topic, now: r.at, tags: env.tags[:0]}
		env.tags = append(env.tags, sub.tags...)
		if sub.tmpl != nil {
			match = topicMatch{tags: match.tags[:0]}
			if !sub.tmpl.match(topic, &match) {
				w.m.parseErrors.Inc()
				w.logf("mqtt topic does not match the template", "topic", topic)
				quarantine(ctx, w.acc, "mqtt "+topic, r.msg.Payload(), errTemplateMismatch, w.in.log)
				continue
			}
			if match.measurement != "" {
				env.measurement = match.measurement
			}
			if match.field != "" {
				env.field = match.field
			}
			for _, t := range match.tags {
				env.tags = setTag(env.tags, t.key, t.value)
			}
		}
		n := len(pts)
		var err error
		pts, err = w.parsers[idx].parse(pts, r.msg.Payload(), &env, &w.a)
		if err != nil {
			// A payload that cannot be read now never will be: count it,
			// log it and acknowledge it with the rest; the good points of
			// a partly bad line-protocol payload are kept.
			w.m.parseErrors.Inc()
			w.logf("mqtt payload rejected", "topic", topic, "err", err, "payload", trunc(string(r.msg.Payload())))
			quarantine(ctx, w.acc, "mqtt "+topic, r.msg.Payload(), err, w.in.log)
		}
		w.m.points.AddInt64(int64(len(pts) - n))
	}
	if len(pts) > 0 {
		wait := w.in.writeRetry
		for {
			err := w.acc.Write(ctx, pts)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return false
			}
			w.m.refused.Inc()
			w.in.log.Warn("mqtt: write refused, retrying the batch", "messages", len(batch), "points", len(pts), "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return false
			case <-time.After(wait):
			}
			wait = min(2*wait, 30*time.Second)
		}
	}
	w.m.batches.Inc()
	for _, r := range batch {
		r.msg.Ack()
	}
	return true
}

// route returns the index of the first subscription whose filter matches
// the topic, or -1.
func (w *worker) route(topic string) int {
	for i, s := range w.in.subs {
		if matchFilter(s.filter, topic) {
			return i
		}
	}
	return -1
}

// logf logs a bad message at most once a second, with the number of
// messages not logged in between.
func (w *worker) logf(msg string, args ...any) { w.logLim.Warn(w.in.log, msg, args...) }

// Reasons a message is refused before its payload is read.
var (
	errNoSubscription   = errors.New("no subscription matches the topic")
	errTemplateMismatch = errors.New("the topic does not match the subscription's template")
)

// quarantine hands raw to acc if it keeps a quarantine. A failure is logged
// and does not hold the message back: the payload is counted either way.
func quarantine(ctx context.Context, acc protocols.Accumulator, source string, raw []byte, reason error, log *slog.Logger) {
	if err := protocols.Quarantine(ctx, acc, source, raw, reason); err != nil && ctx.Err() == nil {
		log.Warn("quarantine failed", "source", source, "err", err)
	}
}

// setTag sets key in a sorted tag list.
func setTag(tags []protocols.Tag, key, value string) []protocols.Tag {
	i, found := slices.BinarySearchFunc(tags, key, func(t protocols.Tag, k string) int { return strings.Compare(t.Key, k) })
	if found {
		tags[i].Value = value
		return tags
	}
	return slices.Insert(tags, i, protocols.Tag{Key: key, Value: value})
}

// Interface guards.
var (
	_ protocols.Input        = (*Input)(nil)
	_ protocols.SampleConfig = (*Input)(nil)
)
