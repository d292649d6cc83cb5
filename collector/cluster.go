package collector

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/citysense/citysense/collector/internal/bus"
	"github.com/citysense/citysense/collector/internal/cluster"
	"github.com/citysense/citysense/collector/internal/config"
	"github.com/citysense/citysense/collector/internal/fanout"
	"github.com/citysense/citysense/collector/internal/ingest"
	"github.com/citysense/citysense/collector/internal/ring"
	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/protocols"
)

// node is this collector's part in a cluster: membership, the partitions
// it owns and consumes into its store, and the view the query fan-out
// reads. It exists only when the configuration has a cluster block.
//
// Ownership follows the ring (rendezvous hashing over the live members,
// Replication owners per partition). A partition this node gains is
// rebuilt: its consumer `store-<node>-p<n>` replays what CS_SERIES still
// holds, and what is older comes from a surviving owner's store (the
// hand-off). Only once both are done and the consumer has caught up does
// the node say, in its gossiped metadata, that it serves the partition;
// queries prefer owners that do. A partition it loses stops being
// consumed at once and its consumer is deleted; the points stay on disk
// but are no longer read.
type node struct {
	cfg   config.Config
	log   *slog.Logger
	name  string
	parts int
	r     int
	key   []byte
	meta  cluster.Meta

	cl *cluster.Cluster
	b  *bus.Bus
	js jetstream.JetStream
	st *store.Store

	fan       fanout.Options
	ingestCfg ingest.Config
	stateFile string
	set       *metrics.Set

	handoffPoints  *metrics.Counter
	handoffPending atomic.Int64
	rebuilds       *metrics.Counter

	mu       sync.Mutex
	running  map[int]*ownedPartition
	stopping map[int]*ownedPartition // released, still finishing
	rebuilt  map[int]string          // partitions whose history this disk holds → their consumer (persisted)
	ready    []bool                  // partitions served to queries
	routes   []string
	replicas int
	// stoppingAll is set once the node withdrew for shutdown.
	stoppingAll bool
}

// ownedPartition is one partition being consumed into the store.
type ownedPartition struct {
	p        int
	durable  string
	cancel   context.CancelFunc
	done     chan struct{}
	caughtUp atomic.Bool // rebuilt, and the consumer had nothing pending
	rebuilt  atomic.Bool
}

// partitionState is what DATA/cluster/partitions.json keeps.
type partitionState struct {
	Partitions int `json:"partitions"`
	// Rebuilt maps each partition whose history this disk holds to the
	// durable consumer that feeds it.
	Rebuilt map[string]string `json:"rebuilt"`
}

// consumerPrefix starts the names of node's consumers of partition p; each
// acquisition gets a consumer of its own (the prefix and a unique suffix),
// so that the acknowledgements of a consumer being torn down can never
// land on its successor.
func consumerPrefix(node string, p int) string { return fmt.Sprintf("store-%s-p%d-", node, p) }

// clusterAddrs derives the addresses this node gossips from the config.
func clusterAddrs(cfg config.Config) (host string, meta cluster.Meta, err error) {
	cl := cfg.Cluster
	host = cl.AdvertiseHost()
	if net.ParseIP(host) == nil {
		ips, lerr := net.LookupIP(host)
		if lerr != nil || len(ips) == 0 {
			return "", meta, fmt.Errorf("cluster.advertise %q: %v", host, lerr)
		}
		host = ips[0].String()
	}
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	meta = cluster.Meta{
		API:     "http://" + net.JoinHostPort(host, port(cfg.HTTP.Listen)),
		Route:   "nats-route://" + net.JoinHostPort(host, port(cl.Routes)),
		NATS:    "nats://" + net.JoinHostPort(host, port(cfg.NATS.Listen)),
		Version: cli.Version(),
	}
	return host, meta, nil
}

