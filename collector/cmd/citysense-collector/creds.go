package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/citysense/citysense/collector/internal/auth"
	"github.com/citysense/citysense/collector/internal/config"
	"github.com/citysense/citysense/internal/cli"
)

// credsCmd runs `agent add|list|revoke` and `token add|list|revoke`. They
// change DATA/agents.json and DATA/tokens.json, which a running collector
// picks up within a second.
func credsCmd(kind string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, helpText)
			return cli.ExitOK
		}
		return usageError(stderr, kind+": want add, list or revoke")
	}
	sub, args := args[0], args[1:]
	name := kind + " " + sub
	var path, dataDir string
	var admin bool
	fs := newFlagSet(name, &path)
	fs.StringVar(&dataDir, "data-dir", "", "")
	if kind == "token" && sub == "add" {
		fs.BoolVar(&admin, "admin", false, "")
	}
	// Flags may come before or after the name: `agent add gw-a --data-dir D`.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, helpText)
				return cli.ExitOK
			}
			return usageError(stderr, name+": "+err.Error())
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	wantArgs := 1
	if sub == "list" {
		wantArgs = 0
	}
	switch {
	case sub != "add" && sub != "list" && sub != "revoke":
		return usageError(stderr, fmt.Sprintf("%s: unknown command %q (want add, list or revoke)", kind, sub))
	case len(pos) < wantArgs:
		what := "an agent id"
		if kind == "token" {
			what = "a token name"
		}
		return usageError(stderr, name+": want "+what)
	case len(pos) > wantArgs:
		return usageError(stderr, fmt.Sprintf("%s: unexpected argument %q", name, pos[wantArgs]))
	}

	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			printConfigError(stderr, err)
			return cli.ExitConfig
		}
	}
	if dataDir != "" {
		cfg.Node.DataDir = dataDir
	}
	creds, err := auth.Open(cfg.Node.DataDir, nil)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return cli.ExitError
	}

	switch kind + " " + sub {
	case "agent add":
		return agentAdd(creds, cfg, pos[0], stdout, stderr)
	case "agent list":
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPUBLIC KEY\tCREATED\tREVOKED")
		for _, a := range creds.Agents() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.ID, a.PublicKey, a.Created.Format(time.RFC3339), revoked(a.Revoked))
		}
		tw.Flush()
	case "agent revoke":
		a, err := creds.RevokeAgent(pos[0])
		if err != nil {
			return credsError(stderr, err)
		}
		fmt.Fprintf(stdout, "Revoked agent %s (public key %s) at %s.\n"+
			"A running collector refuses it and closes its connections within a second.\n",
			a.ID, a.PublicKey, a.Revoked.Format(time.RFC3339))
	case "token add":
		secret, t, err := creds.AddToken(pos[0], admin)
		if err != nil {
			return credsError(stderr, err)
		}
		role := "write"
		if t.Admin {
			role = "admin and write"
		}
		// The secret alone on stdout, so that TOKEN=$(... token add x)
		// works; the explanation on stderr.
		fmt.Fprintln(stdout, secret)
		fmt.Fprintf(stderr, "Created token %s (%s). Store it now: it is not shown again; the collector keeps only its SHA-256 hash.\n", t.Name, role)
	case "token list":
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tADMIN\tCREATED\tREVOKED")
		for _, t := range creds.Tokens() {
			fmt.Fprintf(tw, "%s\t%v\t%s\t%s\n", t.Name, t.Admin, t.Created.Format(time.RFC3339), revoked(t.Revoked))
		}
		tw.Flush()
	case "token revoke":
		t, err := creds.RevokeToken(pos[0])
		if err != nil {
			return credsError(stderr, err)
		}
		fmt.Fprintf(stdout, "Revoked token %s at %s.\n", t.Name, t.Revoked.Format(time.RFC3339))
	}
	return cli.ExitOK
}

func agentAdd(creds *auth.Credentials, cfg config.Config, id string, stdout, stderr io.Writer) int {
	a, file, err := creds.AddAgent(id)
	if err != nil {
		return credsError(stderr, err)
	}
	dir := filepath.Join(cfg.Node.DataDir, auth.CredsDir)
	credsPath, err := filepath.Abs(filepath.Join(dir, id+".creds"))
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	if err == nil {
		err = auth.WriteFileAtomic(credsPath, file, 0o600)
	}
	if err != nil {
		// An enrolled key nobody holds is useless: take it back.
		if _, rerr := creds.RevokeAgent(id); rerr != nil {
			err = errors.Join(err, rerr)
		}
		fmt.Fprintf(stderr, "%s: write credentials of agent %s: %v\n", program, id, err)
		return cli.ExitError
	}
	fmt.Fprintf(stdout, `Enrolled agent %s.
  public key:   %s
  credentials:  %s
                (secret: copy it to the gateway and keep it mode 0600)

In the gateway's agent.yaml:

agent:
  id: %s
outputs:
  - type: nats
    url: %s
    creds: %s
`, a.ID, a.PublicKey, credsPath, a.ID, agentURL(cfg), credsPath)
	return cli.ExitOK
}

// agentURL is the URL an agent connects to: nats.listen, with this host's
// name when the collector listens on every interface.
func agentURL(cfg config.Config) string {
	host, port, err := net.SplitHostPort(cfg.NATS.Listen)
	if err != nil {
		return "nats://" + cfg.NATS.Listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	scheme := "nats"
	if cfg.NATS.TLS.Enabled() {
		scheme = "tls"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

func revoked(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// credsError prints a failed change; a bad name is a usage error.
func credsError(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "%s: %v\n", program, err)
	if errors.Is(err, auth.ErrInvalidName) || errors.Is(err, auth.ErrReserved) {
		return cli.ExitUsage
	}
	return cli.ExitError
}
