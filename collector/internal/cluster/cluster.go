package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/memberlist"
)

// MetaLimit is the most bytes a node's JSON-encoded Meta may take:
// memberlist's limit for node metadata.
const MetaLimit = memberlist.MetaMaxSize

// ErrMetaTooLarge is returned by Start and UpdateMeta for metadata whose
// JSON encoding exceeds MetaLimit.
var ErrMetaTooLarge = errors.New("cluster metadata too large")

// ErrShutdown is returned by Leave and UpdateMeta after Shutdown.
var ErrShutdown = errors.New("cluster is shut down")

// Member states.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// Config configures a node. Name, Bind and SecretKey are required.
type Config struct {
	Name      string   // node name, unique and stable (memberlist would default to the hostname)
	Bind      string   // gossip host:port, TCP and UDP; port 0 picks a free one
	Advertise string   // ip:port others reach us at; "" = the bound address
	Seeds     []string // host:port of other nodes; a DNS name joins every address it resolves to
	SecretKey []byte   // 16, 24 or 32 bytes: the gossip encryption key
	StateFile string   // JSON file keeping the addresses of live members; "" = don't persist
	Meta      Meta     // this node's metadata
	Profile   string   // "lan" (default) or "local" (memberlist's DefaultLocalConfig timings)
}

// Meta is a node's metadata, gossiped to every member. Its JSON encoding
// must stay within MetaLimit bytes.
type Meta struct {
	API     string `json:"api"`             // http(s)://host:port of the node's HTTP API
	Route   string `json:"route"`           // NATS route URL
	NATS    string `json:"nats"`            // NATS client URL
	Version string `json:"version"`         // software version
	Ready   string `json:"ready,omitempty"` // hex bitmap of the partitions the node serves
}

// Member is one node as this node sees it.
type Member struct {
	Name  string
	Addr  string // gossip host:port
	Meta  Meta
	State string // StateAlive, StateSuspect, StateDead or StateLeft
	Self  bool
}

// encodeMeta returns m as JSON, or ErrMetaTooLarge.
func encodeMeta(m Meta) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode cluster metadata: %w", err)
	}
	if len(b) > MetaLimit {
		return nil, fmt.Errorf("%w: %d bytes as JSON, limit %d", ErrMetaTooLarge, len(b), MetaLimit)
	}
	return b, nil
}

