package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/citysense/citysense/internal/confx"
)

// Config is the whole collector configuration. Every key has a default, so
// an empty file (or no file) runs a single node on loopback.
type Config struct {
	Node   Node   `yaml:"node"`
	HTTP   HTTP   `yaml:"http"`
	NATS   NATS   `yaml:"nats"`
	MQTT   MQTT   `yaml:"mqtt"`
	Log    Log    `yaml:"log"`
	Ingest Ingest `yaml:"ingest"`
	Store  Store  `yaml:"store"`
	// Cluster makes this node one of several; nil (the block left out)
	// runs a single node.
	Cluster *Cluster `yaml:"cluster"`
	// Enrich is the ordered list of enrichment stages, each a mapping
	// with a type key; the enrich package decodes every block against its
	// stage, with positions from Doc.
	Enrich []yaml.Node `yaml:"enrich"`

	doc  *confx.Doc // where the values came from, for file:line in later checks
	file string
}

// Doc is the parsed file the configuration came from, or nil for the
// built-in default. It places problems found after loading (in the enrich
// blocks, say) at their file:line.
func (c *Config) Doc() *confx.Doc { return c.doc }

// Dir is the directory that relative paths in the configuration (station
// registry, districts) are resolved against: the config file's, or the
// working directory for the built-in default.
func (c *Config) Dir() string {
	if c.file == "" {
		return "."
	}
	return filepath.Dir(c.file)
}

// Node identifies this collector and where it keeps its data.
type Node struct {
	// Name is the node's stable identity; the embedded NATS server uses it
	// as its server name, from which JetStream derives its raft identity,
	// so it must not change between restarts.
	Name string `yaml:"name"`
	// DataDir holds store/ (the time-series store) and jetstream/.
	DataDir string `yaml:"data_dir"`
}

// HTTP is the public API and portal listener.
type HTTP struct {
	Listen string `yaml:"listen"`
	// MaxBody bounds one request body of the Influx write endpoints, both
	// as sent and after gzip decompression, so that a small compressed
	// body cannot expand into all of memory.
	MaxBody confx.Size `yaml:"max_body"`
	// PublicURL is the collector's root as the public reaches it (behind
	// a reverse proxy), e.g. https://data.example.city; links in answers
	// (SensorThings) start with it. Empty: links follow the request and
	// its X-Forwarded-Proto, -Host and -Prefix headers.
	PublicURL string `yaml:"public_url"`
	// Portal configures the data portal's pages and the data licence
	// (docs/portal.md).
	Portal Portal `yaml:"portal"`
}

// Portal configures the public data portal.
type Portal struct {
	// TileURL is a map tile template such as
	// https://tiles.example.org/{z}/{x}/{y}.png; empty draws the map
	// without a base layer.
	TileURL         string `yaml:"tile_url"`
	TileAttribution string `yaml:"tile_attribution"`
	// Licence and LicenceURL name the data's licence; empty: CC BY 4.0.
	Licence    string `yaml:"licence"`
	LicenceURL string `yaml:"licence_url"`
	// Attribution is how users should credit the data.
	Attribution string `yaml:"attribution"`
}

// NATS is the embedded NATS server that agents publish to.
type NATS struct {
	Listen string `yaml:"listen"`
	// SyncAlways makes JetStream fsync every message before acknowledging
	// it. Off (the default), JetStream syncs every 2 minutes: an
	// acknowledged batch survives a crash of the process but not a power
	// cut. On, it survives both, at roughly 1/40 of the throughput.
	SyncAlways bool `yaml:"sync_always"`
	// TLS, when Cert is set, makes the listener require TLS.
	TLS TLS `yaml:"tls"`
}

