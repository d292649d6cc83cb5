package bus

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterConfig turns on cluster mode: the embedded servers of several
// collector nodes form one NATS cluster with clustered JetStream. See the
// package documentation for what each setting survives.
type ClusterConfig struct {
	// Name is the NATS cluster name; "" means "citysense". Every node of
	// one cluster must use the same name.
	Name string
	// Listen is the route listener, host:port; port 0 picks a free port
	// before the server starts (JetStream needs the node's own route URL
	// in its configuration, so the port must be known up front).
	Listen string
	// Advertise is the host:port other nodes dial; "" means Listen with
	// the port actually bound. It is required when Listen's host is
	// unspecified (0.0.0.0 or ::).
	Advertise string
	// Routes are seed route URLs (nats-route://host:port or host:port).
	// The node's own route URL is added automatically: clustered
	// JetStream refuses to start with no configured route.
	Routes []string
	// Secret is the shared cluster secret, 16 to 32 bytes. Routes
	// authenticate with a password derived from it, so a server without
	// it cannot join. Required.
	Secret []byte
	// PeersFile keeps the known route URLs (JSON) so that a restart needs
	// no seed; "" means <StoreDir>/cluster-routes.json.
	PeersFile string
	// TLS, when CertFile is set, makes routes use TLS; peers' certificates
	// are verified (both ways) when CAFile is set. VerifyClients is not
	// used for routes.
	TLS TLSConfig
	// SeriesMaxAge is CS_SERIES' retention in cluster mode; 0 means 24h.
	SeriesMaxAge time.Duration
}

// DefaultClusterName is the NATS cluster name when ClusterConfig.Name is "".
const DefaultClusterName = "citysense"

// MaxReplicas is the most replicas a CitySense stream gets.
const MaxReplicas = 3

const (
	// routeUser is the user name routes authenticate with; the password
	// is derived from the cluster secret.
	routeUser = "citysense-route"
	// routePasswordLabel is what the secret signs to make the route
	// password. Changing it makes every route password change.
	routePasswordLabel = "citysense nats route password v1"
	routeScheme        = "nats-route"
	// streamRetryMax is the longest pause between two attempts to create
	// the streams while JetStream has no meta leader.
	streamRetryMax = time.Second
	// streamAttemptTimeout bounds one JetStream API request in cluster
	// mode: without a meta leader a request goes unanswered.
	streamAttemptTimeout = 3 * time.Second
	// createAttemptTimeout bounds one request of the start-up stream
	// creation. Measured: 1 s made the three-node start slower (13–15 s
	// instead of 3–6 s), as creations that were still being applied timed
	// out and were retried.
	createAttemptTimeout = streamAttemptTimeout
	// reconcileEvery is how often the cluster goroutine retries raising
	// the replicas to what SetReplicas last asked for.
	reconcileEvery = 2 * time.Second
	// waitingLogEvery spaces the "still waiting" log lines.
	waitingLogEvery = 30 * time.Second
)

// routePassword derives the route password from the cluster secret:
// HMAC-SHA256 of a fixed label, in hex. The secret itself never leaves the
// process.
func routePassword(secret []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(routePasswordLabel))
	return hex.EncodeToString(mac.Sum(nil))
}

// clusterState is the cluster half of a Bus; nil in single-node mode.
type clusterState struct {
	name      string
	self      string // own route URL, normalised
	password  string
	peersFile string
	maxAge    time.Duration

	mu     sync.Mutex      // serialises AddRoutes and guards opts and routes
	opts   *server.Options // the options the server runs with now
	routes []string        // known peers' route URLs, normalised, sorted, without self

	raiseMu sync.Mutex // one raise at a time, so that two callers do not race UpdateStream

	streamsReady atomic.Bool
	// wantLive is the largest live count SetReplicas was given; the
	// cluster goroutine keeps raising the replicas towards min(3, it).
	wantLive atomic.Int64
	// replicas is the replicas in effect (the smallest over the streams),
	// 0 until the streams exist.
	replicas atomic.Int64
}

