// Command citysense-agent collects city sensor readings at the edge, keeps
// them in a durable buffer and forwards them to a CitySense collector.
// See `citysense-agent help`.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/agent"
	"github.com/citysense/citysense/agent/internal/buffer"
	"github.com/citysense/citysense/agent/internal/config"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/internal/sdnotify"
	"github.com/citysense/citysense/protocols"
	_ "github.com/citysense/citysense/protocols/all"
	"github.com/citysense/citysense/protocols/modbus"
)

const program = "citysense-agent"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills at once, for an operator who cannot wait
	}()
	os.Exit(realMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs one command and returns the exit code; ctx ends on SIGINT
// or SIGTERM.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, synopsis)
		fmt.Fprintf(stderr, "Run '%s help' for the manual.\n", program)
		return cli.ExitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "inputs":
		return cmdInputs(rest, stdout, stderr)
	case "buffer":
		return cmdBuffer(rest, stdout, stderr)
	case "probe":
		return cmdProbe(ctx, rest, stdout, stderr)
	case "quarantine":
		return cmdQuarantine(ctx, rest, stdout, stderr)
	case "version", "--version":
		if len(rest) > 0 {
			return usageError(stderr, "version takes no arguments")
		}
		fmt.Fprint(stdout, cli.VersionText(program))
		return cli.ExitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, manual)
		return cli.ExitOK
	}
	if strings.HasPrefix(cmd, "-") {
		return usageError(stderr, "unknown flag %s before a command", cmd)
	}
	return usageError(stderr, "unknown command %q", cmd)
}

// cmdProbe reads a device directly and prints what it answers, so an
// installer can find the right register map before writing the config.
func cmdProbe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "modbus" {
		return usageError(stderr, "probe: want 'probe modbus --address tcp://HOST:502 [--unit N] [--kind holding|input|coil|discrete] [--start A] [--count N]'")
	}
	fs := flag.NewFlagSet("probe modbus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts modbus.ProbeOptions
	opts.RegisterFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cli.ExitOK
		}
		return cli.ExitUsage
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "probe modbus: unexpected argument %q", fs.Arg(0))
	}
	if err := modbus.Probe(ctx, stdout, opts); err != nil {
		fmt.Fprintf(stderr, "%s: probe modbus: %v\n", program, err)
		return cli.ExitError
	}
	return cli.ExitOK
}

func usageError(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", program, fmt.Sprintf(format, args...))
	fmt.Fprintf(stderr, "Run '%s help' for usage.\n", program)
	return cli.ExitUsage
}

