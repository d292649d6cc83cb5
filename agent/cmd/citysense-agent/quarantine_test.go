package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/agent/internal/quarantine"
	"github.com/citysense/citysense/internal/cli"
)

func TestQuarantine_stoppedAgent(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	// No file yet: an empty list, not an error.
	code, out, errs := runMain(t, ctx, "quarantine", "list", "--data-dir", dir)
	if code != cli.ExitOK || !strings.Contains(out, "kept        0 entries") {
		t.Fatalf("empty list: %d %q %q", code, out, errs)
	}
	q, err := quarantine.Open(filepath.Join(dir, quarantine.FileName), quarantine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	raw := []byte("\x00\x01garbage{\n")
	for i, at := range []time.Time{old, time.Now()} {
		if _, _, err := q.Add(quarantine.Entry{Time: at, Input: "inputs[0]", Source: "mqtt bad/" + string(rune('a'+i)), Reason: "json: invalid character", Raw: raw}); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()

	code, out, _ = runMain(t, ctx, "quarantine", "list", "--data-dir", dir)
	if code != cli.ExitOK || !strings.Contains(out, "kept        2 entries") ||
		!strings.Contains(out, "1   2026-01-01T00:00:00Z  inputs[0]  11     mqtt bad/a  json: invalid character") {
		t.Fatalf("list:\n%s", out)
	}
	code, out, _ = runMain(t, ctx, "quarantine", "show", "1", "--data-dir", dir)
	if code != cli.ExitOK || !strings.Contains(out, "source  mqtt bad/a\n") ||
		!strings.Contains(out, "00000000  00 01 67 61 72 62 61 67  65 7b 0a                 |..garbage{.|") {
		t.Fatalf("show:\n%s", out)
	}
	code, out, _ = runMain(t, ctx, "quarantine", "show", "--raw", "--data-dir", dir, "2")
	if code != cli.ExitOK || out != string(raw) {
		t.Fatalf("show --raw = %d %q", code, out)
	}
	code, _, errs = runMain(t, ctx, "quarantine", "show", "7", "--data-dir", dir)
	if code != cli.ExitError || !strings.Contains(errs, "no such quarantine entry: 7") {
		t.Fatalf("show 7: %d %q", code, errs)
	}
	code, out, _ = runMain(t, ctx, "quarantine", "purge", "--before", "2026-02-01T00:00:00Z", "--data-dir", dir)
	if code != cli.ExitOK || out != "purged 1 entries\n" {
		t.Fatalf("purge --before: %d %q", code, out)
	}
	code, out, _ = runMain(t, ctx, "quarantine", "purge", "--data-dir", dir)
	if code != cli.ExitOK || out != "purged 1 entries\n" {
		t.Fatalf("purge: %d %q", code, out)
	}
	code, out, _ = runMain(t, ctx, "quarantine", "list", "--json", "--data-dir", dir)
	if code != cli.ExitOK || !strings.Contains(out, `"entries": []`) {
		t.Fatalf("list --json after purge: %q", out)
	}
}

func TestQuarantine_usage(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		{"quarantine"},
		{"quarantine", "show", "--data-dir", "x"},
		{"quarantine", "show", "abc", "--data-dir", "x"},
		{"quarantine", "list"},
		{"quarantine", "list", "extra", "--data-dir", "x"},
		{"quarantine", "purge", "--before", "yesterday", "--data-dir", "x"},
	} {
		if code, _, errs := runMain(t, ctx, args...); code != cli.ExitUsage || errs == "" {
			t.Errorf("%v: exit %d, stderr %q; want a usage error", args, code, errs)
		}
	}
}

func TestParseBefore(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-04-30T00:00:00Z": time.Date(2026, 4, 30, 0, 0, 0, 0, time.UTC),
		"1767225600":           time.Unix(1767225600, 0),
		"24h":                  now.Add(-24 * time.Hour),
	} {
		got, err := parseBefore(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseBefore(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}