// prepareCluster validates cc and sets the cluster options on opts. It
// runs before the server starts.
func prepareCluster(cfg Config, opts *server.Options) (*clusterState, error) {
	cc := cfg.Cluster
	if cfg.Name == "" {
		return nil, errors.New("cluster: the node needs a name (the server name JetStream's raft identity derives from)")
	}
	if n := len(cc.Secret); n < 16 || n > 32 {
		return nil, fmt.Errorf("cluster: secret must be 16 to 32 bytes, have %d", n)
	}
	host, p, err := net.SplitHostPort(cc.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster listen address %q: %w", cc.Listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("cluster listen address %q: bad port", cc.Listen)
	}
	if port == 0 {
		// JetStream needs the node's own route URL among the configured
		// routes before the server starts, so the port is picked here.
		// Another process may take it before the server binds it; Start
		// then fails with the bind error.
		if port, err = freePort(host); err != nil {
			return nil, fmt.Errorf("cluster listen address %q: %w", cc.Listen, err)
		}
	}
	advertise := cc.Advertise
	if advertise == "" {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return nil, fmt.Errorf("cluster: listen address %q has no host other nodes could dial; set the advertise address", cc.Listen)
		}
		advertise = net.JoinHostPort(host, strconv.Itoa(port))
	}
	self, err := normalizeRoute(advertise)
	if err != nil {
		return nil, fmt.Errorf("cluster advertise address: %w", err)
	}
	cs := &clusterState{
		name:      cc.Name,
		self:      self,
		password:  routePassword(cc.Secret),
		peersFile: cc.PeersFile,
		maxAge:    cc.SeriesMaxAge,
		opts:      opts,
	}
	if cs.name == "" {
		cs.name = DefaultClusterName
	}
	if cs.peersFile == "" {
		cs.peersFile = filepath.Join(cfg.StoreDir, "cluster-routes.json")
	}
	if cs.maxAge <= 0 {
		cs.maxAge = SeriesMaxAge
	}
	persisted, err := readPeersFile(cs.peersFile)
	if err != nil {
		return nil, err
	}
	seeds := append(slices.Clone(cc.Routes), persisted...)
	if cs.routes, err = cs.merge(nil, seeds); err != nil {
		return nil, err
	}

	opts.Cluster = server.ClusterOpts{
		Name:     cs.name,
		Host:     host,
		Port:     port,
		Username: routeUser,
		Password: cs.password,
		// Implicit (gossiped) routes dial with Username/Password; explicit
		// ones with the credentials in their URL (routeURLs).
		Advertise: cc.Advertise,
	}
	if cc.TLS.CertFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: cc.TLS.CertFile,
			KeyFile:  cc.TLS.KeyFile,
			CaFile:   cc.TLS.CAFile,
			Verify:   cc.TLS.CAFile != "",
			Timeout:  tlsTimeout.Seconds(),
		})
		if err != nil {
			return nil, fmt.Errorf("cluster tls: %w", err)
		}
		// A route is both a server and a client of its peer: the CA
		// verifies the peer's certificate in both directions.
		tc.RootCAs = tc.ClientCAs
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tc, tlsTimeout.Seconds()
	}
	opts.Routes = cs.routeURLs(cs.routes)
	return cs, nil
}

// freePort returns a TCP port that was free on host a moment ago.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// routeURLs are the URLs the server dials: the node's own first, then the
// peers, all with the route credentials.
func (cs *clusterState) routeURLs(peers []string) []*url.URL {
	urls := make([]*url.URL, 0, len(peers)+1)
	for _, r := range append([]string{cs.self}, peers...) {
		u, err := url.Parse(r)
		if err != nil {
			continue // normalised before; cannot happen
		}
		u.User = url.UserPassword(routeUser, cs.password)
		urls = append(urls, u)
	}
	return urls
}