// newFlags returns a flag set that reports errors through our own message
// and answers -h with the manual.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses flags; it returns an exit code and true when the command
// should stop there (help or a usage error).
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (int, bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, manual)
		return cli.ExitOK, true
	case err != nil:
		return usageError(stderr, "%s: %v", fs.Name(), err), true
	}
	return 0, false
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run")
	var path, dataDir, httpAddr, collector, id, level, format string
	fs.StringVar(&path, "c", "", "")
	fs.StringVar(&path, "config", "", "")
	fs.StringVar(&dataDir, "data-dir", "", "")
	fs.StringVar(&httpAddr, "http", "", "")
	fs.StringVar(&collector, "collector", "", "")
	fs.StringVar(&id, "id", "", "")
	fs.StringVar(&level, "log-level", "", "")
	fs.StringVar(&format, "log-format", "", "")
	if code, stop := parse(fs, args, stdout, stderr); stop {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "run: unexpected argument %q (the config file goes after -c)", fs.Arg(0))
	}

	// load reads the configuration and applies the command line over it;
	// SIGHUP calls it again.
	load := func() (*config.Config, int, error) {
		var cfg *config.Config
		if path == "" {
			cfg = config.Default()
		} else {
			var err error
			if cfg, err = config.Load(path); err != nil {
				if cfg != nil { // decodable: list the validation problems too
					err = joinProblems(err, cfg.Validate())
				}
				return nil, cli.ExitConfig, err
			}
		}
		// A flag given on the command line wins over the file, even when
		// empty (--http "" turns the HTTP server off).
		var bad error
		fs.Visit(func(f *flag.Flag) {
			v := f.Value.String()
			switch f.Name {
			case "data-dir":
				cfg.Agent.DataDir = v
			case "http":
				cfg.Agent.HTTP = v
			case "collector":
				if len(cfg.Outputs) == 0 {
					cfg.Outputs = []config.Output{{Type: "nats"}}
					cfg.Outputs[0].FillDefaults()
				}
				cfg.Outputs[0].URL = v
			case "id":
				if !config.ValidID(v) {
					bad = fmt.Errorf("run: --id %q: want 1 to 64 of A-Z a-z 0-9 _ - (it is a NATS subject token)", v)
				}
				cfg.Agent.ID = v
			case "log-level":
				cfg.Log.Level = v
			case "log-format":
				cfg.Log.Format = v
			}
		})
		if bad != nil {
			return nil, cli.ExitUsage, bad
		}
		if err := cfg.Validate(); err != nil {
			return nil, cli.ExitConfig, err
		}
		return cfg, 0, nil
	}
	cfg, code, err := load()
	switch {
	case code == cli.ExitUsage:
		return usageError(stderr, "%v", err)
	case err != nil:
		return configError(stderr, err)
	}
	log, err := cli.NewLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return configError(stderr, err)
	}
	// agent.memory_limit: a soft limit for the Go runtime; GOMEMLIMIT in
	// the environment wins.
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && cfg.Agent.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(cfg.Agent.MemoryLimit))
	}
	a, err := agent.New(*cfg, log)
	if err != nil {
		return configError(stderr, err)
	}
	log.Info(program+" "+cli.Version(), "config", cfg.File(), "id", cfg.Agent.ID, "collector", redactedCollector(cfg))

	// SIGHUP reloads the file. A file that does not load or validate is
	// logged and the running configuration stays.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if path == "" {
				log.Warn("SIGHUP: running the built-in configuration; nothing to reload")
				continue
			}
			log.Info("SIGHUP: reloading the configuration", "config", path)
			next, _, err := load()
			if err == nil {
				err = a.Reload(*next)
			}
			switch {
			case errors.Is(err, agent.ErrNeedsRestart):
				log.Warn("configuration reloaded in part", "err", err)
			case err != nil:
				log.Error("configuration not reloaded; the running one stays", "err", err)
			}
		}
	}()

	// Under systemd (Type=notify): READY=1, watchdog pings while the
	// agent's status still answers, STOPPING=1 on the signal.
	stopNotify := sdnotify.Start(ctx, log, func() bool { return a.Status().Ready != "not ready" })
	defer stopNotify()
	if err := a.Run(ctx); err != nil {
		log.Error(program+" failed", "err", err)
		return cli.ExitError
	}
	return cli.ExitOK
}

func redactedCollector(cfg *config.Config) string {
	if len(cfg.Outputs) == 0 {
		return ""
	}
	u := cfg.Outputs[0].URL
	if i := strings.LastIndex(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "…" + u[i:]
		}
	}
	return u
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check")
	var path string
	fs.StringVar(&path, "c", "", "")
	fs.StringVar(&path, "config", "", "")
	if code, stop := parse(fs, args, stdout, stderr); stop {
		return code
	}
	switch {
	case path == "" && fs.NArg() == 1:
		path = fs.Arg(0)
	case path == "" && fs.NArg() == 0:
		return usageError(stderr, "check: which file? Use check -c FILE")
	case fs.NArg() > 0:
		return usageError(stderr, "check: unexpected argument %q", fs.Arg(0))
	}

	// Report decoding and validation problems together: an operator fixing
	// a file wants the whole list, not one problem per run.
	cfg, err := config.Load(path)
	if cfg != nil {
		err = joinProblems(err, cfg.Validate())
	}
	if err != nil {
		return configError(stderr, err)
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return cli.ExitOK
}

