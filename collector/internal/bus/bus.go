package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citysense/citysense/internal/cli"
)

// Stream and subject names shared with the agent (see docs/contracts-skeleton.md).
const (
	StreamRaw     = "CS_RAW"
	SubjectsRaw   = "cs.raw.>"
	StreamSeries  = "CS_SERIES"
	SubjectSeries = "cs.series.>"
	// SubjectSeriesPrefix is followed by the partition number.
	SubjectSeriesPrefix = "cs.series."
	// StreamQuarantine keeps what enrichment refused (schema violations
	// with action: quarantine), with the reason in a header, for an
	// operator to inspect. It is bounded: the oldest entries go first.
	StreamQuarantine   = "CS_QUARANTINE"
	SubjectsQuarantine = "cs.quarantine.>"

	// SeriesMaxAge bounds how long CS_SERIES keeps an enriched batch that
	// its consumers have not all acknowledged. The stream is the store's
	// write-ahead log with interest retention: a batch leaves as soon as
	// the store has it on disk (at most store.Options.MaxHold plus a
	// flush), so in steady state the stream holds minutes of data, not
	// days. The cap only matters when a store stops consuming for a day.
	SeriesMaxAge = 24 * time.Hour

	// DuplicateWindow is how long CS_RAW remembers a Nats-Msg-Id; an agent
	// resending a batch within it is acknowledged without storing a copy.
	DuplicateWindow = 2 * time.Minute
)

// Config is what the bus needs from the collector's configuration.
type Config struct {
	// Name is the server name; JetStream derives its identity from it, so
	// it must be stable across restarts, and in cluster mode unique among
	// the nodes (and set).
	Name string
	// StoreDir is the directory in which JetStream keeps its file store,
	// in a subdirectory jetstream/ that nats-server always appends; the
	// collector passes its data directory.
	StoreDir string
	// Listen is the client listener, host:port; port 0 picks a free one.
	Listen string
	// SyncAlways fsyncs every message before acknowledging it.
	SyncAlways bool
	// ReadyTimeout bounds the wait for the server to accept clients;
	// zero means 10s.
	ReadyTimeout time.Duration
	// TLS, when CertFile is set, makes the client listener require TLS.
	TLS TLSConfig
	// MQTTListen turns on nats-server's MQTT listener at host:port (port
	// 0 picks a free one); empty leaves it off.
	MQTTListen string
	// Credentials decide who may connect; nil means nobody is enrolled.
	Credentials Credentials
	// Cluster, when set, makes this server one node of a NATS cluster
	// with clustered JetStream (see ClusterConfig); nil is a single node
	// that configures no cluster at all.
	Cluster *ClusterConfig
}

// TLSConfig is the client listener's TLS.
type TLSConfig struct {
	CertFile, KeyFile string
	// CAFile is the bundle client certificates must chain to, used with
	// VerifyClients.
	CAFile        string
	VerifyClients bool
}

// devModeWarnEvery is how often a collector in development mode repeats
// its warning, so that it is in every stretch of log someone reads.
const devModeWarnEvery = 10 * time.Minute

// RawStreamConfig is the configuration of CS_RAW.
func RawStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamRaw,
		Description: "raw line-protocol batches from agents and writers, removed once ingested",
		Subjects:    []string{SubjectsRaw},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  DuplicateWindow,
		Replicas:    1,
	}
}

// SeriesStreamConfig is the configuration of CS_SERIES on a single node.
func SeriesStreamConfig() jetstream.StreamConfig { return SeriesStreamConfigFor(false, SeriesMaxAge) }

// SeriesStreamConfigFor is the configuration of CS_SERIES on a single node
// (cluster false: interest retention, a batch leaves once every consumer
// acknowledged it) or in a cluster (limits retention: a node that takes
// over a partition replays the stream, so it must keep what other owners
// acknowledged already, for maxAge). maxAge 0 means SeriesMaxAge.
func SeriesStreamConfigFor(cluster bool, maxAge time.Duration) jetstream.StreamConfig {
	if maxAge <= 0 {
		maxAge = SeriesMaxAge
	}
	retention := jetstream.InterestPolicy
	if cluster {
		retention = jetstream.LimitsPolicy
	}
	return jetstream.StreamConfig{
		Name:        StreamSeries,
		Description: "decoded, enriched points by partition; the store's write-ahead log",
		Subjects:    []string{SubjectSeries},
		Retention:   retention,
		Storage:     jetstream.FileStorage,
		MaxAge:      maxAge,
		// A raw batch processed twice (the collector stopped between
		// publishing its partitions and acknowledging it) publishes the
		// same <raw-id>-p<k> ids again; they are dropped here.
		Duplicates: DuplicateWindow,
		Replicas:   1,
	}
}