// merge returns known ∪ add, normalised, deduplicated, sorted, without the
// node's own URL. It fails on the first malformed URL.
func (cs *clusterState) merge(known, add []string) ([]string, error) {
	out := slices.Clone(known)
	for _, r := range add {
		n, err := normalizeRoute(r)
		if err != nil {
			return nil, err
		}
		if n != cs.self && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// normalizeRoute turns host:port, nats-route://host:port or
// nats://host:port (credentials and paths dropped) into
// nats-route://host:port with a lower-case host.
func normalizeRoute(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty route URL")
	}
	if !strings.Contains(s, "://") {
		s = routeScheme + "://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("route URL %q: %w", s, err)
	}
	if u.Scheme != routeScheme && u.Scheme != "nats" {
		return "", fmt.Errorf("route URL %q: scheme must be %s", s, routeScheme)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || port == "" {
		return "", fmt.Errorf("route URL %q: want host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("route URL %q: bad port", s)
	}
	return routeScheme + "://" + net.JoinHostPort(strings.ToLower(host), port), nil
}

// peersDoc is the PeersFile's content.
type peersDoc struct {
	Routes []string `json:"routes"`
}

func readPeersFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster peers file: %w", err)
	}
	var doc peersDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("cluster peers file %s: %w (delete it to start from the seeds alone)", path, err)
	}
	return doc.Routes, nil
}

// writePeersFile replaces path atomically: a reader (or a crash) sees the
// old list or the new one, never a torn file.
func writePeersFile(path string, routes []string) error {
	data, err := json.MarshalIndent(peersDoc{Routes: routes}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".cluster-routes-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable; not every file system can
		_ = d.Close()
	}
	return nil
}

// RouteURL is the URL other nodes dial to route to this one, e.g.
// nats-route://127.0.0.2:6222, without credentials; "" in single-node mode.
func (b *Bus) RouteURL() string {
	if b.cl == nil {
		return ""
	}
	return b.cl.self
}

// Routes are the route URLs of the peers this node dials explicitly (seeds,
// persisted and added ones), without its own; nil in single-node mode.
func (b *Bus) Routes() []string {
	if b.cl == nil {
		return nil
	}
	b.cl.mu.Lock()
	defer b.cl.mu.Unlock()
	return slices.Clone(b.cl.routes)
}

// AddRoutes makes every URL in urls (nats-route://host:port or host:port)
// an explicit route of the running server, and persists the merged list
// to the peers file so that the next Start dials them too. The collector
// calls it with the route URL of every peer memberlist reports: nats-server
// retries a route it only learnt by gossip once, an explicit route for
// ever. URLs already known and the node's own are ignored; when nothing is
// new it does nothing. It fails in single-node mode and on a malformed URL
// (adding none of urls). It is safe for concurrent use.
func (b *Bus) AddRoutes(urls []string) error {
	cs := b.cl
	if cs == nil {
		return errors.New("add routes: the bus is not in cluster mode")
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	merged, err := cs.merge(cs.routes, urls)
	if err != nil {
		return fmt.Errorf("add routes: %w", err)
	}
	added := len(merged) - len(cs.routes)
	if added == 0 {
		return nil
	}
	opts := cs.opts.Clone()
	opts.Routes = cs.routeURLs(merged)
	if err := b.srv.ReloadOptions(opts); err != nil {
		return fmt.Errorf("add routes: reload nats server: %w", err)
	}
	cs.opts, cs.routes = opts, merged
	b.metrics.routesAdded.Add(added)
	b.log.log.Info("nats: routes added", "added", added, "routes", merged)
	if err := writePeersFile(cs.peersFile, merged); err != nil {
		// The routes are in effect; only the next start without seeds
		// suffers.
		return fmt.Errorf("add routes: persist %s: %w", cs.peersFile, err)
	}
	return nil
}

// SetReplicas raises every CitySense stream's replicas to min(3, live),
// never above the number of servers JetStream knows to be online, and
// returns the replicas in effect (the smallest over the streams). The
// collector calls it whenever memberlist's live count changes; it is
// idempotent and safe for concurrent use.
//
// It only ever raises (RaiseReplicas semantics): a smaller live count
// keeps the replicas as they are. A node that stops may well come back
// (a restart, a kill -9, a network partition), and shrinking the
// replicas on every departure would move stream leaders and copy data
// around for nothing; an R3 stream stays writable with one node of three
// gone, by quorum. Retiring a node for good is an operator's decision
// (nats stream edit --replicas, or removing the peer), not an automatic
// one.
//
// A raise that cannot happen yet (the streams do not exist, or JetStream
// knows fewer servers than memberlist) is remembered: the bus keeps
// retrying it in the background every few seconds. In single-node mode
// it returns 1 and does nothing.
func (b *Bus) SetReplicas(ctx context.Context, live int) (int, error) {
	cs := b.cl
	if cs == nil {
		return 1, nil
	}
	for {
		cur := cs.wantLive.Load()
		if int64(live) <= cur || cs.wantLive.CompareAndSwap(cur, int64(live)) {
			break
		}
	}
	if !cs.streamsReady.Load() {
		return int(cs.replicas.Load()), errors.New("set replicas: the streams do not exist yet (no JetStream meta leader); the raise is retried in the background")
	}
	return b.raiseReplicas(ctx, live)
}

// raiseReplicas is SetReplicas' work.
func (b *Bus) raiseReplicas(ctx context.Context, live int) (int, error) {
	cs := b.cl
	cs.raiseMu.Lock()
	defer cs.raiseMu.Unlock()
	target := min(MaxReplicas, max(live, 1))
	if known := b.knownServers(); target > known {
		target = max(known, 1)
	}
	effective := MaxReplicas
	var errs []error
	for _, name := range streamNames {
		r, err := b.raiseStream(ctx, name, target)
		if err != nil {
			errs = append(errs, err)
		}
		effective = min(effective, r)
	}
	if effective > 0 {
		cs.replicas.Store(int64(effective))
	}
	return effective, errors.Join(errs...)
}

// raiseStream sets one stream's replicas to target unless it has as many
// already, and returns the replicas configured now (0 when unknown).
func (b *Bus) raiseStream(ctx context.Context, name string, target int) (int, error) {
	actx, cancel := context.WithTimeout(ctx, streamAttemptTimeout)
	defer cancel()
	s, err := b.js.Stream(actx, name)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", name, err)
	}
	sc := s.CachedInfo().Config
	if sc.Replicas >= target {
		return sc.Replicas, nil
	}
	from := sc.Replicas
	sc.Replicas = target
	if _, err := b.js.UpdateStream(actx, sc); err != nil {
		return from, fmt.Errorf("stream %s: raise replicas %d → %d: %w", name, from, target, err)
	}
	b.log.log.Info("nats: stream replicas raised", "stream", name, "from", from, "to", target)
	return target, nil
}

