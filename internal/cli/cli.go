// Package cli holds what both mains share: build information set by -ldflags,
// the slog logger setup and the exit codes. It must not import anything of
// CitySense, so that the agent's import graph stays small.
package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
)

// Set with -ldflags "-X github.com/citysense/citysense/internal/cli.version=..." by the Makefile.
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

// Exit codes shared by both programs.
const (
	ExitOK     = 0
	ExitError  = 1 // the program failed while running
	ExitUsage  = 2 // bad flags or arguments
	ExitConfig = 3 // the configuration is invalid
)

// Version returns the release version, e.g. "v0.1.0" or "dev".
func Version() string { return version }

// VersionText is what `<program> version` prints.
func VersionText(program string) string {
	return fmt.Sprintf("%s %s\n  commit:     %s\n  built:      %s\n  go:         %s\n  platform:   %s/%s\n",
		program, version, commit, date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// NewLogger returns a slog logger writing text when w is a terminal and JSON
// otherwise (format "auto"), or the format asked for ("text", "json").
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "auto":
		if isTerminal(w) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want auto, text or json", format)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Discard is a logger that drops everything; constructors use it for a nil logger.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
