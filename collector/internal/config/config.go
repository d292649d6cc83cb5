package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/citysense/citysense/internal/confx"
)

// Config is the whole collector configuration. Every key has a default, so
// an empty file (or no file) runs a single node on loopback.
type Config struct {
	Node   Node   `yaml:"node"`
	HTTP   HTTP   `yaml:"http"`
	NATS   NATS   `yaml:"nats"`
	Log    Log    `yaml:"log"`
	Ingest Ingest `yaml:"ingest"`
}

// Node identifies this collector and where it keeps its data.
type Node struct {
	// Name is the node's stable identity; the embedded NATS server uses it
	// as its server name, from which JetStream derives its raft identity,
	// so it must not change between restarts.
	Name string `yaml:"name"`
	// DataDir holds store.db (the time-series store) and jetstream/.
	DataDir string `yaml:"data_dir"`
}

// HTTP is the public API and portal listener.
type HTTP struct {
	Listen string `yaml:"listen"`
}

// NATS is the embedded NATS server that agents publish to.
type NATS struct {
	Listen string `yaml:"listen"`
	// SyncAlways makes JetStream fsync every message before acknowledging
	// it. Off (the default), JetStream syncs every 2 minutes: an
	// acknowledged batch survives a crash of the process but not a power
	// cut. On, it survives both, at roughly 1/40 of the throughput.
	SyncAlways bool `yaml:"sync_always"`
}

// Log configures the process logger.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // auto (text on a terminal, JSON otherwise), text, json
}

// Ingest tunes the consumer that moves batches from the bus into the store.
type Ingest struct {
	// Batch is the most messages written to the store in one transaction.
	// Larger batches mean fewer fsyncs; each batch is acknowledged only
	// after its transaction committed.
	Batch int `yaml:"batch"`
	// AckWait is how long JetStream waits for an acknowledgement before it
	// redelivers a message.
	AckWait confx.Duration `yaml:"ack_wait"`
	// RetryDelay is how long a batch waits before redelivery after the
	// store failed to write it.
	RetryDelay confx.Duration `yaml:"retry_delay"`
}

// Default returns the compiled-in configuration: one node named c1, data in
// ./data, HTTP on 127.0.0.1:8080 and NATS on 127.0.0.1:4222.
func Default() Config {
	return Config{
		Node:   Node{Name: "c1", DataDir: "./data"},
		HTTP:   HTTP{Listen: "127.0.0.1:8080"},
		NATS:   NATS{Listen: "127.0.0.1:4222"},
		Log:    Log{Level: "info", Format: "auto"},
		Ingest: Ingest{Batch: 100, AckWait: confx.Duration(30 * time.Second), RetryDelay: confx.Duration(5 * time.Second)},
	}
}

// Load reads a YAML file over the defaults and validates the result. Its
// error is a confx.Problems listing every problem found, each with
// file:line, or a plain error when the file cannot be read.
func Load(path string) (Config, error) {
	cfg := Default()
	doc, err := confx.LoadFile(path, &cfg)
	var probs confx.Problems
	if err != nil {
		if !errors.As(err, &probs) || doc == nil {
			return cfg, err // unreadable, or not YAML at all
		}
	}
	// Keys that decoded are validated even when others did not, so that
	// one run of `check` shows every problem in the file.
	probs = append(probs, cfg.Validate(doc)...)
	if len(probs) > 0 {
		slices.SortStableFunc(probs, func(a, b confx.Problem) int { return a.Line - b.Line })
		return cfg, probs
	}
	return cfg, nil
}

// Validate checks every value and reports all problems at once. doc places
// them at their file:line; with a nil doc (defaults changed by flags) they
// carry only the key path.
func (c *Config) Validate(doc *confx.Doc) confx.Problems {
	var probs confx.Problems
	add := func(path, format string, args ...any) {
		probs = append(probs, doc.At(path, format, args...))
	}

	switch {
	case c.Node.Name == "":
		add("node.name", "must not be empty")
	case strings.ContainsAny(c.Node.Name, " \t\r\n.*>"):
		// The name ends up in NATS subjects and raft identities, where
		// these characters are separators or wildcards.
		add("node.name", "%q must not contain spaces, '.', '*' or '>'", c.Node.Name)
	}
	if c.Node.DataDir == "" {
		add("node.data_dir", "must not be empty")
	}
	if err := checkListen(c.HTTP.Listen); err != nil {
		add("http.listen", "%v", err)
	}
	if err := checkListen(c.NATS.Listen); err != nil {
		add("nats.listen", "%v", err)
	} else if c.NATS.Listen == c.HTTP.Listen && !strings.HasSuffix(c.NATS.Listen, ":0") {
		// Point at whichever of the two the file actually sets.
		if doc.Line("nats.listen") == 0 && doc.Line("http.listen") > 0 {
			add("http.listen", "%q is also nats.listen", c.HTTP.Listen)
		} else {
			add("nats.listen", "%q is also http.listen", c.NATS.Listen)
		}
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	switch strings.ToLower(c.Log.Format) {
	case "", "auto", "text", "json":
	default:
		add("log.format", "%q: want auto, text or json", c.Log.Format)
	}
	if c.Ingest.Batch < 1 || c.Ingest.Batch > 10000 {
		add("ingest.batch", "%d: want 1 to 10000", c.Ingest.Batch)
	}
	if c.Ingest.AckWait.D() < time.Second {
		add("ingest.ack_wait", "%v: want at least 1s", c.Ingest.AckWait)
	}
	if c.Ingest.RetryDelay.D() <= 0 {
		add("ingest.retry_delay", "%v: want more than 0", c.Ingest.RetryDelay)
	}
	return probs
}

// checkListen accepts host:port with a numeric port (0 picks a free one).
// The host may be empty, meaning every interface.
func checkListen(addr string) error {
	if addr == "" {
		return errors.New("must not be empty")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port", addr)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: bad host", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port must be a number from 0 to 65535", addr)
	}
	return nil
}