// TLS configures the NATS listener's certificate and, optionally, the
// verification of client certificates (mutual TLS, on top of the agents'
// NKey credentials).
type TLS struct {
	Cert string `yaml:"cert"` // PEM certificate chain
	Key  string `yaml:"key"`  // PEM private key
	// CA is the PEM bundle client certificates must chain to; it is used
	// only with VerifyClients.
	CA            string `yaml:"ca"`
	VerifyClients bool   `yaml:"verify_clients"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.Cert != "" }

// MQTT is nats-server's built-in MQTT listener, off by default. It is
// best effort: its PUBACK only means the message reached the server's
// own MQTT stream, not CS_RAW (see docs/collector.md).
type MQTT struct {
	// Listen is host:port; empty turns the listener off.
	Listen string `yaml:"listen"`
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
	// MaxPast and MaxFuture bound the timestamps accepted, relative to the
	// time of arrival: a point from a device whose clock is wrong is
	// refused (a 400 from the write API; the quarantine for agent batches)
	// instead of being stored decades away from its neighbours.
	MaxPast   confx.Duration `yaml:"max_past"`
	MaxFuture confx.Duration `yaml:"max_future"`
	// MaxTags and MaxFields bound one point, from any writer; a series
	// explosion starts with a point carrying a thousand tags.
	MaxTags   int `yaml:"max_tags"`
	MaxFields int `yaml:"max_fields"`
	// Partitions is how many partitions of CS_SERIES the enriched points
	// are spread over (cs.series.0 … cs.series.<n-1>): the unit a cluster
	// node owns and replays. Changing it moves series between partitions,
	// so choose it once, larger than the largest cluster you expect. A
	// single node (no cluster section) publishes each batch as one
	// message whatever this says: it owns every partition.
	Partitions int `yaml:"partitions"`
}

// Store tunes the time-series store.
type Store struct {
	// Retention is how long each resolution is kept. Data leaves a whole
	// partition file at a time (raw: a day, 1m: a week, 1h: four weeks),
	// so it stays up to that much longer.
	Retention Retention `yaml:"retention"`
	// Cache bounds the decompressed blocks that queries share.
	Cache confx.Size `yaml:"cache"`
}

// Cluster joins this node to others (docs/cluster.md). Every node runs the
// same configuration apart from node.name and its addresses.
type Cluster struct {
	// Name is the NATS cluster's name; nodes with another name are not
	// let in. Empty: citysense.
	Name string `yaml:"name"`
	// Gossip is memberlist's listener (TCP and UDP), host:port.
	Gossip string `yaml:"gossip"`
	// Routes is the NATS route listener, host:port, over which the
	// embedded servers replicate the streams.
	Routes string `yaml:"routes"`
	// Advertise is the host (an IP address or a name that resolves to
	// one) under which the other nodes reach this node's gossip, route and
	// HTTP ports. Empty: the host of gossip, which must then not be a
	// wildcard such as 0.0.0.0.
	Advertise string `yaml:"advertise"`
	// Seeds are gossip addresses (host:port, or a DNS name resolving to
	// several nodes) of nodes already running. One is enough; the members
	// seen are remembered in the data directory, so a restart needs none.
	Seeds []string `yaml:"seeds"`
	// Replication is how many nodes store each partition of the series
	// (and answer queries for it); at least 2 to survive losing a node.
	Replication int `yaml:"replication"`
	// Key is the shared secret, base64 of 16, 24 or 32 random bytes
	// (`citysense-collector cluster keygen`). It encrypts gossip and
	// authenticates routes and the nodes' internal queries. KeyFile names
	// a file holding it instead; set one of the two.
	Key     string `yaml:"key"`
	KeyFile string `yaml:"key_file"`
	// SeriesRetention is how long CS_SERIES keeps enriched points, the
	// window a new partition owner replays; older history comes from a
	// surviving owner's store.
	SeriesRetention confx.Duration `yaml:"series_retention"`
	// TLS encrypts the NATS routes: every node presents Cert (valid for
	// both server and client authentication) and verifies its peers'
	// against CA. Off when Cert is empty.
	TLS RouteTLS `yaml:"tls"`
}

// RouteTLS is the routes' mutual TLS.
type RouteTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
}

// ClusterKey decodes the cluster key from Key or KeyFile.
func (c *Cluster) ClusterKey() ([]byte, error) {
	text := c.Key
	if c.KeyFile != "" {
		b, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.key_file: %w", err)
		}
		text = string(b)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("cluster key: not base64: %w", err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("cluster key: %d bytes, want 16, 24 or 32", len(key))
}

// AdvertiseHost is the host other nodes use to reach this one.
func (c *Cluster) AdvertiseHost() string {
	if c.Advertise != "" {
		return c.Advertise
	}
	host, _, _ := net.SplitHostPort(c.Gossip)
	return host
}

// Retention per resolution; "forever" keeps a resolution for good.
type Retention struct {
	Raw    Keep `yaml:"raw"`
	Minute Keep `yaml:"1m"`
	Hour   Keep `yaml:"1h"`
}

// Keep is a retention period: a duration such as 90d, or "forever" (zero).
type Keep time.Duration

// UnmarshalYAML accepts "forever" or a duration with an optional d unit.
func (k *Keep) UnmarshalYAML(n *yaml.Node) error {
	if n.Value == "forever" {
		*k = 0
		return nil
	}
	v, err := confx.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w, or forever", n.Line, err)
	}
	if v <= 0 {
		return fmt.Errorf("line %d: retention %q: want more than 0, or forever", n.Line, n.Value)
	}
	*k = Keep(v)
	return nil
}

// D is the period, zero for forever.
func (k Keep) D() time.Duration { return time.Duration(k) }

// String is "forever" or the period in days (hours when not whole days).
func (k Keep) String() string {
	switch d := time.Duration(k); {
	case d == 0:
		return "forever"
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	default:
		return d.String()
	}
}

// MaxPast is the oldest timestamp accepted, before the time of arrival:
// ingest.max_past when set, else as long as raw points are kept (20 years
// when they are kept forever), so that nothing is acknowledged only to
// be expired at once.
func (c *Config) MaxPast() time.Duration {
	if d := c.Ingest.MaxPast.D(); d > 0 {
		return d
	}
	if d := c.Store.Retention.Raw.D(); d > 0 {
		return d
	}
	return DefaultMaxPast
}

// Defaults that are not obvious from Default's body.
const (
	DefaultMaxBody = confx.Size(32 << 20)
	// DefaultMaxPast is 20 years: old enough for any archive a city
	// imports, young enough to catch a clock reset to 1970.
	DefaultMaxPast = 7305 * 24 * time.Hour
)

// Default returns the compiled-in configuration: one node named c1, data in
// ./data, HTTP on 127.0.0.1:8080 and NATS on 127.0.0.1:4222.
func Default() Config {
	return Config{
		Node: Node{Name: "c1", DataDir: "./data"},
		HTTP: HTTP{Listen: "127.0.0.1:8080", MaxBody: DefaultMaxBody},
		NATS: NATS{Listen: "127.0.0.1:4222"},
		Log:  Log{Level: "info", Format: "auto"},
		Ingest: Ingest{
			Batch:      100,
			AckWait:    confx.Duration(30 * time.Second),
			RetryDelay: confx.Duration(5 * time.Second),
			MaxFuture:  confx.Duration(time.Hour),
			MaxTags:    64,
			MaxFields:  256,
			Partitions: 16,
		},
		// Nothing is deleted unless retention is configured: at well under
		// a byte per point, a year of raw data from a thousand stations
		// fits in a few GB.
		Store: Store{Cache: 64 << 20},
	}
}

// Load reads a YAML file over the defaults and validates the result. Its
// error is a confx.Problems listing every problem found, each with
// file:line, or a plain error when the file cannot be read.
func Load(path string) (Config, error) {
	cfg := Default()
	doc, err := confx.LoadFile(path, &cfg)
	cfg.doc, cfg.file = doc, path
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
	if c.HTTP.MaxBody < 64<<10 || c.HTTP.MaxBody > 1<<30 {
		add("http.max_body", "%d bytes: want 64KiB to 1GiB", int64(c.HTTP.MaxBody))
	}
	if p := c.HTTP.PublicURL; p != "" {
		if u, err := url.Parse(p); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			add("http.public_url", "%q: want an absolute http or https URL without query, e.g. https://data.example.city", p)
		}
	}
	if p := c.HTTP.Portal.TileURL; p != "" {
		u, err := url.Parse(strings.NewReplacer("{", "", "}", "").Replace(p))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.Contains(p, "{z}") || !strings.Contains(p, "{x}") || !strings.Contains(p, "{y}") {
			add("http.portal.tile_url", "%q: want an http or https template with {z}, {x} and {y}, e.g. https://tiles.example.org/{z}/{x}/{y}.png", p)
		}
	}
	if (c.HTTP.Portal.Licence == "") != (c.HTTP.Portal.LicenceURL == "") {
		add("http.portal.licence", "set licence and licence_url together")
	}
	t := c.NATS.TLS
	switch {
	case t.Cert != "" && t.Key == "":
		add("nats.tls.key", "must be set with nats.tls.cert")
	case t.Cert == "" && t.Key != "":
		add("nats.tls.cert", "must be set with nats.tls.key")
	}
	if t.VerifyClients && t.CA == "" {
		add("nats.tls.ca", "must be set with nats.tls.verify_clients")
	}
	if (t.CA != "" || t.VerifyClients) && t.Cert == "" {
		add("nats.tls.cert", "must be set for nats.tls.ca and verify_clients")
	}
	for _, f := range []struct{ key, path string }{{"nats.tls.cert", t.Cert}, {"nats.tls.key", t.Key}, {"nats.tls.ca", t.CA}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			add(f.key, "cannot read %q: %v", f.path, errors.Unwrap(err))
		}
	}
	if c.MQTT.Listen != "" {
		if err := checkListen(c.MQTT.Listen); err != nil {
			add("mqtt.listen", "%v", err)
		} else if !strings.HasSuffix(c.MQTT.Listen, ":0") && (c.MQTT.Listen == c.HTTP.Listen || c.MQTT.Listen == c.NATS.Listen) {
			add("mqtt.listen", "%q is also http.listen or nats.listen", c.MQTT.Listen)
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
	if c.Ingest.MaxPast.D() < 0 {
		add("ingest.max_past", "%v: want more than 0", c.Ingest.MaxPast)
	} else if raw := c.Store.Retention.Raw.D(); raw > 0 && c.Ingest.MaxPast.D() > raw {
		// Such points would be acknowledged and then expired at once.
		add("ingest.max_past", "%s is longer than store.retention.raw (%s): points that old would be accepted and dropped; leave max_past out to follow the retention",
			Keep(c.Ingest.MaxPast), c.Store.Retention.Raw)
	}
	r := c.Store.Retention
	longer := func(a, b Keep) bool { return b != 0 && (a == 0 || a > b) }
	for _, k := range []struct {
		key string
		v   Keep
	}{{"store.retention.raw", r.Raw}, {"store.retention.1m", r.Minute}, {"store.retention.1h", r.Hour}} {
		if k.v != 0 && k.v.D() < 24*time.Hour {
			add(k.key, "%s: want at least 1d (a partition), or forever", k.v)
		}
	}
	if longer(r.Raw, r.Minute) {
		add("store.retention.raw", "%s is longer than store.retention.1m (%s): 1-minute rollups are made as raw points expire", r.Raw, r.Minute)
	}
	if longer(r.Minute, r.Hour) {
		add("store.retention.1m", "%s is longer than store.retention.1h (%s)", r.Minute, r.Hour)
	}
	if c.Store.Cache > 64<<30 {
		add("store.cache", "%d bytes: want at most 64GiB", int64(c.Store.Cache))
	}
	if c.Ingest.MaxFuture.D() < 0 {
		add("ingest.max_future", "%v: want 0 or more", c.Ingest.MaxFuture)
	}
	if c.Ingest.MaxTags < 0 || c.Ingest.MaxTags > 10000 {
		add("ingest.max_tags", "%d: want 0 to 10000", c.Ingest.MaxTags)
	}
	if c.Ingest.MaxFields < 1 || c.Ingest.MaxFields > 10000 {
		add("ingest.max_fields", "%d: want 1 to 10000", c.Ingest.MaxFields)
	}
	if c.Ingest.Partitions < 1 || c.Ingest.Partitions > 1024 {
		add("ingest.partitions", "%d: want 1 to 1024", c.Ingest.Partitions)
	}
	if c.Cluster != nil {
		probs = append(probs, c.Cluster.validate(doc, c)...)
	}
	return probs
}

// DefaultSeriesRetention is how long CS_SERIES keeps points in a cluster.
const DefaultSeriesRetention = 24 * time.Hour

func (cl *Cluster) validate(doc *confx.Doc, c *Config) confx.Problems {
	var probs confx.Problems
	add := func(path, format string, args ...any) {
		probs = append(probs, doc.At(path, format, args...))
	}
	if cl.Name != "" && strings.ContainsAny(cl.Name, " \t\r\n.*>") {
		add("cluster.name", "%q must not contain spaces, '.', '*' or '>'", cl.Name)
	}
	if err := checkListen(cl.Gossip); err != nil {
		add("cluster.gossip", "%v", err)
	}
	if err := checkListen(cl.Routes); err != nil {
		add("cluster.routes", "%v", err)
	}
	for _, l := range []struct{ key, addr string }{{"cluster.gossip", cl.Gossip}, {"cluster.routes", cl.Routes}} {
		if l.addr == c.HTTP.Listen || l.addr == c.NATS.Listen || (l.addr == c.MQTT.Listen && l.addr != "") {
			add(l.key, "%q is also used by another listener", l.addr)
		}
	}
	if cl.Gossip != "" && cl.Gossip == cl.Routes {
		add("cluster.routes", "%q is also cluster.gossip", cl.Routes)
	}
	if h := cl.AdvertiseHost(); h == "" || h == "0.0.0.0" || h == "::" {
		add("cluster.advertise", "must be set when cluster.gossip listens on every interface (%q): the host other nodes reach this one at", cl.Gossip)
	}
	for _, l := range []struct{ key, addr string }{{"cluster.gossip", cl.Gossip}, {"cluster.routes", cl.Routes}, {"http.listen", c.HTTP.Listen}} {
		if strings.HasSuffix(l.addr, ":0") {
			add(l.key, "%q: a cluster node needs a fixed port, which the other nodes dial", l.addr)
		}
	}
	for i, s := range cl.Seeds {
		if _, _, err := net.SplitHostPort(s); err != nil {
			add(fmt.Sprintf("cluster.seeds[%d]", i), "%q: want host:port", s)
		}
	}
	if cl.Replication == 0 {
		cl.Replication = 2
	}
	if cl.Replication < 1 || cl.Replication > 5 {
		add("cluster.replication", "%d: want 1 to 5 (2 survives losing a node)", cl.Replication)
	}
	if cl.SeriesRetention == 0 {
		cl.SeriesRetention = confx.Duration(DefaultSeriesRetention)
	}
	if cl.SeriesRetention.D() < time.Hour {
		add("cluster.series_retention", "%v: want at least 1h", cl.SeriesRetention)
	}
	if t := cl.TLS; t.Cert != "" || t.Key != "" || t.CA != "" {
		for _, f := range []struct{ key, path string }{{"cluster.tls.cert", t.Cert}, {"cluster.tls.key", t.Key}, {"cluster.tls.ca", t.CA}} {
			if f.path == "" {
				add(f.key, "must be set: route TLS needs cert, key and ca (peers are verified both ways)")
			} else if _, err := os.Stat(f.path); err != nil {
				add(f.key, "cannot read %q: %v", f.path, errors.Unwrap(err))
			}
		}
	}
	switch {
	case cl.Key == "" && cl.KeyFile == "":
		add("cluster.key", "a cluster needs a shared key (or key_file): generate one with `citysense-collector cluster keygen`")
	case cl.Key != "" && cl.KeyFile != "":
		add("cluster.key", "set key or key_file, not both")
	default:
		if _, err := cl.ClusterKey(); err != nil {
			add("cluster.key", "%v", err)
		}
	}
	return probs
}

// Loopback reports whether addr (host:port) listens on loopback only:
// 127.0.0.0/8, ::1 or "localhost". An empty host is every interface.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