// QuarantineStreamConfig is the configuration of CS_QUARANTINE.
func QuarantineStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamQuarantine,
		Description: "points refused by enrichment, with the reason, kept for inspection",
		Subjects:    []string{SubjectsQuarantine},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxMsgs:     100_000,
		MaxBytes:    256 << 20,
		MaxAge:      14 * 24 * time.Hour,
		Discard:     jetstream.DiscardOld,
		Replicas:    1,
	}
}

// Bus is a running embedded server with its streams.
type Bus struct {
	srv     *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slogLogger
	auth    *authenticator
	metrics *busMetrics
	mqttURL string
	// cl is the cluster state; nil on a single node.
	cl *clusterState
	// clCancel ends the cluster goroutine's requests at Shutdown.
	clCancel context.CancelFunc

	stop         chan struct{} // closed by Shutdown: ends the background goroutine
	wg           sync.WaitGroup
	shutdownOnce sync.Once
}

// Start runs the server and returns once it accepts clients and, on a
// single node, the streams exist; ctx bounds that stream creation. In
// cluster mode it returns before the streams exist (they need a JetStream
// meta leader, hence a second node): use WaitReady or Ready. A nil log
// discards.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = cli.Discard()
	}
	log = log.With("component", "nats")
	if cfg.StoreDir == "" {
		// nats-server would fall back to a directory under /tmp.
		return nil, errors.New("start nats server: no store directory")
	}
	host, port, err := splitListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	creds := cfg.Credentials
	if creds == nil {
		creds = noCredentials{}
	}
	// The collector's own connection authenticates with a token that
	// exists only in this process, so it needs no file and no exception
	// in the authenticator that a client could also reach.
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("start nats server: internal token: %w", err)
	}
	internalToken := hex.EncodeToString(secret[:])
	authn := &authenticator{
		creds:         creds,
		internalToken: internalToken,
		loopbackOnly:  loopbackHost(host),
		log:           log,
		refusedLog:    limiter{every: 10 * time.Second},
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: cfg.SyncAlways,
		// The process's signals belong to main; the server must not
		// install its own handlers (its SIGINT handler calls os.Exit).
		NoSigs: true,
		Debug:  log.Enabled(ctx, slog.LevelDebug),
		// Every client, the collector's own included, goes through the
		// authenticator; the nonce lets NKey clients prove their key.
		CustomClientAuthentication: authn,
		AlwaysEnableNonce:          true,
	}
	if cfg.TLS.CertFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: cfg.TLS.CertFile,
			KeyFile:  cfg.TLS.KeyFile,
			CaFile:   cfg.TLS.CAFile,
			Verify:   cfg.TLS.VerifyClients,
			Timeout:  tlsTimeout.Seconds(),
		})
		if err != nil {
			return nil, fmt.Errorf("start nats server: tls: %w", err)
		}
		opts.TLS, opts.TLSConfig, opts.TLSVerify, opts.TLSTimeout = true, tc, cfg.TLS.VerifyClients, tlsTimeout.Seconds()
	}
	if cfg.MQTTListen != "" {
		mhost, mport, err := splitListen(cfg.MQTTListen)
		if err != nil {
			return nil, fmt.Errorf("mqtt: %w", err)
		}
		opts.MQTT.Host, opts.MQTT.Port = mhost, mport
		authn.loopbackOnly = authn.loopbackOnly && loopbackHost(mhost)
	}
	authn.metrics = newBusMetrics(authn.devMode)
	var cl *clusterState
	if cfg.Cluster != nil {
		if cl, err = prepareCluster(cfg, opts); err != nil {
			return nil, fmt.Errorf("start nats server: %w", err)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats server: %w", err)
	}
	logger := &slogLogger{log: log, violations: authn.metrics.violations, violationLog: limiter{every: 10 * time.Second}}
	// Trace would log every protocol message; it stays off.
	srv.SetLoggerV2(logger, opts.Debug, false, false)
	srv.Start()

	b := &Bus{srv: srv, log: logger, auth: authn, metrics: authn.metrics, cl: cl, stop: make(chan struct{})}
	if err := b.waitReady(cfg.ReadyTimeout); err != nil {
		b.Shutdown()
		return nil, err
	}
	if cfg.MQTTListen != "" {
		// The server wrote the bound port into opts before it reported
		// ready (under its lock, which ReadyForConnections takes too).
		b.mqttURL = "mqtt://" + net.JoinHostPort(opts.MQTT.Host, strconv.Itoa(opts.MQTT.Port))
	}
	// The URL only names the server: the connection is a pipe, never TLS.
	copts := []nats.Option{
		nats.InProcessServer(srv),
		nats.Name("citysense-collector-internal"),
		nats.Token(internalToken),
		nats.CustomInboxPrefix(internalInboxPrefix),
		// A single server is in this process: a lost connection means it
		// is shutting down, so reconnecting only delays the error.
		nats.NoReconnect(),
	}
	if cl != nil {
		// In cluster mode AddRoutes reloads the server's options, and
		// nats-server closes every client a CustomClientAuthentication
		// accepted at each reload (it cannot find them among its
		// configured users). This connection comes straight back; the
		// consumers of nats.go and jetstream resubscribe on their own.
		copts[len(copts)-1] = nats.MaxReconnects(-1)
		copts = append(copts, nats.ReconnectWait(internalReconnectWait), nats.ReconnectJitter(0, 0))
	}
	nc, err := nats.Connect("nats://"+srv.Addr().String(), copts...)
	if err != nil {
		b.Shutdown()
		return nil, fmt.Errorf("connect in-process to nats server: %w", err)
	}
	b.nc = nc
	if b.js, err = jetstream.New(nc); err != nil {
		b.Shutdown()
		return nil, fmt.Errorf("jetstream client: %w", err)
	}
	if cl == nil {
		for _, sc := range []jetstream.StreamConfig{RawStreamConfig(), SeriesStreamConfig(), QuarantineStreamConfig()} {
			// CreateOrUpdateStream makes a restart with a changed
			// configuration converge instead of failing on "already exists".
			if _, err := b.js.CreateOrUpdateStream(ctx, sc); err != nil {
				b.Shutdown()
				return nil, fmt.Errorf("create stream %s: %w", sc.Name, err)
			}
		}
	} else {
		// A cluster node cannot wait for its streams here: JetStream
		// answers only once a meta leader is elected, which needs a
		// second node. The cluster goroutine creates them; Ready and
		// WaitReady report when they exist.
		if err := writePeersFile(cl.peersFile, cl.routes); err != nil {
			b.Shutdown()
			return nil, fmt.Errorf("cluster peers file: %w", err)
		}
		b.metrics.clusterGauges(b)
		var cctx context.Context
		cctx, b.clCancel = context.WithCancel(context.Background())
		b.wg.Add(1)
		go b.runCluster(cctx)
		log.Info("nats cluster mode", "cluster", cl.name, "route_url", cl.self, "routes", cl.routes, "peers_file", cl.peersFile)
	}
	log.Info("nats server ready", "name", cfg.Name, "url", srv.ClientURL(), "store_dir", filepath.Join(cfg.StoreDir, "jetstream"),
		"sync_always", cfg.SyncAlways, "tls", cfg.TLS.CertFile != "", "verify_clients", cfg.TLS.VerifyClients)
	if cfg.MQTTListen != "" {
		log.Warn("MQTT listener on: best effort only. A device's QoS 1 PUBACK means the message reached the server's own MQTT stream, "+
			"not CS_RAW; if CS_RAW is full or unavailable the message is dropped without a trace. Devices that need the durability "+
			"promise publish through an agent or the Influx write API.", "mqtt", b.MQTTURL())
	}
	b.auth.dev.Store(b.auth.devMode())
	if b.auth.dev.Load() {
		b.warnDevMode()
	} else {
		log.Info("nats: credentials required", "enrolled_agents", creds.ActiveAgents(), "loopback_only", authn.loopbackOnly)
	}
	b.wg.Add(1)
	go b.remindDevMode()
	return b, nil
}