// validate checks cfg without I/O and reports every problem at once.
func (cfg *Config) validate() error {
	var errs []error
	if cfg.Name == "" {
		errs = append(errs, errors.New("cluster: no node name"))
	}
	switch len(cfg.SecretKey) {
	case 16, 24, 32:
	case 0:
		errs = append(errs, errors.New("cluster: no secret key"))
	default:
		errs = append(errs, fmt.Errorf("cluster: secret key is %d bytes, want 16, 24 or 32", len(cfg.SecretKey)))
	}
	switch cfg.Profile {
	case "", "lan", "local":
	default:
		errs = append(errs, fmt.Errorf("cluster: unknown profile %q, want lan or local", cfg.Profile))
	}
	if _, _, err := splitHostPort(cfg.Bind); err != nil {
		errs = append(errs, fmt.Errorf("cluster: bind address %q: %w", cfg.Bind, err))
	}
	if cfg.Advertise != "" {
		host, _, err := splitHostPort(cfg.Advertise)
		if err == nil && net.ParseIP(host) == nil {
			err = errors.New("host must be an IP address")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster: advertise address %q: %w", cfg.Advertise, err))
		}
	}
	for _, s := range cfg.Seeds {
		if _, _, err := splitHostPort(s); err != nil {
			errs = append(errs, fmt.Errorf("cluster: seed %q: %w", s, err))
		}
	}
	if _, err := encodeMeta(cfg.Meta); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// Retry timing for joining when alone.
const (
	joinBackoffMin = 500 * time.Millisecond
	joinBackoffMax = 30 * time.Second
	joinLogEvery   = 10 * time.Second
)

// leavingMsg prefixes the user message a node sends every member before it
// leaves. memberlist's event hooks do not say whether a node left or failed,
// so the notice lets the others tell the two apart.
const leavingMsg = "citysense-leaving\x00"

// Cluster is a running member. Its methods are safe for concurrent use.
type Cluster struct {
	name     string
	log      *slog.Logger
	ml       *memberlist.Memberlist
	local    string // bound gossip address
	self     string // advertised gossip address
	reap     time.Duration
	tcpLimit time.Duration
	state    string // state file, or ""
	seeds    []string
	set      *metrics.Set

	joins, leaves, failures, metaUpdates *metrics.Counter

	changes chan struct{} // to users, buffer 1
	kick    chan struct{} // to run: members changed, buffer 1
	stop    chan struct{} // closed by Shutdown
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	updateMu sync.Mutex // serialises UpdateMeta

	mu       sync.Mutex
	meta     []byte            // our Meta, JSON
	members  map[string]*entry // everyone the event hooks told us about
	leaving  map[string]time.Time
	known    []string // persisted addresses of other members
	shutdown bool

	shutdownOnce sync.Once
	shutdownErr  error
}

type entry struct {
	addr  string
	meta  Meta
	state string
	since time.Time
}

// Start creates the local member, joins the seeds and the addresses kept in
// the state file, and returns after that first attempt: when nobody
// answers, the node runs alone and keeps trying in the background, with
// capped exponential backoff, as long as it knows no other member. ctx
// bounds the first attempt's DNS lookups. A nil log discards.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Cluster, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "cluster")
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	meta, _ := encodeMeta(cfg.Meta)

	mc := memberlist.DefaultLANConfig()
	if cfg.Profile == "local" {
		mc = memberlist.DefaultLocalConfig()
	}
	host, port, _ := splitHostPort(cfg.Bind)
	if host == "" {
		host = "0.0.0.0"
	}
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	if cfg.Advertise != "" {
		mc.AdvertiseAddr, mc.AdvertisePort, _ = splitHostPort(cfg.Advertise)
	}
	mc.SecretKey = cfg.SecretKey

	innerCtx, cancel := context.WithCancel(context.Background())
	c := &Cluster{
		name:     cfg.Name,
		log:      log,
		reap:     mc.GossipToTheDeadTime,
		tcpLimit: mc.TCPTimeout,
		state:    cfg.StateFile,
		seeds:    slices.Clone(cfg.Seeds),
		set:      metrics.NewSet(),
		changes:  make(chan struct{}, 1),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		ctx:      innerCtx,
		cancel:   cancel,
		meta:     meta,
		members:  map[string]*entry{},
		leaving:  map[string]time.Time{},
	}
	c.initMetrics()
	h := &hooks{c: c}
	mc.Delegate, mc.Events, mc.Ping = h, h, h
	// Logger only: memberlist refuses a config with LogOutput as well.
	mc.Logger = newMemberlistLogger(log, c.suspect)

	if cfg.StateFile != "" {
		known, err := readState(cfg.StateFile)
		if err != nil {
			// A hint, not a source of truth: start without it.
			log.Warn("ignoring the cluster state file", "err", err)
		}
		c.known = known
	}

	ml, err := memberlist.Create(mc)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("start cluster member %q on %s: %w", cfg.Name, cfg.Bind, err)
	}
	c.ml = ml
	// memberlist wrote the port it bound into mc.
	c.local = net.JoinHostPort(host, strconv.Itoa(mc.BindPort))
	c.self = ml.LocalNode().Address()
	log.Info("cluster member started", "name", cfg.Name, "bind", c.local, "advertise", c.self, "profile", cmpOr(cfg.Profile, "lan"))

	joined := true
	if addrs := c.candidates(ctx); len(addrs) > 0 {
		joined = c.join(addrs)
	}
	if !joined {
		log.Info("no member answered; running alone and retrying in the background", "seeds", cfg.Seeds, "known", len(c.known))
	}
	c.wg.Add(1)
	go c.run()
	return c, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// candidates lists the addresses to join: the seeds, each DNS name resolved
// to all its addresses, and the persisted addresses, without our own.
func (c *Cluster) candidates(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out []string
	for _, s := range c.seeds {
		addrs, err := resolve(ctx, s)
		if err != nil {
			c.log.Debug("cannot resolve seed", "seed", s, "err", err)
		}
		out = append(out, addrs...)
	}
	c.mu.Lock()
	out = append(out, c.known...)
	c.mu.Unlock()
	slices.Sort(out)
	out = slices.Compact(out)
	return slices.DeleteFunc(out, func(a string) bool { return a == c.self || a == c.local })
}

// resolve turns host:port into ip:port for every address of host.
func resolve(ctx context.Context, hostport string) ([]string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	if net.ParseIP(host) != nil {
		return []string{hostport}, nil
	}
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolve seed %q: %w", hostport, err)
	}
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = net.JoinHostPort(ip, port)
	}
	return out, nil
}

// join tries every address once and reports whether one answered.
func (c *Cluster) join(addrs []string) bool {
	n, err := c.ml.Join(addrs)
	if n > 0 {
		c.log.Info("joined the cluster", "contacted", n, "members", c.ml.NumMembers())
		return true
	}
	c.log.Debug("join failed", "addrs", addrs, "err", err)
	return false
}

