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

	"github.com/citysense/citysense/agent/internal/buffer"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/protocols"
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
		{args: []string{"inputs", "mqttt"}, code: cli.ExitUsage, stderr: []string{`unknown input type "mqttt" (known: `, "sim"}},
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
	segs, _ := filepath.Glob(filepath.Join(dataDir, "buffer", "seg-*.db"))
	if len(segs) == 0 {
		t.Fatalf("--data-dir not used: no segment in %s", dataDir)
	}

	// What the stopped agent holds, for the installer on site: the sim's
	// 2 ticks of 2 stations (2 air, 2 noise, 1 traffic, + 2 station at
	// tick 0) = 12 points, none delivered.
	code, out, errOut := runMain(t, t.Context(), "buffer", "stats", "--data-dir", dataDir)
	if code != cli.ExitOK || !strings.Contains(out, "kept        12 points in") || !strings.Contains(out, "seg-") {
		t.Fatalf("buffer stats: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runMain(t, t.Context(), "buffer", "stats", "--data-dir", dataDir, "--json")
	if code != cli.ExitOK || !strings.Contains(out, `"points": 12`) {
		t.Fatalf("buffer stats --json: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runMain(t, t.Context(), "buffer", "export", "--data-dir", dataDir, "--output", "nats")
	pts, err := protocols.DecodeAll([]byte(out), protocols.DecodeOptions{})
	if code != cli.ExitOK || err != nil || len(pts) != 12 || !strings.Contains(errOut, "exported 12 points") {
		t.Fatalf("buffer export: exit %d, %d points (%v)\n%s", code, len(pts), err, errOut)
	}

	// While an agent holds the buffer, both say so and touch nothing.
	b, err := buffer.Open(dataDir, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	code, _, errOut = runMain(t, t.Context(), "buffer", "stats", "--data-dir", dataDir)
	if code != cli.ExitError || !strings.Contains(errOut, "locked by another process") || !strings.Contains(errOut, "the agent is running") {
		t.Fatalf("buffer stats on a running agent's buffer: exit %d\n%s", code, errOut)
	}
}

func TestMain_bufferUsage(t *testing.T) {
	for _, args := range [][]string{{"buffer"}, {"buffer", "list"}, {"buffer", "stats"}, {"buffer", "export", "x"}} {
		if code, _, _ := runMain(t, t.Context(), args...); code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want usage error", args, code)
		}
	}
	if code, _, errOut := runMain(t, t.Context(), "buffer", "stats", "--data-dir", t.TempDir()); code != cli.ExitError || !strings.Contains(errOut, "no buffer in") {
		t.Errorf("stats of an empty dir: exit %d %s", code, errOut)
	}
}
