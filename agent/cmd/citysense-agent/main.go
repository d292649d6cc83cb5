// Command citysense-agent collects city sensor readings at the edge, keeps
// them in a durable buffer and forwards them to a CitySense collector.
// See `citysense-agent help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/agent"
	"github.com/citysense/citysense/agent/internal/config"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
	_ "github.com/citysense/citysense/protocols/all"
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

	var cfg *config.Config
	if path == "" {
		cfg = config.Default()
	} else {
		var err error
		if cfg, err = config.Load(path); err != nil {
			if cfg != nil { // decodable: list the validation problems too
				err = joinProblems(err, cfg.Validate())
			}
			return configError(stderr, err)
		}
	}
	// A flag given on the command line wins over the file, even when empty
	// (--http "" turns the HTTP server off).
	var bad bool
	fs.Visit(func(f *flag.Flag) {
		v := f.Value.String()
		switch f.Name {
		case "data-dir":
			cfg.Agent.DataDir = v
		case "http":
			cfg.Agent.HTTP = v
		case "collector":
			if len(cfg.Outputs) == 0 {
				cfg.Outputs = []config.Output{{Type: "nats", BatchPoints: config.DefaultBatchPoints, Timeout: confx.Duration(config.DefaultTimeout)}}
			}
			cfg.Outputs[0].URL = v
		case "id":
			if !config.ValidID(v) {
				usageError(stderr, "run: --id %q: want 1 to 64 of A-Z a-z 0-9 _ - (it is a NATS subject token)", v)
				bad = true
			}
			cfg.Agent.ID = v
		case "log-level":
			cfg.Log.Level = v
		case "log-format":
			cfg.Log.Format = v
		}
	})
	if bad {
		return cli.ExitUsage
	}
	if err := cfg.Validate(); err != nil {
		return configError(stderr, err)
	}
	log, err := cli.NewLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return configError(stderr, err)
	}
	a, err := agent.New(*cfg, log)
	if err != nil {
		return configError(stderr, err)
	}
	log.Info(program+" "+cli.Version(), "config", cfg.File(), "id", cfg.Agent.ID, "collector", redactedCollector(cfg))
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
    citysense-agent version
    citysense-agent help

DESCRIPTION
    The agent reads sensors through its inputs, writes every reading to a
    durable buffer on disk (fsync'd before the reading counts as taken) and
    forwards the buffer to the collector over NATS JetStream. A batch leaves
    the buffer only after the collector stored it; a batch sent twice, after
    a lost acknowledgement or a crash, is dropped by the collector as a
    duplicate. While the collector is unreachable the agent keeps buffering
    and retries with growing pauses.

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

CONFIGURATION
    agent:    {id, data_dir, http}
    log:      {level, format}
    inputs:   a list of blocks, each with a type (see the inputs command)
    buffer:   {max_bytes: 256MiB, flush_interval: 2ms}
    outputs:  one block {type: nats, url, creds, batch_points: 5000,
               timeout: 10s}

FILES
    /etc/citysense/agent.yaml
           Suggested place of the configuration file (pass it with -c).
    DATA_DIR/buffer.db
           The durable buffer (bbolt). Only one agent may use a data
           directory at a time.

HTTP
    GET /healthz   200 "ok" while the process runs.
    GET /readyz    200 "ok" once the buffer is open and the inputs run.
    GET /status    JSON: agent_id, points_read, points_buffered,
                   points_sent, batches_sent, buffer_pending_batches,
                   buffer_pending_points, inputs_done.
    GET /metrics   Prometheus text, citysense_agent_* and process metrics.

SIGNALS
    SIGINT, SIGTERM
           Stop the inputs, finish the publish in flight, close the buffer
           and exit 0. Readings still buffered are sent by the next run. A
           second signal exits at once.

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
`
