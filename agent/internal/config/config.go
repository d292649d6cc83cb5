package config

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/citysense/citysense/agent/internal/process"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultFile names the built-in configuration in messages.
const DefaultFile = "(built-in default)"

// Defaults filled into an output block that leaves them out.
const (
	DefaultTimeout        = 10 * time.Second
	DefaultReconnectWait  = 2 * time.Second
	DefaultMaxBackoff     = 30 * time.Second
	DefaultBackfillRate   = 10000.0
	DefaultMaxInflight    = 64 // nats
	DefaultInfluxInflight = 4
)

// Config is the agent's configuration file.
type Config struct {
	Agent  Agent       `yaml:"agent"`
	Log    Log         `yaml:"log"`
	Inputs []yaml.Node `yaml:"inputs"` // decoded per type by BuildInputs
	// Processors is the global processing chain, applied after each
	// input's own; built by the process package.
	Processors []yaml.Node `yaml:"processors"`
	Buffer     Buffer      `yaml:"buffer"`
	Outputs    []Output    `yaml:"outputs"`

	doc *confx.Doc // where each key was, for positioned problems
}

// Agent identifies the agent and says where it keeps its data.
type Agent struct {
	// ID names the agent to the collector: it is the last token of the
	// NATS subject cs.raw.<id> and the prefix of every batch id.
	ID      string `yaml:"id"`
	DataDir string `yaml:"data_dir"`
	HTTP    string `yaml:"http"` // host:port of /healthz /readyz /status /metrics; empty: off
	// StuckAfter is how long an output may go without delivering anything
	// while it has data and is connected before /readyz fails.
	StuckAfter confx.Duration `yaml:"stuck_after"`
	// MemoryLimit is a soft limit on the Go runtime's memory (heap, stacks;
	// not the binary's pages): the garbage collector works harder near it.
	// 0: none. GOMEMLIMIT in the environment overrides it.
	MemoryLimit confx.Size `yaml:"memory_limit"`
}

// Log sets up the logger.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // auto, text, json
}

// Buffer tunes the durable buffer.
type Buffer struct {
	MaxBytes confx.Size     `yaml:"max_bytes"` // bytes of segment files at most; 0: no limit
	MaxAge   confx.Duration `yaml:"max_age"`   // drop batches buffered longer ago; 0: no limit
	Policy   string         `yaml:"policy"`    // drop_oldest, drop_newest or block, when max_bytes is reached
	// SegmentSize is the size at which a segment file is sealed; drained
	// segments are deleted whole, which is how disk space comes back.
	SegmentSize confx.Size `yaml:"segment_size"`
	BatchPoints int        `yaml:"batch_points"` // points per stored batch (one uplink message) at most
	// FlushInterval is the least time between two fsyncs: writes arriving
	// meanwhile share the next one (group commit).
	FlushInterval confx.Duration `yaml:"flush_interval"`
	FlushPoints   int            `yaml:"flush_points"` // commit at once when this many points wait
	Compression   string         `yaml:"compression"`  // zstd or s2
}

// Output is where batches go: "nats" (the collector's JetStream) or
// "influx" (an InfluxDB-compatible HTTP write API).
type Output struct {
	Type string `yaml:"type"`
	// ID names the output's position in the buffer. It defaults to the
	// type; keep it when editing the block, or the output starts over.
	ID string `yaml:"id"`

	// nats
	URL   string `yaml:"url"`   // nats://host:4222, comma-separated; influx: http(s)://host:8086
	Creds string `yaml:"creds"` // NKey seed or .creds file, optional

	// influx
	API             string `yaml:"api"` // v1 or v2
	Database        string `yaml:"database"`
	RetentionPolicy string `yaml:"retention_policy"`
	Org             string `yaml:"org"`
	Bucket          string `yaml:"bucket"`
	Token           string `yaml:"token"`
	Username        string `yaml:"username"`
	Password        string `yaml:"password"`
	Gzip            *bool  `yaml:"gzip"` // default true

	TLS TLS `yaml:"tls"`

	MaxInflight   int            `yaml:"max_inflight"`   // batches sent and not yet confirmed
	BackfillRate  *float64       `yaml:"backfill_rate"`  // points/s of backlog after an outage; 0: unlimited
	Timeout       confx.Duration `yaml:"timeout"`        // wait for the confirmation of one batch
	ReconnectWait confx.Duration `yaml:"reconnect_wait"` // nats: between reconnect attempts, plus jitter
	MaxBackoff    confx.Duration `yaml:"max_backoff"`    // longest pause between retries
}