// startMembership joins the gossip and waits briefly for the members a
// seed (or the remembered state) leads to, so that the NATS server can
// start with routes to them.
func startMembership(ctx context.Context, cfg config.Config, key []byte, log *slog.Logger) (*cluster.Cluster, cluster.Meta, []string, error) {
	host, meta, err := clusterAddrs(cfg)
	if err != nil {
		return nil, meta, nil, err
	}
	dir := filepath.Join(cfg.Node.DataDir, "cluster")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, meta, nil, fmt.Errorf("create %s: %w", dir, err)
	}
	_, gport, _ := net.SplitHostPort(cfg.Cluster.Gossip)
	cl, err := cluster.Start(ctx, cluster.Config{
		Name:      cfg.Node.Name,
		Bind:      cfg.Cluster.Gossip,
		Advertise: net.JoinHostPort(host, gport),
		Seeds:     cfg.Cluster.Seeds,
		SecretKey: key,
		StateFile: filepath.Join(dir, "members.json"),
		Meta:      meta,
	}, log)
	if err != nil {
		return nil, meta, nil, err
	}
	// A node with seeds or remembered members waits up to 5 s for one of
	// them, so that its NATS server starts with routes to the cluster.
	_, statErr := os.Stat(filepath.Join(dir, "members.json"))
	if len(cfg.Cluster.Seeds) > 0 || statErr == nil {
		deadline := time.NewTimer(5 * time.Second)
		defer deadline.Stop()
	wait:
		for len(cl.Live()) < 2 {
			select {
			case <-cl.Changes():
			case <-deadline.C:
				break wait
			case <-ctx.Done():
				cl.Shutdown()
				return nil, meta, nil, ctx.Err()
			}
		}
	}
	return cl, meta, peerRoutes(cl.Live()), nil
}

func peerRoutes(live []cluster.Member) []string {
	var out []string
	for _, m := range live {
		if !m.Self && m.Meta.Route != "" {
			out = append(out, m.Meta.Route)
		}
	}
	slices.Sort(out)
	return out
}

func newNode(cfg config.Config, key []byte, meta cluster.Meta, cl *cluster.Cluster, b *bus.Bus, st *store.Store, ingestCfg ingest.Config, log *slog.Logger) (*node, error) {
	n := &node{
		cfg: cfg, log: log.With("component", "cluster"), name: cfg.Node.Name,
		parts: cfg.Ingest.Partitions, r: cfg.Cluster.Replication, key: key, meta: meta,
		cl: cl, b: b, js: b.JetStream(), st: st, ingestCfg: ingestCfg,
		stateFile: filepath.Join(cfg.Node.DataDir, "cluster", "partitions.json"),
		set:       metrics.NewSet(),
		running:   map[int]*ownedPartition{},
		stopping:  map[int]*ownedPartition{},
		rebuilt:   map[int]string{},
		ready:     make([]bool, cfg.Ingest.Partitions),
	}
	n.fan = fanout.Options{
		Local:       st,
		View:        n,
		PartitionOf: func(m string, tags []protocols.Tag) int { return ring.SeriesPartition(m, tags, n.parts) },
		Secret:      key,
		Log:         log,
	}
	n.handoffPoints = n.set.NewCounter("citysense_cluster_handoff_points_total")
	n.rebuilds = n.set.NewCounter("citysense_cluster_partition_rebuilds_total")
	n.set.NewGauge("citysense_cluster_handoff_partitions_pending", func() float64 { return float64(n.handoffPending.Load()) })
	n.set.NewGauge("citysense_cluster_partitions_owned", func() float64 {
		n.mu.Lock()
		defer n.mu.Unlock()
		return float64(len(n.running))
	})
	n.set.NewGauge("citysense_cluster_partitions_serving", func() float64 {
		n.mu.Lock()
		defer n.mu.Unlock()
		c := 0
		for _, r := range n.ready {
			if r {
				c++
			}
		}
		return float64(c)
	})
	if err := n.loadState(); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *node) loadState() error {
	b, err := os.ReadFile(n.stateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster state: %w", err)
	}
	var ps partitionState
	if err := json.Unmarshal(b, &ps); err != nil {
		// Losing this file only costs a rebuild of every owned partition.
		n.log.Warn("cluster state unreadable; every owned partition will be rebuilt", "file", n.stateFile, "err", err)
		return nil
	}
	if ps.Partitions != n.parts {
		n.log.Warn("ingest.partitions changed; every owned partition will be rebuilt", "was", ps.Partitions, "now", n.parts)
		return nil
	}
	for k, durable := range ps.Rebuilt {
		p, err := strconv.Atoi(k)
		if err == nil && p >= 0 && p < n.parts && strings.HasPrefix(durable, consumerPrefix(n.name, p)) {
			n.rebuilt[p] = durable
		}
	}
	return nil
}