// hasCandidates reports whether there is anyone to try joining: a single
// node without seeds stays alone quietly.
func (c *Cluster) hasCandidates() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seeds) > 0 || len(c.known) > 0
}

// alone reports whether memberlist knows no other live member.
func (c *Cluster) alone() bool { return c.ml.NumMembers() <= 1 }

// run persists the members after each change, forgets dead members when
// memberlist does, and rejoins while the node is alone. It ends on Shutdown.
func (c *Cluster) run() {
	defer c.wg.Done()
	prune := time.NewTicker(c.reap / 3)
	defer prune.Stop()
	var (
		retry    *time.Timer
		retryC   <-chan time.Time
		attempt  int
		failed   int // rounds since the last log line
		lastLog  time.Time
		firstBad = time.Now()
	)
	arm := func() {
		d := min(joinBackoffMax, joinBackoffMin<<min(attempt, 16))
		d = d/2 + rand.N(d/2+1) // jitter: spread nodes booting together
		retry = time.NewTimer(d)
		retryC = retry.C
	}
	for {
		// Retry only while alone: memberlist never rejoins a node it
		// declared dead, so a partition that left us alone heals here.
		if c.alone() {
			if retryC == nil && c.hasCandidates() {
				arm()
			}
		} else {
			if retryC != nil {
				retry.Stop()
				retryC = nil
			}
			attempt, failed, firstBad = 0, 0, time.Now()
		}
		select {
		case <-c.stop:
			if retry != nil {
				retry.Stop()
			}
			return
		case <-c.kick:
			c.persist()
		case <-prune.C:
			c.prune()
		case <-retryC:
			retryC = nil
			attempt++
			addrs := c.candidates(c.ctx)
			if len(addrs) == 0 || !c.join(addrs) {
				failed++
				if time.Since(lastLog) >= joinLogEvery {
					c.log.Warn("alone: no cluster member answered", "rounds", failed, "since", time.Since(firstBad).Round(time.Second), "tried", addrs)
					failed, lastLog = 0, time.Now()
				}
			}
		}
	}
}

// persist writes the addresses of the other live members to the state
// file. When there are none, the file keeps the previous ones: they are the
// best guess for finding the cluster again.
func (c *Cluster) persist() {
	var addrs []stateMember
	for _, m := range c.Live() {
		if !m.Self {
			addrs = append(addrs, stateMember{Name: m.Name, Addr: m.Addr})
		}
	}
	if len(addrs) == 0 {
		return
	}
	known := make([]string, len(addrs))
	for i, a := range addrs {
		known[i] = a.Addr
	}
	c.mu.Lock()
	same := slices.Equal(known, c.known)
	c.known = known
	c.mu.Unlock()
	if same || c.state == "" {
		return
	}
	if err := writeState(c.state, addrs); err != nil {
		c.log.Warn("cannot persist cluster members", "err", err)
	}
}

// prune forgets dead and left members once memberlist has too.
func (c *Cluster) prune() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, e := range c.members {
		if (e.state == StateDead || e.state == StateLeft) && time.Since(e.since) > c.reap {
			delete(c.members, name)
		}
	}
	for name, t := range c.leaving {
		if time.Since(t) > c.reap {
			delete(c.leaving, name)
		}
	}
}

// changed tells run and the user that the members changed. It never
// blocks: it runs inside memberlist's callbacks.
func (c *Cluster) changed() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
	select {
	case c.changes <- struct{}{}:
	default:
	}
}