// TLS configures an output's TLS. All files are PEM.
type TLS struct {
	CA                 string `yaml:"ca"`
	Cert               string `yaml:"cert"`
	Key                string `yaml:"key"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// GzipOn reports whether the influx output compresses its requests.
func (o *Output) GzipOn() bool { return o.Gzip == nil || *o.Gzip }

// Backfill returns the backlog rate in points/s; 0 means unlimited.
func (o *Output) Backfill() float64 {
	if o.BackfillRate == nil {
		return DefaultBackfillRate
	}
	return *o.BackfillRate
}

// Default returns the built-in configuration: a 10-station simulator and a
// collector on this machine. agent.id is DefaultID().
func Default() *Config {
	c, err := parse(DefaultFile, defaultYAML)
	if err != nil {
		panic("config: built-in default does not load: " + err.Error()) // caught by TestDefault
	}
	c.Agent.ID = DefaultID()
	return c
}

func parse(file string, data []byte) (*Config, error) {
	var c Config
	doc, err := confx.Load(file, data, &c)
	if doc == nil {
		return nil, err
	}
	c.doc = doc
	c.fillOutputDefaults()
	return &c, err
}

// Load reads a configuration file on top of the defaults: keys the file
// leaves out keep their default, except inputs, which the file must list
// (a forgotten inputs: section must not start the simulator on a real
// gateway). When the file is YAML but has problems, Load returns the
// configuration decoded so far together with the problems, so that a
// checker can go on to Validate and report everything at once.
func Load(path string) (*Config, error) {
	c := Default()
	c.Inputs = nil
	doc, err := confx.LoadFile(path, c)
	if doc == nil {
		return nil, err
	}
	c.doc = doc
	c.fillOutputDefaults()
	return c, err
}

func (c *Config) fillOutputDefaults() {
	for i := range c.Outputs {
		c.Outputs[i].FillDefaults()
	}
}

// FillDefaults sets the keys an output block left out.
func (o *Output) FillDefaults() {
	if o.ID == "" {
		o.ID = o.Type
	}
	if o.Timeout == 0 {
		o.Timeout = confx.Duration(DefaultTimeout)
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = DefaultMaxInflight
		if o.Type == "influx" {
			o.MaxInflight = DefaultInfluxInflight
		}
	}
	if o.ReconnectWait == 0 {
		o.ReconnectWait = confx.Duration(DefaultReconnectWait)
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = confx.Duration(DefaultMaxBackoff)
	}
	if o.Type == "influx" && o.API == "" {
		o.API = "v2"
	}
}

// File returns the name of the file the configuration came from.
func (c *Config) File() string {
	if c.doc == nil {
		return ""
	}
	return c.doc.File
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether id can be an agent id: it must be one NATS
// subject token and stay readable in batch ids, so 1 to 64 of A-Z a-z 0-9 _ -.
func ValidID(id string) bool { return idRE.MatchString(id) }

// DefaultID derives an agent id from the host name (its first label, with
// characters an id cannot hold replaced by '-'), or returns "agent-1".
func DefaultID() string {
	h, err := os.Hostname()
	if err != nil {
		return "agent-1"
	}
	return idFromHost(h)
}

func idFromHost(h string) string {
	h, _, _ = strings.Cut(h, ".")
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	id := strings.Trim(string(b[:min(len(b), 64)]), "-")
	if id == "" {
		return "agent-1"
	}
	return id
}

// Input is one configured input, decoded and initialised.
type Input struct {
	Type  string
	Path  string // where it is in the file, e.g. "inputs[0]"
	Input protocols.Input
	// Processors is the input's own chain (its processors key), applied
	// before the global one; the nodes are built by the process package.
	Processors []yaml.Node
	// Key identifies the block's content, processors included, so that a
	// reload can tell an unchanged input from a changed one.
	Key string
}

// BuildInputs creates each configured input from the registry, decodes its
// block strictly into it and calls its Init with log (nil: discard). Every
// problem of every input is reported, each at its file:line.
func (c *Config) BuildInputs(log *slog.Logger) ([]Input, error) {
	if log == nil {
		log = cli.Discard()
	}
	doc := c.docOrEmpty()
	var out []Input
	var probs confx.Problems
	for i := range c.Inputs {
		path := fmt.Sprintf("inputs[%d]", i)
		node := &c.Inputs[i]
		if node.Kind == yaml.AliasNode {
			node = node.Alias
		}
		if node.Kind != yaml.MappingNode {
			probs = append(probs, at(doc, path, node.Line, "want a mapping with a type key, e.g. {type: sim}"))
			continue
		}
		typ, body, typeLine := splitType(node)
		body, procs, procErr := splitProcessors(body)
		if procErr != "" {
			probs = append(probs, at(doc, path+".processors", node.Line, "%s", procErr))
			continue
		}
		if typ == "" {
			probs = append(probs, at(doc, path, node.Line, "missing type (known: %s)", strings.Join(protocols.Types(), ", ")))
			continue
		}
		factory, ok := protocols.Lookup(typ)
		if !ok {
			probs = append(probs, at(doc, path+".type", typeLine, "unknown input type %q (known: %s)", typ, strings.Join(protocols.Types(), ", ")))
			continue
		}
		in := factory()
		if err := doc.Decode(body, path, in); err != nil {
			probs = appendErr(probs, doc, path, err)
			continue
		}
		if err := in.Init(log.With("input", typ, "path", path)); err != nil {
			probs = appendErr(probs, doc, path, err)
			continue
		}
		out = append(out, Input{Type: typ, Path: path, Input: in, Processors: procs, Key: NodeKey(node)})
	}
	if len(probs) > 0 {
		return nil, sorted(probs)
	}
	return out, nil
}

// splitType returns the input's type and its block without the type key,
// since the type selects the struct and is not one of its fields.
func splitType(n *yaml.Node) (typ string, body *yaml.Node, line int) {
	cp := *n
	cp.Content = make([]*yaml.Node, 0, len(n.Content))
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "type" {
			typ, line = v.Value, k.Line
			continue
		}
		cp.Content = append(cp.Content, k, v)
	}
	return typ, &cp, line
}

// splitProcessors takes the processors key out of an input's block: it
// belongs to the agent, not to the input's own struct.
func splitProcessors(n *yaml.Node) (body *yaml.Node, procs []yaml.Node, problem string) {
	cp := *n
	cp.Content = make([]*yaml.Node, 0, len(n.Content))
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value != "processors" {
			cp.Content = append(cp.Content, k, v)
			continue
		}
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		switch v.Kind {
		case yaml.SequenceNode:
			for _, item := range v.Content {
				procs = append(procs, *item)
			}
		case yaml.ScalarNode:
			if v.Tag != "!!null" {
				return nil, nil, "want a list of processors"
			}
		default:
			return nil, nil, "want a list of processors"
		}
	}
	return &cp, procs, ""
}

// NodeKey returns a canonical text of a YAML node's content (comments and
// layout left out), to compare configuration blocks across a reload.
func NodeKey(n *yaml.Node) string {
	var v any
	if err := n.Decode(&v); err != nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Doc returns where the configuration's keys are, for building processor
// chains with positioned problems; nil for a configuration built in code.
func (c *Config) Doc() *confx.Doc { return c.doc }

// appendErr adds the problems in err. Problems an input reports without a
// file (paths relative to its block) are placed under the block's path.
func appendErr(probs confx.Problems, doc *confx.Doc, base string, err error) confx.Problems {
	var leaves []error
	var flatten func(error)
	flatten = func(e error) {
		if m, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range m.Unwrap() {
				flatten(x)
			}
			return
		}
		leaves = append(leaves, e)
	}
	flatten(err)
	for _, e := range leaves {
		var p confx.Problem
		switch {
		case errors.As(e, &p) && p.File != "":
			probs = append(probs, p)
		case errors.As(e, &p):
			probs = append(probs, doc.At(base+"."+p.Path, "%s", p.Msg))
		default:
			probs = append(probs, doc.At(base, "%v", e))
		}
	}
	return probs
}

// Validate checks the whole configuration and returns confx.Problems naming
// file:line for each problem, or nil.
func (c *Config) Validate() error {
	doc := c.docOrEmpty()
	var probs confx.Problems
	add := func(path, format string, args ...any) { probs = append(probs, doc.At(path, format, args...)) }

	if !ValidID(c.Agent.ID) {
		add("agent.id", "%q is not a valid agent id: want 1 to 64 of A-Z a-z 0-9 _ - (it is a NATS subject token)", c.Agent.ID)
	}
	if c.Agent.DataDir == "" {
		add("agent.data_dir", "must be set")
	}
	if c.Agent.HTTP != "" {
		if _, port, err := net.SplitHostPort(c.Agent.HTTP); err != nil {
			add("agent.http", "want host:port, e.g. 127.0.0.1:9274, got %q", c.Agent.HTTP)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			add("agent.http", "invalid port %q", port)
		}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.Log.Level)); err != nil {
		add("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	switch strings.ToLower(c.Log.Format) {
	case "", "auto", "text", "json":
	default:
		add("log.format", "want auto, text or json, got %q", c.Log.Format)
	}

	if len(c.Inputs) == 0 {
		add("inputs", "at least one input is required (known types: %s)", strings.Join(protocols.Types(), ", "))
	} else if _, err := c.BuildInputs(nil); err != nil {
		var ps confx.Problems
		if errors.As(err, &ps) {
			probs = append(probs, ps...)
		} else {
			add("inputs", "%v", err)
		}
	}

	if d := c.Agent.StuckAfter.D(); d < 10*time.Second {
		add("agent.stuck_after", "must be at least 10s, got %v", d)
	}
	if m := c.Agent.MemoryLimit; m != 0 && m < 8<<20 {
		add("agent.memory_limit", "must be 0 (no limit) or at least 8MiB, got %d bytes", int64(m))
	}
	probs = append(probs, c.checkProcessors()...)

	b := c.Buffer
	if b.MaxBytes != 0 && b.MaxBytes < 1<<20 {
		add("buffer.max_bytes", "must be 0 (no limit) or at least 1MiB, got %d bytes", int64(b.MaxBytes))
	}
	if d := b.MaxAge.D(); d != 0 && d < time.Minute {
		add("buffer.max_age", "must be 0 (no limit) or at least 1m, got %v", d)
	}
	switch b.Policy {
	case "drop_oldest", "drop_newest", "block":
	default:
		add("buffer.policy", "want drop_oldest, drop_newest or block, got %q", b.Policy)
	}
	if b.SegmentSize != 0 && (b.SegmentSize < 64<<10 || b.SegmentSize > 1<<30) {
		add("buffer.segment_size", "must be between 64KiB and 1GiB, got %d bytes", int64(b.SegmentSize))
	}
	if b.BatchPoints < 1 || b.BatchPoints > 100000 {
		add("buffer.batch_points", "must be between 1 and 100000, got %d", b.BatchPoints)
	}
	if d := b.FlushInterval.D(); d < 0 || d > time.Second {
		add("buffer.flush_interval", "must be between 0 and 1s, got %v", d)
	}
	if b.FlushPoints < 1 || b.FlushPoints > 10_000_000 {
		add("buffer.flush_points", "must be between 1 and 10000000, got %d", b.FlushPoints)
	}
	switch b.Compression {
	case "zstd", "s2":
	default:
		add("buffer.compression", "want zstd or s2, got %q", b.Compression)
	}

	if len(c.Outputs) == 0 {
		add("outputs", "at least one output is required, e.g. {type: nats, url: nats://collector:4222}")
	}
	ids := map[string]string{}
	for i, o := range c.Outputs {
		p := fmt.Sprintf("outputs[%d]", i)
		if !ValidID(o.ID) {
			add(p+".id", "%q is not a valid output id: want 1 to 64 of A-Z a-z 0-9 _ -", o.ID)
		} else if first, dup := ids[o.ID]; dup {
			add(p+".id", "id %q is already used by %s; give each output its own id", o.ID, first)
		}
		ids[o.ID] = p
		probs = append(probs, o.check(doc, p)...)
	}
	if len(probs) == 0 {
		return nil
	}
	return sorted(probs)
}

// check validates one output block at path.
func (o *Output) check(doc *confx.Doc, p string) confx.Problems {
	var probs confx.Problems
	add := func(path, format string, args ...any) { probs = append(probs, doc.At(p+"."+path, format, args...)) }
	// Keys of the other type are a mistake worth naming: a bucket on a
	// nats output would otherwise be silently ignored.
	foreign := func(typ string, keys map[string]bool) {
		for k, set := range keys {
			if set {
				add(k, "is an option of the %s output, not of %s", typ, o.Type)
			}
		}
	}
	switch o.Type {
	case "nats":
		if err := checkNATSURLs(o.URL); err != nil {
			add("url", "%v", err)
		}
		if o.Creds != "" {
			if err := checkCreds(o.Creds); err != nil {
				add("creds", "%v", err)
			}
		}
		foreign("influx", map[string]bool{"api": o.API != "", "database": o.Database != "", "retention_policy": o.RetentionPolicy != "",
			"org": o.Org != "", "bucket": o.Bucket != "", "token": o.Token != "", "username": o.Username != "", "password": o.Password != "", "gzip": o.Gzip != nil})
	case "influx":
		if u, err := url.Parse(o.URL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			add("url", "want http://host:port or https://host:port, got %q", o.URL)
		}
		switch o.API {
		case "v1":
			if o.Database == "" {
				add("database", "api v1 needs a database")
			}
		case "v2":
			if o.Bucket == "" {
				add("bucket", "api v2 needs a bucket")
			}
		default:
			add("api", "want v1 or v2, got %q", o.API)
		}
		if o.Username != "" && o.Token != "" {
			add("token", "give either a token or a username and password, not both")
		}
		foreign("nats", map[string]bool{"creds": o.Creds != "", "reconnect_wait": o.ReconnectWait.D() != DefaultReconnectWait})
	default:
		add("type", "unknown output type %q (known: influx, nats)", o.Type)
	}
	t := o.TLS
	if (t.Cert == "") != (t.Key == "") {
		add("tls", "cert and key go together")
	}
	for k, f := range map[string]string{"tls.ca": t.CA, "tls.cert": t.Cert, "tls.key": t.Key} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				add(k, "cannot read: %v", err)
			}
		}
	}
	if o.MaxInflight < 1 || o.MaxInflight > 1024 {
		add("max_inflight", "must be between 1 and 1024, got %d", o.MaxInflight)
	}
	if r := o.Backfill(); r < 0 || math.IsNaN(r) {
		add("backfill_rate", "must be 0 (unlimited) or a positive number of points/s, got %v", r)
	}
	if o.Timeout.D() < 100*time.Millisecond {
		add("timeout", "must be at least 100ms, got %v", o.Timeout)
	}
	if d := o.ReconnectWait.D(); d < 10*time.Millisecond {
		add("reconnect_wait", "must be at least 10ms, got %v", d)
	}
	if d := o.MaxBackoff.D(); d < 100*time.Millisecond {
		add("max_backoff", "must be at least 100ms, got %v", d)
	}
	return probs
}

// checkCreds reads a credentials file and checks it holds what the nats
// output can use: a user NKey seed or a user JWT with its seed.
func checkCreds(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read credentials: %w", err)
	}
	defer clear(data)
	if bytes.Contains(data, []byte("BEGIN NATS USER JWT")) || bytes.Contains(data, []byte("BEGIN USER NKEY SEED")) ||
		bytes.HasPrefix(bytes.TrimSpace(data), []byte("SU")) {
		return nil
	}
	return errors.New("holds neither a user NKey seed nor a user JWT (want the file `citysense-collector agent add` wrote, or a NATS .creds file)")
}

// checkProcessors builds every processor chain once, to report its
// problems; nothing is kept and no state is read.
func (c *Config) checkProcessors() confx.Problems {
	var probs confx.Problems
	collect := func(err error) {
		var ps confx.Problems
		if errors.As(err, &ps) {
			probs = append(probs, ps...)
		} else if err != nil {
			probs = append(probs, confx.Problem{File: c.File(), Msg: err.Error()})
		}
	}
	env := process.Env{Log: cli.Discard()}
	if len(c.Processors) > 0 {
		_, err := process.Build(c.docOrEmpty(), c.Processors, "processors", env)
		collect(err)
	}
	ins, _ := c.BuildInputs(nil) // their own problems are reported apart
	for _, in := range ins {
		if len(in.Processors) > 0 {
			_, err := process.Build(c.docOrEmpty(), in.Processors, in.Path+".processors", env)
			collect(err)
		}
	}
	return probs
}

// checkNATSURLs accepts what nats.Connect accepts for servers: a
// comma-separated list of nats:// or tls:// URLs with a host.
func checkNATSURLs(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("must be set, e.g. nats://collector.example:4222")
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		u, err := url.Parse(part)
		if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls") {
			return fmt.Errorf("want nats://host:port or tls://host:port, got %q", part)
		}
	}
	return nil
}

// docOrEmpty returns the document the configuration came from; a Config
// built in code has none and its problems carry paths only.
func (c *Config) docOrEmpty() *confx.Doc {
	if c.doc != nil {
		return c.doc
	}
	doc, _ := confx.Load("", nil, &struct{}{})
	return doc
}

// at places a problem on a node's own line when the path has none recorded
// (list items are not keys, so the doc knows only their parent's line).
func at(doc *confx.Doc, path string, line int, format string, args ...any) confx.Problem {
	p := doc.At(path, format, args...)
	if line > 0 {
		p.Line = line
	}
	return p
}

func sorted(ps confx.Problems) confx.Problems {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	return ps
}