// joinProblems merges the confx.Problems of errs into one list; an error
// that is not a list of problems (an unreadable file) is returned alone.
func joinProblems(errs ...error) error {
	var all confx.Problems
	for _, err := range errs {
		if err == nil {
			continue
		}
		var ps confx.Problems
		if !errors.As(err, &ps) {
			return err
		}
		all = append(all, ps...)
	}
	if len(all) == 0 {
		return nil
	}
	return all
}

// configError prints every problem, one per line, ordered by line, and
// returns the exit code for an invalid configuration.
func configError(stderr io.Writer, err error) int {
	var probs confx.Problems
	if errors.As(err, &probs) {
		sort.SliceStable(probs, func(i, j int) bool { return probs[i].Line < probs[j].Line })
		for _, p := range probs {
			fmt.Fprintln(stderr, p.Error())
		}
		return cli.ExitConfig
	}
	fmt.Fprintf(stderr, "%s: %v\n", program, err)
	return cli.ExitConfig
}

func cmdInputs(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("inputs")
	if code, stop := parse(fs, args, stdout, stderr); stop {
		return code
	}
	types := protocols.Types()
	if fs.NArg() > 1 {
		return usageError(stderr, "inputs: at most one input type")
	}
	if fs.NArg() == 1 {
		if _, ok := protocols.Lookup(fs.Arg(0)); !ok {
			return usageError(stderr, "inputs: unknown input type %q (known: %s)", fs.Arg(0), strings.Join(types, ", "))
		}
		types = []string{fs.Arg(0)}
	}
	for i, typ := range types {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		f, _ := protocols.Lookup(typ)
		fmt.Fprintf(stdout, "# %s\n", typ)
		if s, ok := f().(protocols.SampleConfig); ok {
			fmt.Fprint(stdout, s.SampleConfig())
		} else {
			fmt.Fprintf(stdout, "- type: %s\n", typ)
		}
	}
	return cli.ExitOK
}

func cmdBuffer(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "stats" && args[0] != "export") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, manual)
			return cli.ExitOK
		}
		return usageError(stderr, "buffer: want stats or export, e.g. buffer stats --data-dir /var/lib/citysense")
	}
	sub := args[0]
	fs := newFlags("buffer " + sub)
	var dataDir, path, output string
	var asJSON bool
	fs.StringVar(&dataDir, "data-dir", "", "")
	fs.StringVar(&path, "c", "", "")
	fs.StringVar(&path, "config", "", "")
	if sub == "stats" {
		fs.BoolVar(&asJSON, "json", false, "")
	} else {
		fs.StringVar(&output, "output", "", "")
	}
	if code, stop := parse(fs, args[1:], stdout, stderr); stop {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "buffer %s: unexpected argument %q", sub, fs.Arg(0))
	}
	var outputs []string
	statusURL := "http://127.0.0.1:9274/status"
	if path != "" {
		cfg, err := config.Load(path)
		if cfg == nil {
			return configError(stderr, err)
		}
		if dataDir == "" {
			dataDir = cfg.Agent.DataDir
		}
		for _, o := range cfg.Outputs {
			outputs = append(outputs, o.ID)
		}
		if cfg.Agent.HTTP != "" {
			statusURL = "http://" + cfg.Agent.HTTP + "/status"
		}
	}
	if dataDir == "" {
		return usageError(stderr, "buffer %s: which buffer? Give --data-dir DIR or -c FILE", sub)
	}
	b, problems, err := buffer.Inspect(dataDir, outputs...)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		if errors.Is(err, buffer.ErrLocked) {
			fmt.Fprintf(stderr, "%s: the agent is running; stop it first, or read %s\n", program, statusURL)
		}
		return cli.ExitError
	}
	defer b.Close()
	for _, p := range problems {
		fmt.Fprintf(stderr, "%s: unreadable, left as it is (the agent moves it to quarantine/ at its next start): %v\n", program, p)
	}
	if sub == "export" {
		w := bufio.NewWriterSize(stdout, 1<<16)
		batches, points, err := b.Export(w, output)
		if ferr := w.Flush(); err == nil {
			err = ferr
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: export: %v\n", program, err)
			return cli.ExitError
		}
		fmt.Fprintf(stderr, "%s: exported %d points in %d batches\n", program, points, batches)
		return cli.ExitOK
	}
	st := b.Stats()
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
		return cli.ExitOK
	}
	printStats(stdout, st, buffer.QuarantinedFiles(dataDir))
	return cli.ExitOK
}