// Members returns every member this node knows of, with its state, sorted
// by name. Dead and left members stay as long as memberlist keeps them
// (GossipToTheDeadTime: 30 s on a LAN, 15 s locally).
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	out := make([]Member, 0, len(c.members))
	for name, e := range c.members {
		if (e.state == StateDead || e.state == StateLeft) && time.Since(e.since) > c.reap {
			continue
		}
		out = append(out, Member{Name: name, Addr: e.addr, Meta: e.meta, State: e.state, Self: name == c.name})
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Live returns the alive and suspect members, this node included, sorted
// by name.
func (c *Cluster) Live() []Member {
	return slices.DeleteFunc(c.Members(), func(m Member) bool {
		return m.State != StateAlive && m.State != StateSuspect
	})
}

// Changes returns a channel that receives a value after members join,
// leave, fail, change state or update their metadata. Signals coalesce:
// read Members or Live after each. The channel is never closed.
func (c *Cluster) Changes() <-chan struct{} { return c.changes }

// UpdateMeta replaces this node's metadata and gossips it. It waits until
// the update went out to the others, at most a few seconds; on a timeout
// the new metadata is still in place and spreads with the next push-pull.
func (c *Cluster) UpdateMeta(m Meta) error {
	b, err := encodeMeta(m)
	if err != nil {
		return err
	}
	c.updateMu.Lock()
	defer c.updateMu.Unlock()
	c.mu.Lock()
	if c.shutdown {
		c.mu.Unlock()
		return ErrShutdown
	}
	c.meta = b
	c.mu.Unlock()
	if err := c.ml.UpdateNode(5 * time.Second); err != nil {
		return fmt.Errorf("gossip cluster metadata: %w", err)
	}
	return nil
}

// Leave tells the others that this node leaves, so that they report it
// "left" rather than "dead", waits up to timeout for that to spread, and
// shuts down.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.mu.Lock()
	if c.shutdown {
		c.mu.Unlock()
		return ErrShutdown
	}
	c.mu.Unlock()
	deadline := time.Now().Add(timeout)

	// The notice goes by TCP to every live member, in parallel; the sends
	// are bounded by memberlist's TCP timeout, and Leave waits for them
	// only until half its own timeout.
	var sent sync.WaitGroup
	msg := []byte(leavingMsg + c.name)
	for _, m := range c.Live() {
		if m.Self {
			continue
		}
		node, ok := nodeOf(m)
		if !ok {
			continue
		}
		sent.Add(1)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer sent.Done()
			if err := c.ml.SendReliable(node, msg); err != nil {
				c.log.Debug("cannot send the leaving notice", "to", node.Name, "err", err)
			}
		}()
	}
	done := make(chan struct{})
	go func() { sent.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout / 2):
	}

	err := c.ml.Leave(max(time.Until(deadline), time.Millisecond))
	if err != nil {
		err = fmt.Errorf("leave the cluster: %w", err)
	}
	return errors.Join(err, c.Shutdown())
}

func nodeOf(m Member) (*memberlist.Node, bool) {
	host, port, err := splitHostPort(m.Addr)
	ip := net.ParseIP(host)
	if err != nil || ip == nil {
		return nil, false
	}
	return &memberlist.Node{Name: m.Name, Addr: ip, Port: uint16(port)}, true
}

// Shutdown stops gossiping without telling the others, as a crash would:
// they will find the node dead. It waits for the background work to end.
func (c *Cluster) Shutdown() error {
	c.shutdownOnce.Do(func() {
		c.mu.Lock()
		c.shutdown = true
		c.mu.Unlock()
		c.cancel()
		if err := c.ml.Shutdown(); err != nil {
			c.shutdownErr = fmt.Errorf("shut down cluster member: %w", err)
		}
		close(c.stop)
		c.wg.Wait()
		c.log.Info("cluster member stopped")
	})
	return c.shutdownErr
}

// LocalAddr returns the bound gossip address, with the port actually bound.
func (c *Cluster) LocalAddr() string { return c.local }

// Metrics returns the cluster's metrics.
func (c *Cluster) Metrics() *metrics.Set { return c.set }

func (c *Cluster) initMetrics() {
	for _, state := range []string{StateAlive, StateSuspect, StateDead, StateLeft} {
		c.set.NewGauge(`citysense_cluster_members{state="`+state+`"}`, func() float64 {
			n := 0
			for _, m := range c.Members() {
				if m.State == state {
					n++
				}
			}
			return float64(n)
		})
	}
	c.joins = c.set.NewCounter("citysense_cluster_joins_total")
	c.leaves = c.set.NewCounter("citysense_cluster_leaves_total")
	c.failures = c.set.NewCounter("citysense_cluster_failures_total")
	c.metaUpdates = c.set.NewCounter("citysense_cluster_meta_updates_total")
}

// suspect records that this node's probe of name failed. memberlist keeps
// the suspect state to itself (its Node.State field is never set), so the
// log line its prober writes is the only sign; a later ack, an update or
// the verdict clears it.
func (c *Cluster) suspect(name string) {
	c.mu.Lock()
	e, ok := c.members[name]
	if !ok || e.state != StateAlive {
		c.mu.Unlock()
		return
	}
	e.state, e.since = StateSuspect, time.Now()
	c.mu.Unlock()
	c.changed()
}

// hooks receives memberlist's callbacks. memberlist calls the event hooks
// with its node lock held: they must not call back into memberlist, and
// they copy what they keep, since memberlist reuses the Node.
type hooks struct{ c *Cluster }

