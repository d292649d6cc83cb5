package config

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

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
	DefaultBatchPoints = 5000
	DefaultTimeout     = 10 * time.Second
)

// Config is the agent's configuration file.
type Config struct {
	Agent   Agent       `yaml:"agent"`
	Log     Log         `yaml:"log"`
	Inputs  []yaml.Node `yaml:"inputs"` // decoded per type by BuildInputs
	Buffer  Buffer      `yaml:"buffer"`
	Outputs []Output    `yaml:"outputs"`

	doc *confx.Doc // where each key was, for positioned problems
}

// Agent identifies the agent and says where it keeps its data.
type Agent struct {
	// ID names the agent to the collector: it is the last token of the
	// NATS subject cs.raw.<id> and the prefix of every batch id.
	ID      string `yaml:"id"`
	DataDir string `yaml:"data_dir"`
	HTTP    string `yaml:"http"` // host:port of /healthz /readyz /status /metrics; empty: off
}

// Log sets up the logger.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // auto, text, json
}

// Buffer tunes the durable buffer.
type Buffer struct {
	MaxBytes confx.Size `yaml:"max_bytes"` // compressed bytes pending before inputs are refused; 0: no limit
	// FlushInterval is how long concurrent writes wait to share one fsync
	// (group commit). A lone writer pays it on every write.
	FlushInterval confx.Duration `yaml:"flush_interval"`
}

// Output is where batches go. Only "nats" exists for now.
type Output struct {
	Type        string         `yaml:"type"`
	URL         string         `yaml:"url"`          // nats://host:4222, comma-separated for several servers
	Creds       string         `yaml:"creds"`        // NATS credentials file, optional
	BatchPoints int            `yaml:"batch_points"` // points per published batch at most
	Timeout     confx.Duration `yaml:"timeout"`      // wait for the collector's ack of one batch
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
		o := &c.Outputs[i]
		if o.BatchPoints == 0 {
			o.BatchPoints = DefaultBatchPoints
		}
		if o.Timeout == 0 {
			o.Timeout = confx.Duration(DefaultTimeout)
		}
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
		out = append(out, Input{Type: typ, Path: path, Input: in})
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

	if c.Buffer.MaxBytes != 0 && c.Buffer.MaxBytes < 1<<20 {
		add("buffer.max_bytes", "must be 0 (no limit) or at least 1MiB, got %d bytes", int64(c.Buffer.MaxBytes))
	}
	if d := c.Buffer.FlushInterval.D(); d < 0 || d > time.Second {
		add("buffer.flush_interval", "must be between 0 and 1s, got %v", d)
	}

	switch len(c.Outputs) {
	case 0:
		add("outputs", "one output is required, e.g. {type: nats, url: nats://collector:4222}")
	case 1:
	default:
		add("outputs[1]", "only one output is supported for now")
	}
	for i, o := range c.Outputs {
		p := fmt.Sprintf("outputs[%d]", i)
		if o.Type != "nats" {
			add(p+".type", "unknown output type %q (known: nats)", o.Type)
		}
		if err := checkNATSURLs(o.URL); err != nil {
			add(p+".url", "%v", err)
		}
		if o.Creds != "" {
			if _, err := os.Stat(o.Creds); err != nil {
				add(p+".creds", "cannot read credentials: %v", err)
			}
		}
		if o.BatchPoints < 1 || o.BatchPoints > 100000 {
			add(p+".batch_points", "must be between 1 and 100000, got %d", o.BatchPoints)
		}
		if o.Timeout.D() < 100*time.Millisecond {
			add(p+".timeout", "must be at least 100ms, got %v", o.Timeout)
		}
	}
	if len(probs) == 0 {
		return nil
	}
	return sorted(probs)
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