// internalReconnectWait is the pause before the in-process connection of
// a cluster node reconnects after a reload closed it.
const internalReconnectWait = 20 * time.Millisecond

// tlsTimeout bounds a client's TLS handshake; nats-server's default of
// half a second is short for a gateway on a mobile uplink.
const tlsTimeout = 5 * time.Second

func (b *Bus) warnDevMode() {
	b.log.log.Warn("DEVELOPMENT MODE: agents and devices connect WITHOUT credentials. This collector listens on loopback only and " +
		"has no enrolled agent. Enroll one (citysense-collector agent add <id>) and credentials become required for everyone.")
}

// remindDevMode repeats the development-mode warning while it lasts.
func (b *Bus) remindDevMode() {
	defer b.wg.Done()
	t := time.NewTicker(devModeWarnEvery)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			if b.auth.devMode() {
				b.warnDevMode()
			}
		}
	}
}

// DevMode reports whether the bus accepts clients without credentials
// (see the package documentation).
func (b *Bus) DevMode() bool { return b.auth.devMode() }

// Metrics is the bus's metrics set:
//
//   - citysense_bus_auth_failures_total{reason}: connections refused, by
//     reason (no_credentials, unknown_key, bad_signature, bad_token, unsupported)
//   - citysense_bus_permission_violations_total: publishes and
//     subscriptions refused to connected clients (an agent publishing to
//     another agent's subject)
//   - citysense_bus_connections_accepted_total{kind}: agent, token, anonymous
//   - citysense_bus_dev_mode: 1 while clients may connect without credentials
//
// and in cluster mode:
//
//   - citysense_bus_routes_added_total: routes AddRoutes added
//   - citysense_bus_routes_configured: peers this server dials explicitly
//   - citysense_bus_routes_connected: servers a route is connected to now
//   - citysense_bus_stream_replicas: the replicas in effect (smallest over
//     the streams; 0 until they exist)
//   - citysense_bus_jetstream_meta_leader: 1 while JetStream has a meta leader
func (b *Bus) Metrics() *metrics.Set { return b.metrics.set }