// printStats writes buffer statistics for a person on site.
func printStats(w io.Writer, st buffer.Stats, quarantined []string) {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "buffer      %s\n", st.Dir)
	fmt.Fprintf(w, "bytes       %d (%.1f MiB on disk; %d of compressed data)\n", st.Bytes, float64(st.Bytes)/(1<<20), st.BodyBytes)
	fmt.Fprintf(w, "kept        %d points in %d batches\n", st.Points, st.Batches)
	fmt.Fprintf(w, "buffered    oldest %s, newest %s\n", ts(st.Oldest), ts(st.Newest))
	fmt.Fprintf(w, "readings    oldest %s, newest %s\n", ts(st.OldestPoint), ts(st.NewestPoint))
	fmt.Fprintf(w, "next batch  %d\n", st.NextSeq)
	ids := make([]string, 0, len(st.Outputs))
	for id := range st.Outputs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	fmt.Fprintf(w, "\n%-16s %12s %10s\n", "OUTPUT", "PENDING PTS", "BATCHES")
	for _, id := range ids {
		o := st.Outputs[id]
		fmt.Fprintf(w, "%-16s %12d %10d\n", id, o.PendingPoints, o.PendingBatches)
	}
	fmt.Fprintf(w, "%-16s %12d %10d   (kept for at least one output)\n", "(any)", st.Points, st.Batches)
	fmt.Fprintf(w, "\n%-30s %10s %10s %10s %9s  %-20s %-20s\n", "SEGMENT", "BYTES", "POINTS", "BATCHES", "SEALED", "OLDEST", "NEWEST")
	for _, s := range st.Segments {
		fmt.Fprintf(w, "%-30s %10d %10d %10d %9v  %-20s %-20s\n", s.File, s.Bytes, s.Points, s.Batches, s.Sealed, ts(s.Oldest), ts(s.Newest))
	}
	if len(quarantined) > 0 {
		fmt.Fprintf(w, "\nquarantine  %d files in %s\n", len(quarantined), filepath.Join(st.Dir, buffer.QuarantineName))
		for _, q := range quarantined {
			fmt.Fprintf(w, "  %s\n", q)
		}
	}
}

func init() {
	// Only main touches this process-wide switch: # HELP and # TYPE lines
	// let Prometheus tell counters from gauges.
	metrics.ExposeMetadata(true)
}

const synopsis = `Usage:
  citysense-agent run [-c FILE] [--data-dir DIR] [--http ADDR] [--collector URL]
                      [--id ID] [--log-level LEVEL] [--log-format FORMAT]
  citysense-agent check -c FILE
  citysense-agent inputs [TYPE]
  citysense-agent buffer stats (--data-dir DIR | -c FILE) [--json]
  citysense-agent buffer export (--data-dir DIR | -c FILE) [--output ID]
  citysense-agent quarantine list|show ID|purge (--data-dir DIR | -c FILE)
  citysense-agent version
  citysense-agent help
`

