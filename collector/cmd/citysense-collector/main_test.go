package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("node:\n  name: c2\n"), 0o600)
	os.WriteFile(bad, []byte("node:\n  nam: c2\nlog:\n  level: loud\n"), 0o600)

	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // substring; "" means empty
		stderr     string // substring; "" means empty
		exactStdot bool
	}{
		{"version", []string{"version"}, 0, "citysense-collector dev\n", "", false},
		{"help", []string{"help"}, 0, "EXIT STATUS", "", false},
		{"--help", []string{"--help"}, 0, "SYNOPSIS", "", false},
		{"-h", []string{"-h"}, 0, "OPTIONS", "", false},
		{"run -h", []string{"run", "-h"}, 0, "FILES", "", false},
		{"unknown command", []string{"serve"}, 2, "", `unknown command "serve"`, false},
		{"unknown flag", []string{"run", "--bogus"}, 2, "", "flag provided but not defined: -bogus", false},
		{"stray argument", []string{"run", "extra"}, 2, "", `unexpected argument "extra"`, false},
		{"version with argument", []string{"version", "x"}, 2, "", "takes no arguments", false},
		{"check ok", []string{"check", "-c", good}, 0, good + ": ok\n", "", true},
		{"check long flag", []string{"check", "--config=" + good}, 0, good + ": ok\n", "", true},
		{"check problems", []string{"check", "-c", bad}, 3, "",
			bad + ":2: node.nam: unknown key \"nam\" (known: data_dir, name)\n", false},
		{"check without file", []string{"check"}, 2, "", "-c FILE is required", false},
		{"check missing file", []string{"check", "-c", filepath.Join(dir, "nope.yaml")}, 3, "", "no such file", false},
		{"run with bad file", []string{"run", "-c", bad}, 3, "", ":4: log.level: \"loud\": want debug, info, warn or error", false},
		{"run with bad flag value", []string{"--http", "nowhere"}, 3, "", `http.listen: "nowhere": want host:port`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			check := func(what, got, want string) {
				if want == "" && got != "" || !strings.Contains(got, want) {
					t.Errorf("%s = %q, want it to contain %q", what, got, want)
				}
			}
			if tt.exactStdot && stdout.String() != tt.stdout {
				t.Errorf("stdout = %q, want %q", stdout.String(), tt.stdout)
			}
			check("stdout", stdout.String(), tt.stdout)
			check("stderr", stderr.String(), tt.stderr)
		})
	}
}

// Both problems of the bad file are reported, each on its own line.
func TestRun_checkReportsEveryProblem(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("node:\n  name: ''\nhttp:\n  listen: x\n"), 0o600)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "-c", bad}, &stdout, &stderr); code != 3 {
		t.Fatalf("exit %d", code)
	}
	want := bad + ":2: node.name: must not be empty\n" + bad + ":4: http.listen: \"x\": want host:port\n"
	if stderr.String() != want {
		t.Errorf("stderr =\n%s\nwant\n%s", stderr.String(), want)
	}
}