// saveState persists the rebuilt set; n.mu is held.
func (n *node) saveState() {
	ps := partitionState{Partitions: n.parts, Rebuilt: map[string]string{}}
	for p, durable := range n.rebuilt {
		ps.Rebuilt[strconv.Itoa(p)] = durable
	}
	b, _ := json.Marshal(ps)
	tmp := n.stateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err == nil {
		err = os.Rename(tmp, n.stateFile)
		if err == nil {
			return
		}
	}
	n.log.Error("cannot save the cluster state; partitions may be rebuilt again after a restart", "file", n.stateFile)
}

// Self, Partitions and Candidates are the fan-out's view of the cluster.
func (n *node) Self() string    { return n.name }
func (n *node) Partitions() int { return n.parts }

// Candidates lists the nodes to ask for partition p: owners that serve it
// first, then other members that still serve it (a former owner that has
// not yet noticed the change), then owners still rebuilding.
func (n *node) Candidates(p int) []fanout.Node {
	live := n.cl.Live()
	names := make([]string, len(live))
	for i, m := range live {
		names[i] = m.Name
	}
	owners := ring.Owners(p, names, n.r)
	var serving, others, rebuilding []fanout.Node
	for _, m := range live {
		fn := fanout.Node{Name: m.Name, API: m.Meta.API}
		owner := slices.Contains(owners, m.Name)
		ok := n.serves(m, p)
		switch {
		case owner && ok:
			serving = append(serving, fn)
		case ok:
			others = append(others, fn)
		case owner:
			rebuilding = append(rebuilding, fn)
		}
	}
	// Owners in rendezvous order, so that every node asks the same one.
	byOwner := func(a, b fanout.Node) int { return slices.Index(owners, a.Name) - slices.Index(owners, b.Name) }
	slices.SortFunc(serving, byOwner)
	slices.SortFunc(rebuilding, byOwner)
	return append(append(serving, others...), rebuilding...)
}

func (n *node) serves(m cluster.Member, p int) bool {
	if m.Self {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.ready[p]
	}
	return bitSet(m.Meta.Ready, p)
}

// bitSet reads bit p of a hex bitmap.
func bitSet(hexmap string, p int) bool {
	i := p / 8 * 2
	if i+2 > len(hexmap) {
		return false
	}
	b, err := strconv.ParseUint(hexmap[i:i+2], 16, 8)
	return err == nil && b&(1<<(p%8)) != 0
}

func bitmap(ready []bool) string {
	b := make([]byte, (len(ready)+7)/8)
	for p, r := range ready {
		if r {
			b[p/8] |= 1 << (p % 8)
		}
	}
	return hex.EncodeToString(b)
}

// run keeps ownership, routes and replicas in step with the membership
// until ctx ends, then stops every partition consumer.
func (n *node) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		n.reconcile(ctx)
		select {
		case <-ctx.Done():
			n.stopAll()
			return
		case <-n.cl.Changes():
		case <-tick.C:
		}
	}
}

func (n *node) reconcile(ctx context.Context) {
	live := n.cl.Live()
	if routes := peerRoutes(live); !slices.Equal(routes, n.routes) {
		if err := n.b.AddRoutes(routes); err != nil {
			n.log.Warn("cannot add NATS routes", "routes", routes, "err", err)
		} else {
			n.routes = routes
		}
	}
	if err := n.b.Ready(); err != nil {
		// No streams yet (no JetStream meta leader): nothing to consume.
		return
	}
	if len(live) > n.replicas && n.replicas < 3 {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := n.b.SetReplicas(sctx, len(live))
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				n.log.Warn("cannot raise stream replicas yet", "live", len(live), "err", err)
			}
		} else if r != n.replicas {
			n.log.Info("stream replicas raised", "replicas", r, "live", len(live))
			n.replicas = r
		}
	}
	names := make([]string, len(live))
	for i, m := range live {
		names[i] = m.Name
	}
	owned := ring.Owned(n.parts, names, n.r, n.name)
	n.mu.Lock()
	for p, op := range n.running {
		if !slices.Contains(owned, p) {
			n.releaseLocked(ctx, op)
		}
	}
	for _, p := range owned {
		if _, ok := n.running[p]; !ok && ctx.Err() == nil {
			n.startLocked(ctx, p)
		}
	}
	n.mu.Unlock()
	n.refreshReady(ctx)
}

