// Command citysense-collector receives batches from CitySense agents over
// NATS JetStream, stores them and serves them through the public API and
// portal. See `citysense-collector help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/citysense/citysense/collector"
	"github.com/citysense/citysense/collector/internal/config"
	_ "github.com/citysense/citysense/enrich/all" // every enrichment stage, for collector.yaml's enrich: list
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/internal/sdnotify"
)

const program = "citysense-collector"

const helpText = `NAME
    citysense-collector - receive, store and serve CitySense sensor data

SYNOPSIS
    citysense-collector [run] [-c FILE] [--data-dir DIR] [--http ADDR]
                        [--nats ADDR] [--log-level LEVEL] [--log-format FORMAT]
    citysense-collector check -c FILE
    citysense-collector agent add|revoke ID [-c FILE] [--data-dir DIR]
    citysense-collector agent list [-c FILE] [--data-dir DIR]
    citysense-collector token add NAME [--admin] [-c FILE] [--data-dir DIR]
    citysense-collector token revoke NAME [-c FILE] [--data-dir DIR]
    citysense-collector token list [-c FILE] [--data-dir DIR]
    citysense-collector cluster keygen
    citysense-collector cluster status [-c FILE] [--url URL] [--token TOKEN] [--json]
    citysense-collector version
    citysense-collector help

DESCRIPTION
    The collector runs an embedded NATS server with JetStream. Agents publish
    batches of Influx line protocol (optionally zstd- or s2-compressed) to
    cs.raw.<agent-id>; Influx-compatible writers (Telegraf, curl) POST line
    protocol to /write or /api/v2/write. The collector stores every point in
    its time-series store and serves it over HTTP as JSON and on a small web
    portal.

    Agents authenticate with an NKey issued by "agent add" and may publish
    only to their own subject; HTTP writers and MQTT devices with a token
    issued by "token add". A collector whose NATS (and MQTT) listener is on
    loopback only and that has no enrolled agent runs in DEVELOPMENT MODE:
    it accepts clients without credentials, says so in a warning every 10
    minutes and in the metric citysense_bus_dev_mode. The first enrolled
    agent ends it.

    Without a configuration file it runs one node named c1 with its data in
    ./data, HTTP on 127.0.0.1:8080 and NATS on 127.0.0.1:4222.

COMMANDS
    run       Run the collector until SIGINT or SIGTERM, then shut down
              cleanly: HTTP, ingest, NATS, store, in that order. The default
              command. A second signal ends the process at once.
    check     Validate a configuration file and print every problem as
              FILE:LINE: KEY: MESSAGE, or "FILE: ok".
    agent add ID
              Enroll an agent: create its NKey, record its public key in
              DIR/agents.json, write its credentials (the NKey seed) to
              DIR/agents/ID.creds (mode 0600) and print the agent.yaml
              snippet that uses them. ID is 1 to 64 of A-Z a-z 0-9 _ -;
              "http" is reserved. A revoked ID may be enrolled again.
    agent list
              Print every agent: id, public key, created, revoked.
    agent revoke ID
              Revoke an agent; a running collector closes its connections.
    token add NAME [--admin]
              Create an API token and print it once (only its SHA-256 hash
              is kept, in DIR/tokens.json). Any token may write through the
              Influx API and connect MQTT devices; --admin tokens may also
              use /admin/v1/.
    token list
              Print every token: name, admin, created, revoked.
    token revoke NAME
              Revoke a token.
    cluster keygen
              Print a new cluster key (base64 of 32 random bytes) for the
              cluster block's key or key_file. Every node needs the same one.
    cluster status
              Ask a running node (--url, default the http.listen of -c FILE)
              for the cluster: members and their state, every partition's
              owners, whether each serves it and how many messages its
              consumer has yet to store, and the NATS streams' replicas.
              Needs an admin token (--token or CITYSENSE_ADMIN_TOKEN).
              --json prints the answer of GET /admin/v1/cluster as is.
    version   Print the version and build information.
    help      Print this text.

    agent and token commands work while the collector runs: it picks up
    changes to agents.json and tokens.json within a second.

OPTIONS
    -c, --config FILE
              Read the configuration from FILE (YAML). Unknown keys are
              errors; ${VAR} and ${VAR:-default} expand environment variables.
    --data-dir DIR
              Directory for the store, JetStream and the credentials
              (node.data_dir). Default ./data.
    --http ADDR
              Listen address of the API and portal (http.listen).
              Default 127.0.0.1:8080. Port 0 picks a free port.
    --nats ADDR
              Listen address of the NATS server (nats.listen).
              Default 127.0.0.1:4222. Port 0 picks a free port.
    --admin   With token add: the token may use the admin API.
    --log-level LEVEL
              debug, info, warn or error (log.level). Default info.
    --log-format FORMAT
              auto (text on a terminal, JSON otherwise), text or json
              (log.format). Default auto.
    -h, --help
              Print this text.
    Options override the values from the configuration file.

CONFIGURATION
    node:
      name: c1                   # stable identity of this node
      data_dir: ./data
    http:
      listen: 127.0.0.1:8080
      max_body: 32MiB            # Influx write body, also after gunzip
    nats:
      listen: 127.0.0.1:4222
      sync_always: false         # true: fsync each message (survives power loss)
      tls:                       # off unless cert is set
        cert: /etc/citysense/nats.pem
        key: /etc/citysense/nats-key.pem
        ca: /etc/citysense/agents-ca.pem  # with verify_clients
        verify_clients: false    # true: agents need a certificate too
    mqtt:
      listen: ""                 # e.g. 127.0.0.1:1883; off by default;
                                 # best effort, see docs/collector.md
    log:
      level: info
      format: auto
    ingest:
      batch: 100                 # messages per store transaction
      ack_wait: 30s              # redelivery when unacknowledged
      retry_delay: 5s            # redelivery delay after a store error
      max_past: 7305d            # Influx write: oldest timestamp accepted
      max_future: 1h             # Influx write: newest timestamp accepted
      max_tags: 64               # Influx write: tags per point at most
      max_fields: 256            # Influx write: fields per point at most
      partitions: 16             # CS_SERIES partitions of a cluster; choose once
    cluster:                     # leave out for a single node
      gossip: 127.0.0.1:7946     # memberlist, TCP and UDP
      routes: 127.0.0.1:6222     # NATS routes between the nodes
      advertise: ""              # host others reach; default gossip's
      seeds: [10.1.0.11:7946]    # any running node; remembered after
      replication: 2             # nodes storing each partition
      key_file: /etc/citysense/cluster.key  # or key: base64 (cluster keygen)
      series_retention: 24h      # CS_SERIES replay window for new owners
      tls: {cert: ..., key: ..., ca: ...}  # routes over mutual TLS; off unset

HTTP ENDPOINTS
    GET /api/v1/series?field=F[&measurement=M][&station=S][&district=D]
                      [&from=T][&to=T][&time_format=rfc3339]
              Raw points as JSON. T is RFC 3339 or Unix seconds; the default
              range is the last 24 hours to one hour ahead, both bounds
              inclusive. At most 1,000,000 points per answer.
    GET /api/v1/stations    Stations as a GeoJSON FeatureCollection.
    GET /                   Portal page listing the stations.
    POST /api/v2/write?org=O&bucket=B[&precision=ns|us|ms|s]
              Influx v2 write: line protocol, optionally gzip
              (Content-Encoding), with "Authorization: Token TOKEN". 204 once
              JetStream stored the points; 400 names the rejected lines (the
              others are stored); 401 without a valid token; 413 over
              http.max_body; 503 with Retry-After when the bus is down.
    POST /write?db=D[&precision=n|ns|u|us|ms|s][&u=USER&p=TOKEN]
              Influx v1 write, the same; the token may also be the password
              of Basic auth or "Authorization: Token TOKEN".
    GET|POST /admin/v1/agents, DELETE /admin/v1/agents/ID
    GET|POST /admin/v1/tokens, DELETE /admin/v1/tokens/NAME
              Enrollment over HTTP, with "Authorization: Bearer ADMIN-TOKEN".
              POST {"id":"gw-a"} answers the credentials once, in "creds";
              POST {"name":"x","admin":false} the token once, in "token".
    GET /admin/v1/cluster   Members, partition owners, lag and stream replicas
              (admin token); 404 on a single node.
    GET /ping               204, for InfluxDB clients that probe first.
    GET /healthz, /readyz   Liveness and readiness (JetStream up).
    GET /metrics            Prometheus metrics.

FILES
    DIR/store.db          The time-series store (bbolt).
    DIR/jetstream/        JetStream's file store: batches not yet ingested.
    DIR/agents.json       Enrolled agents: id, public key, created, revoked.
    DIR/tokens.json       API tokens: name, SHA-256 hash, admin, revoked.
    DIR/agents/ID.creds   An agent's credentials, written by agent add.
    DIR/cluster/          In a cluster: members.json (members seen, so a
                          restart needs no seed), partitions.json (the
                          partitions whose history this disk holds).

EXAMPLES
    Run with the defaults:
        citysense-collector

    Run from a file, with the data elsewhere:
        citysense-collector run -c /etc/citysense/collector.yaml --data-dir /srv/cs

    Validate a file before deploying it:
        citysense-collector check -c collector.yaml

    Enroll a gateway and give Telegraf a token:
        citysense-collector agent add gw-017 -c /etc/citysense/collector.yaml
        citysense-collector token add telegraf -c /etc/citysense/collector.yaml

    Write a reading over HTTP, then read it back:
        curl -i -H "Authorization: Token $TOKEN" --data-binary \
            'air,station=s0001 pm25=12.3' \
            'http://127.0.0.1:8080/api/v2/write?org=city&bucket=sensors'
        curl 'http://127.0.0.1:8080/api/v1/series?station=s0001&field=pm25'

EXIT STATUS
    0    success, or a clean shutdown after SIGINT/SIGTERM
    1    the collector failed while running, or an agent/token change failed
    2    usage error: unknown command or option, or a bad agent id or token name
    3    the configuration is invalid or cannot be read
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runCmd(args, stdout, stderr)
	case "check":
		return checkCmd(args, stdout, stderr)
	case "agent", "token":
		return credsCmd(cmd, args, stdout, stderr)
	case "cluster":
		return clusterCmd(args, stdout, stderr)
	case "version":
		if len(args) > 0 {
			return usageError(stderr, "version takes no arguments")
		}
		fmt.Fprint(stdout, cli.VersionText(program))
		return cli.ExitOK
	case "help":
		fmt.Fprint(stdout, helpText)
		return cli.ExitOK
	}
	return usageError(stderr, fmt.Sprintf("unknown command %q", cmd))
}

func usageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "%s: %s\nRun '%s help' for usage.\n", program, msg, program)
	return cli.ExitUsage
}

// newFlagSet returns a flag set whose errors and -h print nothing: the
// callers report them in the program's own words.
func newFlagSet(name string, configPath *string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(configPath, "c", "", "configuration file")
	fs.StringVar(configPath, "config", "", "configuration file")
	return fs
}

// parse handles -h and flag errors the same way for every command; ok is
// false when the command should return code.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, helpText)
		return cli.ExitOK, false
	case err != nil:
		return usageError(stderr, fs.Name()+": "+err.Error()), false
	case fs.NArg() > 0:
		return usageError(stderr, fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))), false
	}
	return 0, true
}

func runCmd(args []string, stdout, stderr io.Writer) int {
	var path string
	fs := newFlagSet("run", &path)
	dataDir := fs.String("data-dir", "", "")
	httpAddr := fs.String("http", "", "")
	natsAddr := fs.String("nats", "", "")
	logLevel := fs.String("log-level", "", "")
	logFormat := fs.String("log-format", "", "")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}

	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			printConfigError(stderr, err)
			return cli.ExitConfig
		}
	}
	// Only flags given on the command line override the file.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "data-dir":
			cfg.Node.DataDir = *dataDir
		case "http":
			cfg.HTTP.Listen = *httpAddr
		case "nats":
			cfg.NATS.Listen = *natsAddr
		case "log-level":
			cfg.Log.Level = *logLevel
		case "log-format":
			cfg.Log.Format = *logFormat
		}
	})
	if probs := cfg.Validate(nil); len(probs) > 0 {
		printConfigError(stderr, probs)
		return cli.ExitConfig
	}

	log, err := cli.NewLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		printConfigError(stderr, err)
		return cli.ExitConfig
	}
	c, err := collector.New(cfg, log)
	if err != nil {
		printConfigError(stderr, err)
		return cli.ExitConfig
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, restore the default handling so that a
		// second one ends a shutdown that hangs.
		<-ctx.Done()
		stop()
	}()
	// Under systemd (Type=notify): READY=1 once every part runs, watchdog
	// pings, STOPPING=1 on the signal.
	stopNotify := sdnotify.Start(ctx, log, func() bool {
		select {
		case <-c.Started():
			return true
		default:
			return false
		}
	})
	defer stopNotify()
	if err := c.Run(ctx); err != nil {
		log.Error("collector failed", "err", err)
		return cli.ExitError
	}
	return cli.ExitOK
}

func checkCmd(args []string, stdout, stderr io.Writer) int {
	var path string
	fs := newFlagSet("check", &path)
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if path == "" {
		return usageError(stderr, "check: -c FILE is required")
	}
	cfg, err := config.Load(path)
	if err == nil {
		// The enrich blocks and the files they name are checked by
		// building the chain, as run would.
		err = collector.Check(cfg)
	}
	if err != nil {
		printConfigError(stderr, err)
		return cli.ExitConfig
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return cli.ExitOK
}

// printConfigError prints one problem per line, each already carrying its
// file:line: path: message.
func printConfigError(w io.Writer, err error) {
	var probs confx.Problems
	if errors.As(err, &probs) {
		for _, p := range probs {
			fmt.Fprintln(w, p.Error())
		}
		return
	}
	fmt.Fprintf(w, "%s: %v\n", program, err)
}
