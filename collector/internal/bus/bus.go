package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

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

	// DuplicateWindow is how long CS_RAW remembers a Nats-Msg-Id; an agent
	// resending a batch within it is acknowledged without storing a copy.
	DuplicateWindow = 2 * time.Minute
)

// Config is what the bus needs from the collector's configuration.
type Config struct {
	// Name is the server name; JetStream derives its identity from it, so
	// it must be stable across restarts.
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
}

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

// SeriesStreamConfig is the configuration of CS_SERIES.
func SeriesStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamSeries,
		Description: "decoded, enriched points by partition; replay source for a store owner",
		Subjects:    []string{SubjectSeries},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    1,
	}
}

// Bus is a running embedded server with its streams.
type Bus struct {
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slogLogger

	shutdownOnce sync.Once
}

// Start runs the server and returns once it accepts clients and the streams
// exist. ctx bounds the stream creation. A nil log discards.
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
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats server: %w", err)
	}
	logger := &slogLogger{log: log}
	// Trace would log every protocol message; it stays off.
	srv.SetLoggerV2(logger, opts.Debug, false, false)
	srv.Start()

	b := &Bus{srv: srv, log: logger}
	if err := b.waitReady(cfg.ReadyTimeout); err != nil {
		b.Shutdown()
		return nil, err
	}
	nc, err := nats.Connect(srv.ClientURL(),
		nats.InProcessServer(srv),
		nats.Name("citysense-collector-internal"),
		// The server is in this process: a lost connection means it is
		// shutting down, so reconnecting only delays the error.
		nats.NoReconnect(),
	)
	if err != nil {
		b.Shutdown()
		return nil, fmt.Errorf("connect in-process to nats server: %w", err)
	}
	b.nc = nc
	if b.js, err = jetstream.New(nc); err != nil {
		b.Shutdown()
		return nil, fmt.Errorf("jetstream client: %w", err)
	}
	for _, sc := range []jetstream.StreamConfig{RawStreamConfig(), SeriesStreamConfig()} {
		// CreateOrUpdateStream makes a restart with a changed
		// configuration converge instead of failing on "already exists".
		if _, err := b.js.CreateOrUpdateStream(ctx, sc); err != nil {
			b.Shutdown()
			return nil, fmt.Errorf("create stream %s: %w", sc.Name, err)
		}
	}
	log.Info("nats server ready", "name", cfg.Name, "url", srv.ClientURL(), "store_dir", filepath.Join(cfg.StoreDir, "jetstream"), "sync_always", cfg.SyncAlways)
	return b, nil
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
	return nil
}

// Shutdown closes the in-process connection and stops the server, returning
// once it has stopped. It is safe to call more than once.
func (b *Bus) Shutdown() {
	b.shutdownOnce.Do(func() {
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
type slogLogger struct {
	log *slog.Logger

	mu       sync.Mutex
	fatalErr error
}

func (l *slogLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *slogLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *slogLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *slogLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

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