// startLocked begins consuming partition p; n.mu is held.
func (n *node) startLocked(ctx context.Context, p int) {
	if old := n.stopping[p]; old != nil {
		select {
		case <-old.done:
			delete(n.stopping, p)
		default:
			return // the previous consumer is still finishing: next round
		}
	}
	pctx, cancel := context.WithCancel(ctx)
	durable, ok := n.rebuilt[p]
	rebuild := !ok
	if rebuild {
		durable = consumerPrefix(n.name, p) + nuid.Next()
	}
	op := &ownedPartition{p: p, durable: durable, cancel: cancel, done: make(chan struct{})}
	n.running[p] = op
	if !rebuild {
		op.rebuilt.Store(true)
	}
	n.log.Info("partition acquired", "partition", p, "rebuild", rebuild)
	go func() {
		defer close(op.done)
		n.consume(pctx, op, rebuild)
		if pctx.Err() == nil {
			// The consumer stopped on its own (an error was logged): the
			// next reconcile starts it again.
			n.mu.Lock()
			if n.running[op.p] == op {
				delete(n.running, op.p)
				n.ready[op.p] = false
			}
			n.mu.Unlock()
		}
	}()
}

// consume runs partition p's consumer, rebuilding its history first when
// this disk does not hold it.
func (n *node) consume(ctx context.Context, op *ownedPartition, rebuild bool) {
	if rebuild {
		n.rebuilds.Inc()
		// Older consumers of this node for p point past data this disk
		// may not have (a replaced node, a partition owned before).
		n.deleteConsumers(ctx, consumerPrefix(n.name, op.p), op.durable)
	}
	cfg := n.ingestCfg
	cfg.Durable = op.durable
	cfg.FilterSubject = bus.SubjectSeriesPrefix + strconv.Itoa(op.p)
	cfg.Metrics = n.set
	cfg.Label = `partition="` + strconv.Itoa(op.p) + `"`
	in, err := ingest.New(n.js, ingest.DeferredPoints(n.st), cfg, n.log)
	if err != nil {
		n.log.Error("partition consumer", "partition", op.p, "err", err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	select {
	case <-in.ConsumerReady():
	case err := <-done:
		if ctx.Err() == nil {
			n.log.Error("partition consumer stopped", "partition", op.p, "err", err)
		}
		return
	}
	if !rebuild && n.resumedPastStream(ctx, op) {
		// Down longer than the stream keeps messages: what aged out of
		// CS_SERIES before this consumer took it comes from another owner.
		op.rebuilt.Store(false)
		op.caughtUp.Store(false)
		rebuild = true
	}
	if rebuild {
		if !n.handOff(ctx, op) {
			<-done
			return
		}
		n.mu.Lock()
		if n.running[op.p] == op {
			n.rebuilt[op.p] = op.durable
			n.saveState()
		}
		n.mu.Unlock()
		op.rebuilt.Store(true)
	}
	if err := <-done; err != nil && ctx.Err() == nil {
		n.log.Error("partition consumer stopped", "partition", op.p, "err", err)
	}
}

// resumedPastStream reports whether op's consumer resumes at a message the
// stream no longer holds: its ack floor is below the stream's first
// message, so messages it never stored may have aged out (or its partition
// was merely quiet; a hand-off then copies what is already here, which is
// harmless).
func (n *node) resumedPastStream(ctx context.Context, op *ownedPartition) bool {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := n.js.Consumer(ictx, bus.StreamSeries, op.durable)
	if err != nil {
		return false
	}
	ci, err := c.Info(ictx)
	if err != nil {
		return false
	}
	s, err := n.js.Stream(ictx, bus.StreamSeries)
	if err != nil {
		return false
	}
	si, err := s.Info(ictx)
	if err != nil || si.State.Msgs == 0 {
		return false
	}
	if ci.AckFloor.Stream+1 >= si.State.FirstSeq {
		return false
	}
	n.log.Warn("partition consumer resumes past the stream's first message; rebuilding older points by hand-off",
		"partition", op.p, "ack_floor", ci.AckFloor.Stream, "stream_first_seq", si.State.FirstSeq)
	return true
}

// handOff copies partition p's points older than what CS_SERIES holds
// from a member that serves it. It retries until it succeeds, no member
// serves p (nothing to copy: a new cluster, or every holder gone) or ctx
// ends; it reports whether the partition may be called rebuilt.
func (n *node) handOff(ctx context.Context, op *ownedPartition) bool {
	n.handoffPending.Add(1)
	defer n.handoffPending.Add(-1)
	before := time.Now().UnixNano()
	if s, err := n.js.Stream(ctx, bus.StreamSeries); err == nil {
		if info, err := s.Info(ctx); err == nil && info.State.Msgs > 0 {
			// A minute of overlap: writing a point twice is harmless.
			before = info.State.FirstTime.Add(time.Minute).UnixNano()
		}
	}
	for attempt := 0; ; attempt++ {
		var src *fanout.Node
		for _, c := range n.Candidates(op.p) {
			if c.Name != n.name && n.servesName(c.Name, op.p) {
				src = &c
				break
			}
		}
		if src == nil {
			n.log.Info("partition rebuilt from the stream alone: no other member serves it", "partition", op.p)
			return true
		}
		start := time.Now()
		var last time.Time
		w := &handoffWriter{st: n.st}
		got, err := fanout.HandOff(ctx, n.fan, *src, op.p, before, w, func(points int64) {
			n.handoffPoints.Add(int(points - w.reported))
			w.reported = points
			if time.Since(last) > 5*time.Second {
				last = time.Now()
				n.log.Info("hand-off in progress", "partition", op.p, "from", src.Name, "points", points)
			}
		})
		if err == nil {
			err = n.st.Flush(ctx)
		}
		if err == nil {
			n.log.Info("hand-off done", "partition", op.p, "from", src.Name, "points", got,
				"before", time.Unix(0, before).UTC().Format(time.RFC3339), "took", time.Since(start).Round(time.Millisecond))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		n.log.Warn("hand-off failed; retrying", "partition", op.p, "from", src.Name, "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(time.Duration(attempt+1)*2*time.Second, 30*time.Second)):
		}
	}
}

func (n *node) servesName(name string, p int) bool {
	for _, m := range n.cl.Live() {
		if m.Name == name {
			return n.serves(m, p)
		}
	}
	return false
}

// handoffWriter appends handed-off points to the store; the caller
// flushes once at the end.
type handoffWriter struct {
	st       *store.Store
	reported int64
}

func (w *handoffWriter) Write(pts []protocols.Point) (int, error) { return w.st.Append(pts, nil) }

// releaseLocked stops consuming a partition this node no longer owns;
// n.mu is held.
func (n *node) releaseLocked(ctx context.Context, op *ownedPartition) {
	op.cancel()
	delete(n.running, op.p)
	n.stopping[op.p] = op
	n.ready[op.p] = false
	delete(n.rebuilt, op.p)
	n.saveState()
	n.log.Info("partition released", "partition", op.p)
	go func() {
		<-op.done
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := n.js.DeleteConsumer(dctx, bus.StreamSeries, op.durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && ctx.Err() == nil {
			n.log.Warn("cannot delete a released partition's consumer", "consumer", op.durable, "err", err)
		}
	}()
}

// deleteConsumers deletes this stream's consumers whose names start with
// prefix, except keep.
func (n *node) deleteConsumers(ctx context.Context, prefix, keep string) {
	s, err := n.js.Stream(ctx, bus.StreamSeries)
	if err != nil {
		return
	}
	var old []string
	names := s.ConsumerNames(ctx)
	for name := range names.Name() {
		if strings.HasPrefix(name, prefix) && name != keep {
			old = append(old, name)
		}
	}
	for _, name := range old {
		if err := s.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && ctx.Err() == nil {
			n.log.Warn("cannot delete an old partition consumer", "consumer", name, "err", err)
		}
	}
}

// prepareStop withdraws this node from serving before its consumers stop,
// so that queries go to the other owners while it shuts down.
func (n *node) prepareStop() {
	n.mu.Lock()
	for p := range n.ready {
		n.ready[p] = false
	}
	meta := n.meta
	meta.Ready = bitmap(n.ready)
	n.stoppingAll = true
	n.mu.Unlock()
	if err := n.cl.UpdateMeta(meta); err != nil {
		n.log.Warn("cannot gossip the end of serving", "err", err)
	}
}

// refreshReady marks the partitions whose history is here and whose
// consumer has caught up as served, and gossips the change.
func (n *node) refreshReady(ctx context.Context) {
	n.mu.Lock()
	var check []*ownedPartition
	for _, op := range n.running {
		if op.rebuilt.Load() && !op.caughtUp.Load() {
			check = append(check, op)
		}
	}
	n.mu.Unlock()
	for _, op := range check {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := n.js.Consumer(cctx, bus.StreamSeries, op.durable)
		var pending uint64 = 1 << 62
		if err == nil {
			if info, err := c.Info(cctx); err == nil {
				pending = info.NumPending
			}
		}
		cancel()
		if pending <= uint64(max(n.ingestCfg.Batch, 1)) {
			op.caughtUp.Store(true)
		}
	}
	n.mu.Lock()
	if n.stoppingAll {
		n.mu.Unlock()
		return
	}
	changed := false
	for p := range n.ready {
		op := n.running[p]
		r := op != nil && op.caughtUp.Load()
		if r != n.ready[p] {
			n.ready[p], changed = r, true
		}
	}
	meta := n.meta
	meta.Ready = bitmap(n.ready)
	n.mu.Unlock()
	if changed {
		if err := n.cl.UpdateMeta(meta); err != nil {
			n.log.Warn("cannot gossip the partitions served", "err", err)
		}
	}
}

func (n *node) stopAll() {
	n.mu.Lock()
	ops := make([]*ownedPartition, 0, len(n.running))
	for _, op := range n.running {
		op.cancel()
		ops = append(ops, op)
	}
	n.mu.Unlock()
	for _, op := range ops {
		<-op.done
	}
}

// ClusterStatus is GET /admin/v1/cluster.
type ClusterStatus struct {
	Node        string             `json:"node"`
	Replication int                `json:"replication"`
	Members     []MemberStatus     `json:"members"`
	Partitions  []PartitionStatus  `json:"partitions"`
	Bus         *bus.ClusterHealth `json:"nats,omitempty"`
	BusError    string             `json:"nats_error,omitempty"`
}

// MemberStatus is one member as gossip reports it.
type MemberStatus struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`
	State   string `json:"state"`
	API     string `json:"api"`
	Route   string `json:"route"`
	Version string `json:"version"`
	Serving int    `json:"partitions_serving"`
}

// PartitionStatus is one partition's owners and their lag.
type PartitionStatus struct {
	Partition int          `json:"partition"`
	Owners    []OwnerState `json:"owners"`
}

// OwnerState is one owner of a partition.
type OwnerState struct {
	Node    string `json:"node"`
	Serving bool   `json:"serving"`
	// Pending is how many messages of the partition the owner's consumer
	// has yet to store (replication lag), -1 when it has no consumer.
	Pending int64 `json:"pending"`
}

func (n *node) status(ctx context.Context) (any, error) {
	st := ClusterStatus{Node: n.name, Replication: n.r}
	all := n.cl.Members()
	var names []string
	for _, m := range all {
		ms := MemberStatus{Name: m.Name, Addr: m.Addr, State: m.State, API: m.Meta.API, Route: m.Meta.Route, Version: m.Meta.Version}
		for p := 0; p < n.parts; p++ {
			if n.serves(m, p) {
				ms.Serving++
			}
		}
		st.Members = append(st.Members, ms)
		if m.State == "alive" || m.State == "suspect" {
			names = append(names, m.Name)
		}
	}
	pending := map[string]int64{}
	if s, err := n.js.Stream(ctx, bus.StreamSeries); err == nil {
		lister := s.ListConsumers(ctx)
		for info := range lister.Info() {
			pending[info.Name] = int64(info.NumPending)
		}
	}
	byName := map[string]cluster.Member{}
	for _, m := range all {
		byName[m.Name] = m
	}
	for p := 0; p < n.parts; p++ {
		ps := PartitionStatus{Partition: p}
		for _, o := range ring.Owners(p, names, n.r) {
			lag := int64(-1)
			for name, v := range pending {
				if strings.HasPrefix(name, consumerPrefix(o, p)) {
					lag = max(lag, v)
				}
			}
			ps.Owners = append(ps.Owners, OwnerState{Node: o, Serving: n.serves(byName[o], p), Pending: lag})
		}
		st.Partitions = append(st.Partitions, ps)
	}
	if h, err := n.b.ClusterHealth(ctx); err != nil {
		st.BusError = err.Error()
	} else {
		st.Bus = &h
	}
	return st, nil
}