// MQTTURL is the MQTT listener's URL with the port actually bound, or ""
// when it is off.
func (b *Bus) MQTTURL() string { return b.mqttURL }

// Revalidate closes the connections whose credentials no longer hold:
// revoked agents and tokens, and unauthenticated clients once development
// mode has ended. Call it after the credentials changed; new connections
// are always checked against the current credentials.
func (b *Bus) Revalidate() {
	dev := b.auth.devMode()
	if was := b.auth.dev.Swap(dev); was != dev {
		if dev {
			b.warnDevMode()
		} else {
			b.log.log.Warn("development mode ended: credentials are now required; closing unauthenticated connections")
		}
	}
	type victim struct {
		cid            uint64
		user, why, who string
	}
	var victims []victim
	const page = 1024
	for offset := 0; ; offset += page {
		cz, err := b.srv.Connz(&server.ConnzOptions{State: server.ConnOpen, Username: true, Offset: offset, Limit: page})
		if err != nil {
			b.log.log.Warn("nats: cannot list connections to revalidate them", "err", err)
			return
		}
		for _, ci := range cz.Conns {
			if why := b.auth.stillValid(ci.AuthorizedUser); why != "" {
				victims = append(victims, victim{ci.Cid, ci.AuthorizedUser, why, net.JoinHostPort(ci.IP, strconv.Itoa(ci.Port))})
			}
		}
		if len(cz.Conns) < page {
			break
		}
	}
	// Closed after listing, so that closing does not shift the pages.
	for _, v := range victims {
		if err := b.srv.DisconnectClientByID(v.cid); err != nil {
			continue // already gone
		}
		b.log.log.Info("nats: connection closed", "reason", v.why, "user", v.user, "remote", v.who)
	}
}

