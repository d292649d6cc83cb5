package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/collector/internal/api"
	"github.com/citysense/citysense/collector/internal/auth"
	"github.com/citysense/citysense/collector/internal/bus"
	"github.com/citysense/citysense/collector/internal/cluster"
	"github.com/citysense/citysense/collector/internal/config"
	"github.com/citysense/citysense/collector/internal/fanout"
	"github.com/citysense/citysense/collector/internal/ingest"
	"github.com/citysense/citysense/collector/internal/portal"
	"github.com/citysense/citysense/collector/internal/sta"
	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/enrich/schema"
	"github.com/citysense/citysense/enrich/units"
	"github.com/citysense/citysense/internal/cli"
)

// shutdownTimeout bounds how long in-flight HTTP requests may take to finish
// after the collector was asked to stop.
const shutdownTimeout = 10 * time.Second

// credsPollInterval is how soon a change to agents.json or tokens.json
// made by the CLI takes effect in a running collector.
const credsPollInterval = time.Second

// Collector is one collector node.
type Collector struct {
	cfg config.Config
	log *slog.Logger

	chain      *enrich.Chain
	enrichSet  *metrics.Set
	quarantine *quarantine

	started  chan struct{}
	httpAddr string
	natsURL  string
	mqttURL  string
}

// New checks cfg and prepares a collector without doing I/O. A nil log
// discards. An invalid cfg gives a confx.Problems error.
func New(cfg config.Config, log *slog.Logger) (*Collector, error) {
	if log == nil {
		log = cli.Discard()
	}
	if probs := cfg.Validate(nil); len(probs) > 0 {
		return nil, probs
	}
	c := &Collector{cfg: cfg, log: log, started: make(chan struct{}), enrichSet: metrics.NewSet()}
	c.quarantine = newQuarantine(log, c.enrichSet)
	// The chain is built here, not in Run, so that `check` finds every
	// problem of the enrich blocks and the files they name (stations,
	// districts) without starting anything.
	chain, err := enrich.Build(cfg.Doc(), cfg.Enrich, "enrich", enrich.Env{
		Dir:        cfg.Dir(),
		Log:        log,
		Metrics:    c.enrichSet,
		Quarantine: c.quarantine,
	})
	if err != nil {
		return nil, err
	}
	c.chain = chain
	return c, nil
}

// Check builds everything New builds from cfg, to report configuration
// problems (with file:line) without running anything.
func Check(cfg config.Config) error {
	_, err := New(cfg, nil)
	return err
}

// Started is closed once Run has every part running; HTTPAddr and NATSURL
// are valid from then on.
func (c *Collector) Started() <-chan struct{} { return c.started }

// HTTPAddr is the address the HTTP server listens on (with the port
// actually bound when the configured one was 0).
func (c *Collector) HTTPAddr() string { return c.httpAddr }

// NATSURL is the URL agents publish to.
func (c *Collector) NATSURL() string { return c.natsURL }

// MQTTURL is the MQTT listener's URL, or "" when it is off.
func (c *Collector) MQTTURL() string { return c.mqttURL }