func (h *hooks) NodeMeta(limit int) []byte {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	if len(h.c.meta) > limit {
		// encodeMeta keeps meta within MetaLimit; memberlist panics on more.
		h.c.log.Error("cluster metadata over memberlist's limit, sending none", "bytes", len(h.c.meta), "limit", limit)
		return nil
	}
	return slices.Clone(h.c.meta)
}

func (h *hooks) NotifyMsg(b []byte) {
	name, ok := strings.CutPrefix(string(b), leavingMsg)
	if !ok {
		return
	}
	h.c.mu.Lock()
	h.c.leaving[name] = time.Now()
	h.c.mu.Unlock()
}

func (h *hooks) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (h *hooks) LocalState(join bool) []byte                { return nil }
func (h *hooks) MergeRemoteState(buf []byte, join bool)     {}

func (h *hooks) record(n *memberlist.Node, state string) *entry {
	var meta Meta
	if len(n.Meta) > 0 {
		if err := json.Unmarshal(n.Meta, &meta); err != nil {
			h.c.log.Warn("undecodable metadata from a member", "node", n.Name, "err", err)
		}
	}
	e := h.c.members[n.Name]
	if e == nil {
		e = &entry{}
		h.c.members[n.Name] = e
	}
	e.addr, e.meta = n.Address(), meta
	if e.state != state {
		e.state, e.since = state, time.Now()
	}
	return e
}

func (h *hooks) NotifyJoin(n *memberlist.Node) {
	h.c.mu.Lock()
	h.record(n, StateAlive)
	delete(h.c.leaving, n.Name)
	h.c.mu.Unlock()
	if n.Name != h.c.name {
		h.c.joins.Inc()
		h.c.log.Info("member joined", "node", n.Name, "addr", n.Address())
	}
	h.c.changed()
}

func (h *hooks) NotifyUpdate(n *memberlist.Node) {
	h.c.mu.Lock()
	h.record(n, StateAlive)
	h.c.mu.Unlock()
	h.c.metaUpdates.Inc()
	h.c.log.Debug("member updated its metadata", "node", n.Name)
	h.c.changed()
}

func (h *hooks) NotifyLeave(n *memberlist.Node) {
	h.c.mu.Lock()
	state := StateDead
	if t, ok := h.c.leaving[n.Name]; ok && time.Since(t) < h.c.reap {
		state = StateLeft
	}
	delete(h.c.leaving, n.Name)
	e := h.c.members[n.Name]
	if e == nil {
		e = &entry{addr: n.Address()}
		h.c.members[n.Name] = e
	}
	e.state, e.since = state, time.Now()
	h.c.mu.Unlock()
	if state == StateLeft {
		h.c.leaves.Inc()
		h.c.log.Info("member left", "node", n.Name)
	} else {
		h.c.failures.Inc()
		h.c.log.Warn("member failed", "node", n.Name)
	}
	h.c.changed()
}

// NotifyPingComplete clears a suspicion once a probe succeeds again.
func (h *hooks) NotifyPingComplete(n *memberlist.Node, rtt time.Duration, payload []byte) {
	h.c.mu.Lock()
	e := h.c.members[n.Name]
	cleared := e != nil && e.state == StateSuspect
	if cleared {
		e.state, e.since = StateAlive, time.Now()
	}
	h.c.mu.Unlock()
	if cleared {
		h.c.changed()
	}
}

func (h *hooks) AckPayload() []byte { return nil }

// memberlistLogger routes memberlist's log lines, which carry a level
// prefix ("[DEBUG] memberlist: …"), to slog at that level.
type memberlistLogger struct {
	log       *slog.Logger
	onSuspect func(name string)
}

func newMemberlistLogger(l *slog.Logger, onSuspect func(string)) *log.Logger {
	return log.New(&memberlistLogger{log: l, onSuspect: onSuspect}, "", 0)
}

var levelPrefixes = []struct {
	prefix string
	level  slog.Level
}{
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

func (w *memberlistLogger) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level := slog.LevelInfo
	for _, lp := range levelPrefixes {
		if rest, ok := strings.CutPrefix(line, lp.prefix); ok {
			line, level = strings.TrimSpace(rest), lp.level
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	if rest, ok := strings.CutPrefix(line, "Suspect "); ok {
		if name, ok := strings.CutSuffix(rest, " has failed, no acks received"); ok {
			w.onSuspect(name)
		}
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}

// Interface guards
var (
	_ memberlist.Delegate      = (*hooks)(nil)
	_ memberlist.EventDelegate = (*hooks)(nil)
	_ memberlist.PingDelegate  = (*hooks)(nil)
	_ io.Writer                = (*memberlistLogger)(nil)
)
