package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/internal/cli"
)

func runMain(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = realMain(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMain_commands(t *testing.T) {
	good := writeFile(t, "agent:\n  id: gw-1\ninputs:\n  - type: sim\n")
	bad := writeFile(t, "agent:\n  id: gw-1\n  colour: blue\ninputs:\n  - type: sim\n    stations: 3\n    bogus: 1\n")
	tests := []struct {
		args       []string
		code       int
		stdout     []string // substrings
		stderr     []string
		stdoutOnly bool // stderr must be empty
	}{
		{args: []string{"help"}, code: cli.ExitOK, stdoutOnly: true,
			stdout: []string{"NAME", "SYNOPSIS", "COMMANDS", "OPTIONS", "FILES", "EXAMPLES", "EXIT STATUS", "--collector URL"}},
		{args: []string{"--help"}, code: cli.ExitOK, stdout: []string{"SYNOPSIS"}, stdoutOnly: true},
		{args: []string{"-h"}, code: cli.ExitOK, stdout: []string{"SYNOPSIS"}, stdoutOnly: true},
		{args: []string{"run", "-h"}, code: cli.ExitOK, stdout: []string{"SYNOPSIS"}, stdoutOnly: true},
		{args: []string{"version"}, code: cli.ExitOK, stdout: []string{"citysense-agent dev", "go:"}, stdoutOnly: true},
		{args: nil, code: cli.ExitUsage, stderr: []string{"Usage:", "citysense-agent help"}},
		{args: []string{"frobnicate"}, code: cli.ExitUsage, stderr: []string{`unknown command "frobnicate"`}},
		{args: []string{"--verbose"}, code: cli.ExitUsage, stderr: []string{"unknown flag --verbose"}},
		{args: []string{"run", "--colour"}, code: cli.ExitUsage, stderr: []string{"flag provided but not defined: -colour"}},
		{args: []string{"run", "--id", "a.b"}, code: cli.ExitUsage, stderr: []string{`--id "a.b"`}},
		{args: []string{"run", "extra"}, code: cli.ExitUsage, stderr: []string{`unexpected argument "extra"`}},
		{args: []string{"check"}, code: cli.ExitUsage, stderr: []string{"check -c FILE"}},
		{args: []string{"check", "-c", good}, code: cli.ExitOK, stdout: []string{good + ": ok"}, stdoutOnly: true},
		{args: []string{"check", good}, code: cli.ExitOK, stdout: []string{good + ": ok"}, stdoutOnly: true},
		{args: []string{"check", "--config", bad}, code: cli.ExitConfig, stderr: []string{
			bad + `:3: agent.colour: unknown key "colour"`,
			bad + `:7: inputs[0].bogus: unknown key "bogus"`,
		}},
		{args: []string{"check", "-c", filepath.Join(t.TempDir(), "nope.yaml")}, code: cli.ExitConfig, stderr: []string{"no such file"}},
		{args: []string{"run", "-c", bad}, code: cli.ExitConfig, stderr: []string{bad + `:7: inputs[0].bogus: unknown key "bogus"`}},
		{args: []string{"run", "-c", good, "--log-level", "loud"}, code: cli.ExitConfig, stderr: []string{`log.level: want debug, info, warn or error, got "loud"`}},
		{args: []string{"inputs"}, code: cli.ExitOK, stdout: []string{"# sim", "- type: sim", "stations: 50", "realtime: true"}, stdoutOnly: true},
		{args: []string{"inputs", "sim"}, code: cli.ExitOK, stdout: []string{"# sim"}, stdoutOnly: true},
		{args: []string{"inputs", "mqttt"}, code: cli.ExitUsage, stderr: []string{`unknown input type "mqttt" (known: sim)`}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runMain(t, t.Context(), tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if tt.stdoutOnly && stderr != "" {
				t.Errorf("unexpected stderr: %s", stderr)
			}
		})
	}
}

func TestMain_runStopsCleanly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String() // no collector: the agent must run regardless
	ln.Close()
	dataDir := t.TempDir()
	cfg := writeFile(t, `agent:
  id: from-file
  data_dir: /nonexistent/overridden
inputs:
  - type: sim
    stations: 2
    ticks: 2
    realtime: false
outputs:
  - type: nats
    url: nats://127.0.0.1:1
`)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(500*time.Millisecond, cancel) // as SIGTERM would
	code, _, stderr := runMain(t, ctx, "run", "-c", cfg, "--data-dir", dataDir, "--http", "",
		"--collector", "nats://"+dead, "--id", "gw-flag", "--log-format", "json")
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, s := range []string{`"agent":"gw-flag"`, `"msg":"agent stopped"`, `"points_read":`} {
		if !strings.Contains(stderr, s) {
			t.Errorf("log lacks %s:\n%s", s, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "buffer.db")); err != nil {
		t.Fatalf("--data-dir not used: %v", err)
	}
}