// waitReady polls in short steps so that a fatal error (port in use, store
// directory not writable) ends the wait at once instead of after the
// timeout.
func (b *Bus) waitReady(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		if err := b.log.fatal(); err != nil {
			return fmt.Errorf("start nats server: %w", err)
		}
		if b.srv.ReadyForConnections(50 * time.Millisecond) {
			if !b.srv.JetStreamEnabled() {
				return errors.New("start nats server: jetstream did not start")
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("start nats server: not ready after %v", timeout)
		}
	}
}

// splitListen turns host:port into nats-server options, where port 0 means
// the default 4222 and -1 a random port.
func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("nats listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("nats listen address %q: bad port", addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// Conn is the in-process client connection. It stays open until Shutdown.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream is a JetStream client on Conn.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Publish stores one message on the stream that takes subject, with
// Nats-Msg-Id msgID, and returns once JetStream acknowledged it (a
// duplicate within the window is acknowledged without a second copy). The
// data may be reused after it returns. It is safe for concurrent use.
func (b *Bus) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	msg := nats.NewMsg(subject)
	if msgID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	msg.Data = data
	if _, err := b.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
	}
	return nil
}

// ClientURL is the URL agents connect to, with the port actually bound.
func (b *Bus) ClientURL() string { return b.srv.ClientURL() }

// Ready reports why the bus cannot take batches, or nil when it can.
func (b *Bus) Ready() error {
	if err := b.log.fatal(); err != nil {
		return fmt.Errorf("nats server failed: %w", err)
	}
	if !b.srv.Running() {
		return errors.New("nats server is not running")
	}
	if !b.srv.JetStreamEnabled() {
		return errors.New("jetstream is not enabled")
	}
	if b.nc == nil || !b.nc.IsConnected() {
		return errors.New("in-process nats connection is down")
	}
	if b.cl != nil {
		return b.clusterReady()
	}
	return nil
}

// Shutdown closes the in-process connection and stops the server, returning
// once it has stopped. It is safe to call more than once.
func (b *Bus) Shutdown() {
	b.shutdownOnce.Do(func() {
		close(b.stop)
		if b.clCancel != nil {
			b.clCancel()
		}
		b.wg.Wait()
		if b.nc != nil {
			b.nc.Close()
		}
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.log.log.Info("nats server stopped")
	})
}

// slogLogger adapts nats-server's Logger to slog. It must never exit the
// process: an embedded server's Fatalf (a listener that cannot bind,
// JetStream that cannot start) is logged at error and recorded, and Start
// and Ready report it.
//
// nats-server has no hook for permission violations; it logs them, so the
// adapter recognises those lines, counts them and rate-limits them.
type slogLogger struct {
	log *slog.Logger
	// violations counts permission violations; nil counts nothing.
	violations   *metrics.Counter
	violationLog limiter

	mu       sync.Mutex
	fatalErr error
}

func (l *slogLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *slogLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *slogLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

func (l *slogLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	switch {
	case strings.Contains(msg, "Publish Violation - ") || strings.Contains(msg, "Subscription Violation - ") ||
		strings.Contains(msg, "Subscription Violation Too Many Tokens - "):
		if l.violations != nil {
			l.violations.Inc()
		}
		if ok, suppressed := l.violationLog.allow(time.Now()); ok {
			l.log.Warn("nats: permission violation: "+msg, "suppressed", suppressed)
		}
	case strings.HasSuffix(msg, " - authentication error") || strings.Contains(msg, " - authentication error - "):
		// The authenticator counted and logged the refusal, rate-limited
		// and with its reason; one error line per attempt would let a
		// client flood the log.
		l.log.Debug(msg)
	default:
		l.log.Error(msg)
	}
}

// Tracef logs below debug; slog has no trace level.
func (l *slogLogger) Tracef(format string, v ...any) {
	l.log.Log(context.Background(), slog.LevelDebug-4, fmt.Sprintf(format, v...))
}

func (l *slogLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg, "fatal", true)
	l.mu.Lock()
	if l.fatalErr == nil {
		l.fatalErr = errors.New(msg)
	}
	l.mu.Unlock()
}

func (l *slogLogger) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatalErr
}

// Interface guards.
var _ server.Logger = (*slogLogger)(nil)