const manual = `NAME
    citysense-agent - collect city sensor readings at the edge and forward
    them to a CitySense collector

SYNOPSIS
    citysense-agent run [-c FILE] [--data-dir DIR] [--http ADDR]
                        [--collector URL] [--id ID]
                        [--log-level LEVEL] [--log-format FORMAT]
    citysense-agent check -c FILE
    citysense-agent inputs [TYPE]
    citysense-agent buffer stats (--data-dir DIR | -c FILE) [--json]
    citysense-agent buffer export (--data-dir DIR | -c FILE) [--output ID]
    citysense-agent quarantine list|show ID|purge (--data-dir DIR | -c FILE)
                        [--http ADDR] [--json] [--raw] [--before T]
    citysense-agent version
    citysense-agent help

DESCRIPTION
    The agent reads sensors through its inputs, passes the readings through
    its processors (filter, deadband, aggregate, ...), writes them to a
    durable buffer on disk (fsync'd before a reading counts as taken) and
    forwards the buffer to its outputs: the collector over NATS JetStream,
    or any InfluxDB-compatible write API. A batch leaves the buffer only
    after the destination stored it; a batch sent twice, after a lost
    acknowledgement or a crash, is dropped by the collector as a duplicate.
    While a destination is unreachable the agent keeps buffering and
    retries with growing, jittered pauses; when it is back, new readings go
    first and the backlog follows at outputs[].backfill_rate.

COMMANDS
    run      Run the agent until SIGINT or SIGTERM. Without -c it runs the
             built-in configuration: agent id from the host name (or
             agent-1), data in ./data/agent, HTTP on 127.0.0.1:9274, the
             collector at nats://127.0.0.1:4222 and one simulated input of
             10 stations reading every 10s.
    check    Load and validate a configuration file and print every problem
             as FILE:LINE: KEY: MESSAGE, or "FILE: ok".
    inputs   List the input types compiled in, each with an example
             configuration block; with TYPE, only that one.
    buffer stats
             Show the buffer of a stopped agent: segment files, bytes,
             points pending per output, oldest and newest reading, and the
             quarantine. --json prints the figures as JSON.
    buffer export
             Write the pending batches of a stopped agent to standard
             output as line protocol (nanosecond timestamps), oldest first:
             those output ID has not delivered with --output ID, else every
             batch kept. For carrying data off site by hand, e.g.
             citysense-agent buffer export -c agent.yaml | gzip > gw.lp.gz
             Both refuse, naming the process, while an agent holds the
             buffer.
    probe modbus --address URL [--unit N] [--kind KIND] [--start A] [--count N]
             Read a range of registers from a Modbus device and print each
             one raw and in every interpretation (uint16, int16, ASCII, and
             32- and 64-bit values in every byte and word order); a range
             the device refuses is read again register by register with the
             exception shown. URL is tcp://HOST:502, rtuovertcp://HOST:PORT
             or rtu:///dev/ttyUSB0?baud=9600&parity=N. The tool for finding
             the register map of a meter on site.
    quarantine list|show ID|purge [--before T]
             The payloads the inputs could not read, kept raw in
             DATA_DIR/quarantine.db (the newest 1000, at most 16 MiB; the
             oldest are evicted and counted). list shows one line per
             entry (--json: JSON); show ID prints where it came from, why
             it was refused and its exact bytes as a hex dump (--raw: the
             bytes alone, --json: JSON with base64); purge deletes every
             entry, or those older than T (RFC 3339, Unix seconds, or an
             age such as 24h). While an agent runs it holds the file, and
             the command asks it over its HTTP API instead (agent.http,
             loopback clients only; --http ADDR overrides).
    version  Print the version, commit, build date and platform.
    help     Print this manual (also -h, --help).

OPTIONS
    Options of run; each one given wins over the configuration file.

    -c, --config FILE
           Read the configuration from FILE (YAML). Unknown keys are
           errors; ${NAME} and ${NAME:-default} expand from the environment.
    --data-dir DIR
           Directory of the buffer (agent.data_dir).
    --http ADDR
           host:port for /healthz, /readyz, /status and /metrics
           (agent.http); an empty value turns the HTTP server off.
    --collector URL
           Collector's NATS URL, e.g. nats://collector.example:4222; several
           separated by commas (outputs[0].url).
    --id ID
           Agent id (agent.id): 1 to 64 of A-Z a-z 0-9 _ -. It names the
           subject cs.raw.ID and prefixes every batch id.
    --log-level LEVEL
           debug, info, warn or error (log.level).
    --log-format FORMAT
           auto, text or json (log.format); auto writes text to a terminal
           and JSON otherwise. Logs go to standard error.

    Options of check:

    -c, --config FILE
           The file to check; it may also be given as the only argument.

    Options of buffer stats and buffer export:

    --data-dir DIR
           The agent's data directory (agent.data_dir).
    -c, --config FILE
           Take the data directory from this configuration file.
    --json
           (stats) Print JSON.
    --output ID
           (export) Only what the output with this id has not delivered.

CONFIGURATION
    agent:      {id, data_dir, http, stuck_after: 10m}
    log:        {level, format}
    inputs:     a list of blocks, each with a type (see the inputs command)
                and optionally its own processors: list
    processors: a list of stages applied to every input after its own
                (filter, deadband, aggregate, tags, scale, rename)
    buffer:     {max_bytes: 256MiB, max_age: 0s, policy: drop_oldest,
                 segment_size: 16MiB, batch_points: 5000,
                 flush_interval: 10ms, flush_points: 50000,
                 compression: zstd}
    outputs:    blocks {type: nats, id, url, creds, tls, max_inflight: 64,
                 backfill_rate: 10000, timeout: 10s, reconnect_wait: 2s,
                 max_backoff: 30s} or {type: influx, id, url, api: v2,
                 org, bucket | database, retention_policy, token |
                 username, password, gzip: true, tls, ...}
    See docs/agent-operations.md for what each one does.

FILES
    /etc/citysense/agent.yaml
           Suggested place of the configuration file (pass it with -c).
    DATA_DIR/buffer/seg-<first batch>.db
           The durable buffer: bbolt segment files, sealed at
           buffer.segment_size and deleted once every output delivered
           them. DATA_DIR/buffer/LOCK keeps a second agent out.
    DATA_DIR/quarantine/
           Segments that could not be read at start, batches that failed
           their checksum and batches a destination refused for good, each
           with a .txt file saying why.
    DATA_DIR/state/
           State of deadband and aggregate processors across restarts.

HTTP
    GET /healthz   200 "ok" while the process runs.
    GET /readyz    200 "ok" while the outputs are connected and draining;
                   200 "degraded: buffering (...)" while one is away and
                   the buffer takes the readings; 503 "failing: ..." when
                   the buffer refuses writes or a connected output has
                   delivered nothing for agent.stuck_after; 503 before the
                   start and during the shutdown.
    GET /status    JSON: agent_id, points_read, points_buffered,
                   points_sent, batches_sent, buffer_pending_batches,
                   buffer_pending_points, inputs_done, ready,
                   points_dropped (by reason), buffer, inputs, outputs.
    GET /metrics   Prometheus text, citysense_agent_* and process metrics.

SIGNALS
    SIGINT, SIGTERM
           Stop the inputs, flush the processors into the buffer, let the
           outputs finish what is in flight (up to outputs[].timeout),
           close the buffer and exit 0. Readings still buffered are sent by
           the next run. A second signal exits at once.
    SIGHUP Read the configuration file again and apply it without losing
           buffered or in-flight data: unchanged inputs and outputs keep
           running, changed ones are restarted. A file with problems is
           logged and the running configuration stays. agent.id, data_dir,
           http and the buffer's layout need a restart.

EXIT STATUS
    0   Success; run stopped by a signal.
    1   The agent failed while running (see the log).
    2   Bad command line: unknown command or flag, missing argument.
    3   Invalid configuration; every problem is printed.

EXAMPLES
    Try it against a local collector, with simulated stations:
        citysense-agent run

    Run a gateway:
        citysense-agent run -c /etc/citysense/agent.yaml

    Same file, another collector and id, debug logs:
        citysense-agent run -c agent.yaml --collector nats://10.0.0.5:4222 \
            --id gw-017 --log-level debug

    Check a file before deploying it:
        citysense-agent check -c agent.yaml

    Show the simulator's options:
        citysense-agent inputs sim

    Watch the counters:
        curl -s http://127.0.0.1:9274/status

    Apply an edited configuration:
        citysense-agent check -c agent.yaml && systemctl reload citysense-agent

    See what a stopped gateway still holds:
        citysense-agent buffer stats -c /etc/citysense/agent.yaml
`