// Run runs the collector until ctx is cancelled and returns nil after a
// clean shutdown. It returns an error when a part cannot start or stops on
// its own; the parts already started are shut down first. Run may be
// called once.
func (c *Collector) Run(ctx context.Context) (err error) {
	cfg := c.cfg
	// Registered first, so it runs last: after the bus and the store.
	defer func() {
		if err == nil {
			c.log.Info("collector stopped")
		}
	}()
	defer startPprof(c.log)()
	if err := os.MkdirAll(cfg.Node.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data directory %q: %w", cfg.Node.DataDir, err)
	}

	// Agents and tokens, shared through their files with the CLI.
	creds, err := auth.Open(cfg.Node.DataDir, c.log)
	if err != nil {
		return err
	}

	// Deferred in reverse: the bus stops before the store closes.
	sopts := store.DefaultOptions()
	sopts.Log = c.log
	sopts.Retention = store.Retention{
		Raw:    cfg.Store.Retention.Raw.D(),
		Minute: cfg.Store.Retention.Minute.D(),
		Hour:   cfg.Store.Retention.Hour.D(),
	}
	sopts.BlockCacheBytes = int(cfg.Store.Cache)
	st, err := store.OpenDir(filepath.Join(cfg.Node.DataDir, "store"), sopts)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	// In a cluster, membership comes first: the NATS server starts with
	// routes to the members a seed leads to.
	var (
		cl         *cluster.Cluster
		clKey      []byte
		clMeta     cluster.Meta
		peerRoutes []string
		busCluster *bus.ClusterConfig
	)
	if cfg.Cluster != nil {
		if clKey, err = cfg.Cluster.ClusterKey(); err != nil {
			return err
		}
		cl, clMeta, peerRoutes, err = startMembership(ctx, cfg, clKey, c.log)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		// Leaving is the last thing the node does after the bus and the
		// store stopped; Run's own defer below leaves earlier on a clean
		// stop.
		defer cl.Shutdown()
		host, _, _ := clusterAddrs(cfg)
		_, rport, _ := net.SplitHostPort(cfg.Cluster.Routes)
		busCluster = &bus.ClusterConfig{
			Name:         cfg.Cluster.Name,
			Listen:       cfg.Cluster.Routes,
			Advertise:    net.JoinHostPort(host, rport),
			Routes:       peerRoutes,
			Secret:       clKey,
			SeriesMaxAge: cfg.Cluster.SeriesRetention.D(),
			TLS: bus.TLSConfig{
				CertFile: cfg.Cluster.TLS.Cert,
				KeyFile:  cfg.Cluster.TLS.Key,
				CAFile:   cfg.Cluster.TLS.CA,
			},
		}
	}

	b, err := bus.Start(ctx, bus.Config{
		Name:       cfg.Node.Name,
		StoreDir:   cfg.Node.DataDir,
		Listen:     cfg.NATS.Listen,
		SyncAlways: cfg.NATS.SyncAlways,
		TLS: bus.TLSConfig{
			CertFile:      cfg.NATS.TLS.Cert,
			KeyFile:       cfg.NATS.TLS.Key,
			CAFile:        cfg.NATS.TLS.CA,
			VerifyClients: cfg.NATS.TLS.VerifyClients,
		},
		MQTTListen:  cfg.MQTT.Listen,
		Credentials: creds,
		Cluster:     busCluster,
	}, c.log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // asked to stop while starting: not a failure
		}
		return err
	}
	defer b.Shutdown()

	// Changes to the credentials (from the CLI, or the admin API) close
	// the connections they invalidate. Stopped before the bus.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		creds.Watch(watchCtx, credsPollInterval, b.Revalidate)
	}()
	defer func() { stopWatch(); <-watchDone }()

	c.quarantine.attach(b.JetStream())

	// Two stages, each a durable consumer that acknowledges only what the
	// next step made durable: CS_RAW → enrich → CS_SERIES, CS_SERIES → store.
	//
	// Partitions are what cluster nodes own and replay. A single node
	// stores them all through one consumer, so it publishes each batch as
	// one message (on cs.series.0): splitting it in ingest.partitions
	// messages cost a quarter of the ingest CPU in per-message work
	// (JetStream's store and dedupe, acks, headers, a wire string table
	// each) and 20 MiB of peak memory, for nothing.
	parts := cfg.Ingest.Partitions
	if cl == nil {
		parts = 1
	}
	series, err := ingest.NewSeriesPublisher(b.JetStream(), c.chain, ingest.SeriesConfig{
		SubjectPrefix: bus.SubjectSeriesPrefix,
		Partitions:    parts,
		// The write API refuses such points with a 400 already; agents'
		// batches meet the same limits here, and their refused points are
		// kept in the quarantine since no one is waiting for an answer.
		Limits: ingest.Limits{
			MaxPast:   cfg.MaxPast(),
			MaxFuture: cfg.Ingest.MaxFuture.D(),
			MaxTags:   cfg.Ingest.MaxTags,
			MaxFields: cfg.Ingest.MaxFields,
		},
		Quarantine: c.quarantine,
	}, c.log)
	if err != nil {
		return err
	}
	rawIn, err := ingest.New(b.JetStream(), series, ingest.Config{
		Stream:     bus.StreamRaw,
		Durable:    "enrich",
		Batch:      cfg.Ingest.Batch,
		AckWait:    cfg.Ingest.AckWait.D(),
		RetryDelay: cfg.Ingest.RetryDelay.D(),
	}, c.log)
	if err != nil {
		return err
	}
	// The store holds points in its head for up to MaxHold before they are
	// written: it acknowledges CS_SERIES only then, and its AckWait keeps
	// JetStream from redelivering what is merely waiting in the head.
	storeCfg := ingest.Config{
		Stream:     bus.StreamSeries,
		Durable:    "store",
		TrustWire:  true, // only the enrich stage publishes to CS_SERIES
		Batch:      cfg.Ingest.Batch,
		AckWait:    max(cfg.Ingest.AckWait.D(), sopts.AckWait()),
		RetryDelay: cfg.Ingest.RetryDelay.D(),
	}
	// A single node consumes all of CS_SERIES; a cluster node the
	// partitions it owns, each with a consumer of its own.
	var (
		storeIn *ingest.Ingester
		nd      *node
		reader  interface {
			api.Store
			sta.Store
		} = st
		metricSets []*metrics.Set
	)
	if cl == nil {
		if storeIn, err = ingest.New(b.JetStream(), ingest.DeferredPoints(st), storeCfg, c.log); err != nil {
			return err
		}
		metricSets = []*metrics.Set{rawIn.Metrics(), series.Metrics(), storeIn.Metrics()}
	} else {
		if nd, err = newNode(cfg, clKey, clMeta, cl, b, st, storeCfg, c.log); err != nil {
			return err
		}
		src := fanout.NewSource(nd.fan)
		reader = src
		metricSets = []*metrics.Set{rawIn.Metrics(), series.Metrics(), nd.set, src.Metrics(), cl.Metrics()}
	}

	// Bind before starting ingest, so that a busy port fails the start
	// with nothing yet running in the background.
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http listen %q: %w", cfg.HTTP.Listen, err)
	}
	apiOpts := api.Options{
		Store:       reader,
		Ready:       b.Ready,
		Metrics:     append(metricSets, st.Metrics(), c.enrichSet, b.Metrics()),
		Credentials: creds,
		// Written batches go straight to the enrich stage and CS_SERIES.
		Bus: series,
		Write: api.WriteLimits{
			MaxBody:   int64(cfg.HTTP.MaxBody),
			MaxPast:   cfg.MaxPast(),
			MaxFuture: cfg.Ingest.MaxFuture.D(),
			MaxTags:   cfg.Ingest.MaxTags,
			MaxFields: cfg.Ingest.MaxFields,
		},
		Contracts: func() any { return schema.ContractsOf(c.chain) },
	}
	if c.chain.Stations() != nil {
		apiOpts.Registry = registryView{c.chain}
	}
	apiOpts.Live = liveSource{nc: b.Conn(), log: c.log}
	apiOpts.ArchiveDir = filepath.Join(cfg.Node.DataDir, "archive")
	pc := cfg.HTTP.Portal
	apiOpts.Portal = portal.Options{TileURL: pc.TileURL, TileAttribution: pc.TileAttribution,
		Licence: pc.Licence, LicenceURL: pc.LicenceURL, Attribution: pc.Attribution}
	if apiOpts.Districts, apiOpts.DistrictProperty, err = districtsFile(c.chain, cfg.Dir()); err != nil {
		ln.Close()
		return err
	}
	if nd != nil {
		apiOpts.Internal = fanout.NewHandler(nd.fan)
		apiOpts.LocalStore = st
		apiOpts.ClusterStatus = nd.status
	}
	staOpts := sta.Options{Store: reader, PublicURL: cfg.HTTP.PublicURL,
		Contracts: func() []schema.Contract { return schema.ContractsOf(c.chain) },
		Units: func() []units.Rule {
			if u, ok := enrich.Find[*units.Units](c.chain); ok {
				return u.Convert
			}
			return nil
		},
	}
	if apiOpts.Registry != nil {
		staOpts.Registry = registryView{c.chain}
	}
	apiOpts.STA = sta.New(staOpts, c.log)
	handler := api.New(apiOpts, c.log)
	srv := api.NewServer(handler, c.log)
	// The bulk archive reads the store: it stops before the store closes.
	archiveCtx, stopArchive := context.WithCancel(context.Background())
	archiveDone := make(chan struct{})
	go func() { defer close(archiveDone); handler.RunArchive(archiveCtx) }()
	defer func() { stopArchive(); <-archiveDone }()

	// Ingest gets its own context: it must keep running while HTTP drains
	// and stop only after, in the order Run documents.
	ingestCtx, stopIngest := context.WithCancel(context.Background())
	defer stopIngest()
	ingestDone := make(chan error, 2)
	// CS_SERIES keeps a message only while a consumer has yet to
	// acknowledge it: the store's consumer must exist before the first
	// enriched batch is published, or that batch would be kept for no one.
	ingestRunning := 0
	if storeIn != nil {
		go func() { ingestDone <- storeIn.Run(ingestCtx) }()
		ingestRunning++
		select {
		case <-storeIn.ConsumerReady():
		case err := <-ingestDone:
			stopIngest()
			ln.Close()
			return fmt.Errorf("ingest stopped: %w", orUnexpected(err))
		case <-ctx.Done():
			stopIngest()
			ln.Close()
			return <-ingestDone
		}
	}
	// In a cluster CS_SERIES keeps messages by age, not by interest: the
	// partition consumers may come later. The streams exist only once
	// JetStream has a meta leader, which a first node started alone gets
	// when a second joins: ingest waits for it, HTTP does not.
	go func() {
		if cl != nil {
			if err := b.WaitReady(ingestCtx); err != nil {
				ingestDone <- nil // stopped while waiting
				return
			}
		}
		ingestDone <- rawIn.Run(ingestCtx)
	}()
	ingestRunning++
	nodeDone := make(chan struct{})
	if nd != nil {
		go func() { defer close(nodeDone); nd.run(ingestCtx) }()
	} else {
		close(nodeDone)
	}
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(ln) }()

	c.httpAddr, c.natsURL, c.mqttURL = ln.Addr().String(), b.ClientURL(), b.MQTTURL()
	close(c.started)
	c.log.Info("collector started", "node", cfg.Node.Name, "http", c.httpAddr, "nats", c.natsURL, "mqtt", c.mqttURL,
		"data_dir", cfg.Node.DataDir, "dev_mode", b.DevMode())

	var runErr error
	httpStopped := false
	select {
	case <-ctx.Done():
		c.log.Info("collector stopping")
	case err := <-ingestDone:
		ingestRunning--
		runErr = fmt.Errorf("ingest stopped: %w", orUnexpected(err))
	case err := <-httpDone:
		httpStopped = true
		runErr = fmt.Errorf("http server stopped: %w", orUnexpected(err))
	}

	if nd != nil {
		// Queries go to the other owners from now on.
		nd.prepareStop()
	}
	if !httpStopped {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := srv.Shutdown(sctx); err != nil {
			c.log.Warn("http shutdown timed out, closing connections", "err", err)
			srv.Close()
		}
		cancel()
		if err := <-httpDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			runErr = errors.Join(runErr, fmt.Errorf("http server: %w", err))
		}
	}
	stopIngest()
	for ; ingestRunning > 0; ingestRunning-- {
		if err := <-ingestDone; err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	<-nodeDone
	if cl != nil {
		// Tell the others before the NATS server goes, so that they take
		// over at once instead of waiting for the failure detector.
		if err := cl.Leave(5 * time.Second); err != nil {
			c.log.Warn("cluster leave", "err", err)
		}
	}
	// The deferred calls stop the bus, then close the store.
	return runErr
}

func orUnexpected(err error) error {
	if err == nil {
		return errors.New("unexpectedly")
	}
	return err
}

// registryView is the chain's station registry and privacy rule as the
// public API reads them.
type registryView struct{ c *enrich.Chain }

func (r registryView) All() []enrich.Station { return r.c.Stations().All() }
func (r registryView) PublicLocation(st enrich.Station) (float64, float64, bool) {
	return r.c.PublicLocation(st)
}

// Interface guards: the store and the credentials are what ingest, the
// API and the bus expect.
var (
	_ ingest.Writer   = (*store.Store)(nil)
	_ api.Store       = (*store.Store)(nil)
	_ api.Credentials = (*auth.Credentials)(nil)
	_ bus.Credentials = (*auth.Credentials)(nil)
	_ api.Publisher   = (*ingest.SeriesPublisher)(nil)
	_ api.Registry    = registryView{}
	_ ingest.Enricher = (*enrich.Chain)(nil)
)