// streamNames are the streams SetReplicas and ClusterHealth cover.
var streamNames = []string{StreamRaw, StreamSeries, StreamQuarantine}

// knownServers is the number of servers of the JetStream meta group that
// are online, this one included; 1 when there is no meta group.
func (b *Bus) knownServers() int {
	jsz, err := b.srv.Jsz(&server.JSzOptions{})
	if err != nil || jsz.Meta == nil {
		return 1
	}
	n := 1
	for _, p := range jsz.Meta.Replicas {
		if !p.Offline && p.Name != b.srv.Name() {
			n++
		}
	}
	return n
}

// metaLeader is the name of the JetStream meta leader, "" when there is
// none (or no meta group).
func (b *Bus) metaLeader() string {
	jsz, err := b.srv.Jsz(&server.JSzOptions{})
	if err != nil || jsz.Meta == nil {
		return ""
	}
	return jsz.Meta.Leader
}

// clusterStreamConfigs are the streams a cluster node creates, at R1.
func (cs *clusterState) streamConfigs() []jetstream.StreamConfig {
	return []jetstream.StreamConfig{RawStreamConfig(), SeriesStreamConfigFor(true, cs.maxAge), QuarantineStreamConfig()}
}

// runCluster creates the streams as soon as JetStream has a meta leader,
// then keeps raising the replicas to what SetReplicas asked for. It ends
// with Shutdown.
func (b *Bus) runCluster(ctx context.Context) {
	defer b.wg.Done()
	if !b.ensureClusterStreams(ctx) {
		return
	}
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	for {
		cs := b.cl
		if want := min(MaxReplicas, int(cs.wantLive.Load())); want > int(cs.replicas.Load()) {
			if _, err := b.raiseReplicas(ctx, want); err != nil && ctx.Err() == nil {
				b.log.log.Debug("nats: raising replicas, will retry", "want", want, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ensureClusterStreams creates or updates the streams, retrying until it
// succeeds or ctx ends: JetStream answers no API request until its meta
// leader is elected, 1–6 s after the start of a cluster (and never while
// the node is alone). It reports whether the streams exist.
func (b *Bus) ensureClusterStreams(ctx context.Context) bool {
	start := time.Now()
	nextLog := start.Add(waitingLogEvery)
	pause := 100 * time.Millisecond
	for {
		err := b.ensureStreamsOnce(ctx)
		if err == nil {
			b.cl.streamsReady.Store(true)
			b.log.log.Info("nats: cluster streams ready", "waited", time.Since(start).Round(time.Millisecond),
				"meta_leader", b.metaLeader(), "replicas", b.cl.replicas.Load())
			return true
		}
		if now := time.Now(); now.After(nextLog) {
			nextLog = now.Add(waitingLogEvery)
			b.log.log.Warn("nats: still waiting to create the streams; is another node of the cluster up and routed?",
				"waited", now.Sub(start).Round(time.Second), "meta_leader", b.metaLeader(), "err", err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pause):
		}
		pause = min(2*pause, streamRetryMax)
	}
}

// ensureStreamsOnce creates the streams that are missing at R1 and
// updates the others' configuration, keeping their replicas (another node
// may have raised them already).
func (b *Bus) ensureStreamsOnce(ctx context.Context) error {
	effective := MaxReplicas
	for _, sc := range b.cl.streamConfigs() {
		actx, cancel := context.WithTimeout(ctx, createAttemptTimeout)
		r, err := b.ensureStream(actx, sc)
		cancel()
		if err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
		effective = min(effective, r)
	}
	b.cl.replicas.Store(int64(effective))
	return nil
}

func (b *Bus) ensureStream(ctx context.Context, sc jetstream.StreamConfig) (int, error) {
	s, err := b.js.Stream(ctx, sc.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := b.js.CreateStream(ctx, sc); err != nil {
			return 0, err // ErrStreamNameAlreadyInUse included: another node was faster; the next round updates
		}
		return sc.Replicas, nil
	case err != nil:
		return 0, err
	}
	cur := s.CachedInfo().Config
	sc.Replicas = max(cur.Replicas, sc.Replicas)
	if _, err := b.js.UpdateStream(ctx, sc); err != nil {
		return 0, err
	}
	return sc.Replicas, nil
}

// clusterReady is Ready's cluster part.
func (b *Bus) clusterReady() error {
	if b.metaLeader() == "" {
		return errors.New("jetstream has no meta leader (cluster not formed yet, or no quorum)")
	}
	if !b.cl.streamsReady.Load() {
		return errors.New("the streams do not exist yet")
	}
	return nil
}

// WaitReady waits until Ready reports nil, or ctx ends. In cluster mode
// Start returns before the streams exist (a first node alone has no
// JetStream meta leader); this is how a caller waits for them.
func (b *Bus) WaitReady(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := b.Ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus not ready: %w (%w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// ClusterHealth is the bus's part of the cluster status page.
type ClusterHealth struct {
	// Server is this server's name.
	Server string `json:"server"`
	// Cluster is the NATS cluster name; "" in single-node mode.
	Cluster string `json:"cluster,omitempty"`
	// RouteURL is the URL other nodes dial (RouteURL).
	RouteURL string `json:"route_url,omitempty"`
	// Routes are the peers' route URLs this server dials explicitly.
	Routes []string `json:"routes"`
	// ConnectedRoutes are the names of the servers a route is connected
	// to now, sorted.
	ConnectedRoutes []string `json:"connected_routes"`
	// MetaLeader is the JetStream meta leader's name; "" when there is
	// none (and in single-node mode).
	MetaLeader string `json:"meta_leader"`
	// KnownServers counts the JetStream servers online, this one included.
	KnownServers int `json:"known_servers"`
	// Streams are CS_RAW, CS_SERIES and CS_QUARANTINE.
	Streams []StreamHealth `json:"streams"`
}

// StreamHealth is one stream's state as its leader reports it.
type StreamHealth struct {
	Name string `json:"name"`
	// Replicas is the configured replica count.
	Replicas int `json:"replicas"`
	// Leader is the stream leader's server name.
	Leader string `json:"leader"`
	// Peers are the replicas other than the leader.
	Peers    []ReplicaHealth `json:"peers"`
	Messages uint64          `json:"messages"`
	Bytes    uint64          `json:"bytes"`
	FirstSeq uint64          `json:"first_seq"`
	LastSeq  uint64          `json:"last_seq"`
	// Error says why the stream's state is unknown (no leader, no
	// meta leader); the other fields are then zero.
	Error string `json:"error,omitempty"`
}

// ReplicaHealth is one follower of a stream as the leader sees it.
type ReplicaHealth struct {
	Name string `json:"name"`
	// Current reports whether the replica has caught up with the leader.
	Current bool `json:"current"`
	// Offline reports whether the leader cannot reach it.
	Offline bool `json:"offline"`
	// ActiveMS is how long ago the leader last heard from it.
	ActiveMS int64 `json:"active_ms"`
	// Lag is how many operations it is behind.
	Lag uint64 `json:"lag"`
}

// ClusterHealth reports the cluster's state for the status page. A stream
// whose state cannot be had (no leader yet) carries the reason in its
// Error; the call itself fails only when ctx ends first.
func (b *Bus) ClusterHealth(ctx context.Context) (ClusterHealth, error) {
	h := ClusterHealth{Server: b.srv.Name(), Routes: b.Routes(), ConnectedRoutes: []string{}}
	if b.cl != nil {
		h.Cluster, h.RouteURL = b.cl.name, b.cl.self
	}
	if h.Routes == nil {
		h.Routes = []string{}
	}
	h.ConnectedRoutes = b.connectedRoutes()
	h.MetaLeader = b.metaLeader()
	h.KnownServers = b.knownServers()
	for _, name := range streamNames {
		if err := ctx.Err(); err != nil {
			return h, err
		}
		h.Streams = append(h.Streams, b.streamHealth(ctx, name))
	}
	return h, nil
}

func (b *Bus) streamHealth(ctx context.Context, name string) StreamHealth {
	sh := StreamHealth{Name: name, Peers: []ReplicaHealth{}}
	actx, cancel := context.WithTimeout(ctx, streamAttemptTimeout)
	defer cancel()
	s, err := b.js.Stream(actx, name)
	if err != nil {
		sh.Error = err.Error()
		return sh
	}
	info := s.CachedInfo()
	sh.Replicas = info.Config.Replicas
	sh.Messages, sh.Bytes = info.State.Msgs, info.State.Bytes
	sh.FirstSeq, sh.LastSeq = info.State.FirstSeq, info.State.LastSeq
	if ci := info.Cluster; ci != nil {
		sh.Leader = ci.Leader
		for _, p := range ci.Replicas {
			sh.Peers = append(sh.Peers, ReplicaHealth{
				Name: p.Name, Current: p.Current, Offline: p.Offline,
				ActiveMS: p.Active.Milliseconds(), Lag: p.Lag,
			})
		}
	}
	if sh.Leader == "" && b.cl == nil {
		sh.Leader = b.srv.Name()
	}
	return sh
}

// connectedRoutes are the distinct names of the servers routed to now.
func (b *Bus) connectedRoutes() []string {
	names := []string{}
	rz, err := b.srv.Routez(&server.RoutezOptions{})
	if err != nil {
		return names
	}
	for _, r := range rz.Routes {
		if r.RemoteName != "" && !slices.Contains(names, r.RemoteName) {
			names = append(names, r.RemoteName)
		}
	}
	slices.Sort(names)
	return names
}

// clusterGauges registers the cluster-mode metrics on b's set.
func (m *busMetrics) clusterGauges(b *Bus) {
	m.routesAdded = m.set.NewCounter("citysense_bus_routes_added_total")
	m.set.NewGauge("citysense_bus_routes_configured", func() float64 { return float64(len(b.Routes())) })
	m.set.NewGauge("citysense_bus_routes_connected", func() float64 { return float64(len(b.connectedRoutes())) })
	m.set.NewGauge("citysense_bus_stream_replicas", func() float64 { return float64(b.cl.replicas.Load()) })
	m.set.NewGauge("citysense_bus_jetstream_meta_leader", func() float64 {
		if b.metaLeader() != "" {
			return 1
		}
		return 0
	})
}
