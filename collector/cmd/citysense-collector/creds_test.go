package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/citysense/citysense/collector/internal/auth"
)

func runArgs(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestRun_agent(t *testing.T) {
	dir := t.TempDir()
	// Flags after the id, as in the guides.
	code, out, errOut := runArgs("agent", "add", "gw-a", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("agent add: exit %d: %s", code, errOut)
	}
	credsPath := filepath.Join(dir, "agents", "gw-a.creds")
	if abs, _ := filepath.Abs(credsPath); !strings.Contains(out, "credentials:  "+abs+"\n") {
		t.Errorf("output lacks the creds path %s:\n%s", abs, out)
	}
	for _, want := range []string{"agent:\n  id: gw-a\noutputs:\n  - type: nats\n    url: nats://127.0.0.1:4222\n    creds: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks the agent.yaml snippet %q:\n%s", want, out)
		}
	}
	fi, err := os.Stat(credsPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("creds file: %v, mode %v", err, fi.Mode().Perm())
	}
	if _, err := nats.NkeyOptionFromSeed(credsPath); err != nil {
		t.Errorf("creds do not load with nats.NkeyOptionFromSeed: %v", err)
	}
	// Flags before the id work too.
	if code, _, errOut := runArgs("agent", "add", "--data-dir", dir, "gw-b"); code != 0 {
		t.Fatalf("agent add gw-b: %d %s", code, errOut)
	}
	if code, out, _ := runArgs("agent", "revoke", "gw-b", "--data-dir", dir); code != 0 || !strings.HasPrefix(out, "Revoked agent gw-b") {
		t.Errorf("revoke: %d %s", code, out)
	}
	code, out, _ = runArgs("agent", "list", "--data-dir", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	row := regexp.MustCompile(`^(gw-[ab]) +(U[A-Z0-9]{55}) +(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) +(-|\d{4}-\S+)$`)
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	for i, wantRevoked := range []bool{false, true} {
		m := row.FindStringSubmatch(lines[i+1])
		if m == nil || (m[4] != "-") != wantRevoked {
			t.Errorf("list row %q: want revoked=%v", lines[i+1], wantRevoked)
		}
	}

	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"duplicate", []string{"agent", "add", "gw-a", "--data-dir", dir}, 1, `agent "gw-a": already exists`},
		{"bad id", []string{"agent", "add", "gw.a", "--data-dir", dir}, 2, `agent id "gw.a": want 1 to 64 of A-Z a-z 0-9 _ -`},
		{"reserved", []string{"agent", "add", "http", "--data-dir", dir}, 2, `reserved`},
		{"no id", []string{"agent", "add", "--data-dir", dir}, 2, "agent add: want an agent id"},
		{"two ids", []string{"agent", "add", "a", "b"}, 2, `agent add: unexpected argument "b"`},
		{"unknown", []string{"agent", "revoke", "nope", "--data-dir", dir}, 1, `agent "nope": not found`},
		{"no subcommand", []string{"agent"}, 2, "agent: want add, list or revoke"},
		{"bad subcommand", []string{"agent", "remove", "x"}, 2, `agent: unknown command "remove"`},
		{"admin is for tokens", []string{"agent", "add", "x", "--admin"}, 2, "flag provided but not defined: -admin"},
		{"bad config", []string{"agent", "list", "-c", filepath.Join(dir, "nope.yaml")}, 3, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runArgs(tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.err) {
				t.Errorf("exit %d %q, want %d containing %q", code, errOut, tt.code, tt.err)
			}
		})
	}
}

// The data directory comes from the configuration file unless --data-dir
// overrides it; the URL in the snippet from nats.listen and nats.tls.
func TestRun_agent_config(t *testing.T) {
	dir := t.TempDir()
	pem := filepath.Join(dir, "x.pem")
	os.WriteFile(pem, []byte("x"), 0o600)
	cfg := filepath.Join(dir, "collector.yaml")
	data := filepath.Join(dir, "data")
	os.WriteFile(cfg, []byte("node:\n  data_dir: "+data+"\nnats:\n  listen: 10.1.0.11:4333\n  tls:\n    cert: "+pem+"\n    key: "+pem+"\n"), 0o600)
	code, out, errOut := runArgs("agent", "add", "gw-a", "-c", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "url: tls://10.1.0.11:4333\n") || !strings.Contains(out, filepath.Join(data, "agents", "gw-a.creds")) {
		t.Errorf("output:\n%s", out)
	}
	c, err := auth.Open(data, nil)
	if err != nil || len(c.Agents()) != 1 {
		t.Errorf("agents in %s: %v %v", data, c.Agents(), err)
	}
}

func TestRun_token(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runArgs("token", "add", "telegraf", "--data-dir", dir)
	secret := strings.TrimSpace(out)
	if code != 0 || !regexp.MustCompile(`^cs_[A-Za-z0-9_-]{43}$`).MatchString(secret) {
		t.Fatalf("token add: exit %d, stdout %q (want the token alone), stderr %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "not shown again") {
		t.Errorf("stderr lacks the warning: %q", errOut)
	}
	if code, _, errOut := runArgs("token", "add", "ops", "--admin", "--data-dir", dir); code != 0 {
		t.Fatalf("token add --admin: %s", errOut)
	}
	c, err := auth.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok, ok := c.VerifyToken(secret); !ok || tok.Name != "telegraf" || tok.Admin {
		t.Errorf("printed token verifies as %+v, %v", tok, ok)
	}
	code, out, _ = runArgs("token", "list", "--data-dir", dir)
	if code != 0 || strings.Contains(out, secret) || !regexp.MustCompile(`(?m)^ops +true +\S+ +-$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^telegraf +false +\S+ +-$`).MatchString(out) {
		t.Errorf("list: %d\n%s", code, out)
	}
	if code, out, _ := runArgs("token", "revoke", "telegraf", "--data-dir", dir); code != 0 || !strings.HasPrefix(out, "Revoked token telegraf") {
		t.Errorf("revoke: %d %s", code, out)
	}
	c.Reload()
	if _, ok := c.VerifyToken(secret); ok {
		t.Error("revoked token verifies")
	}
	if code, _, errOut := runArgs("token", "add", "a b", "--data-dir", dir); code != 2 || !strings.Contains(errOut, "want 1 to 64") {
		t.Errorf("bad name: %d %s", code, errOut)
	}
}
