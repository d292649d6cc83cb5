package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/citysense/citysense/agent"
	"github.com/citysense/citysense/agent/internal/config"
	"github.com/citysense/citysense/agent/internal/quarantine"
	"github.com/citysense/citysense/internal/cli"
)

// defaultAgentHTTP is agent.http of the built-in configuration.
const defaultAgentHTTP = "127.0.0.1:9274"

// quarantineSource is where the quarantine command reads: the file itself
// when no agent holds it, else the running agent's HTTP API. bbolt locks
// the file for one process, so a running agent is asked instead of
// waited for.
type quarantineSource interface {
	list() (agent.QuarantineList, error)
	get(id uint64) (quarantine.Entry, error)
	purge(before time.Time) (int, error)
	where() string
	close()
}

// cmdQuarantine implements `quarantine list|show ID|purge [--before T]`.
func cmdQuarantine(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "show" && args[0] != "purge") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, manual)
			return cli.ExitOK
		}
		return usageError(stderr, "quarantine: want list, show ID or purge, e.g. quarantine list -c /etc/citysense/agent.yaml")
	}
	sub := args[0]
	fs := newFlags("quarantine " + sub)
	var path, dataDir, httpAddr, before string
	var asJSON, raw bool
	fs.StringVar(&path, "c", "", "")
	fs.StringVar(&path, "config", "", "")
	fs.StringVar(&dataDir, "data-dir", "", "")
	fs.StringVar(&httpAddr, "http", "", "")
	switch sub {
	case "list":
		fs.BoolVar(&asJSON, "json", false, "")
	case "show":
		fs.BoolVar(&asJSON, "json", false, "")
		fs.BoolVar(&raw, "raw", false, "")
	case "purge":
		fs.StringVar(&before, "before", "", "")
	}
	// Flags may come before or after the id.
	var pos []string
	for rest := args[1:]; ; {
		if code, stop := parse(fs, rest, stdout, stderr); stop {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	var id uint64
	switch {
	case sub == "show" && len(pos) != 1:
		return usageError(stderr, "quarantine show: want one entry id (see quarantine list)")
	case sub == "show":
		n, err := strconv.ParseUint(pos[0], 10, 64)
		if err != nil || n == 0 {
			return usageError(stderr, "quarantine show: %q is not an entry id", pos[0])
		}
		id = n
	case len(pos) > 0:
		return usageError(stderr, "quarantine %s: unexpected argument %q", sub, pos[0])
	}
	var beforeT time.Time
	if before != "" {
		t, err := parseBefore(before, time.Now())
		if err != nil {
			return usageError(stderr, "quarantine purge: --before: %v", err)
		}
		beforeT = t
	}

	if path != "" {
		cfg, err := config.Load(path)
		if cfg == nil {
			return configError(stderr, err)
		}
		if dataDir == "" {
			dataDir = cfg.Agent.DataDir
		}
		if httpAddr == "" {
			httpAddr = cfg.Agent.HTTP
		}
	}
	if dataDir == "" {
		return usageError(stderr, "quarantine %s: which agent? Give --data-dir DIR or -c FILE", sub)
	}
	if httpAddr == "" {
		httpAddr = defaultAgentHTTP
	}
	src, err := openQuarantine(ctx, dataDir, httpAddr, sub != "purge")
	if err != nil {
		fmt.Fprintf(stderr, "%s: quarantine: %v\n", program, err)
		return cli.ExitError
	}
	defer src.close()

	switch sub {
	case "list":
		l, err := src.list()
		if err != nil {
			fmt.Fprintf(stderr, "%s: quarantine list: %v\n", program, err)
			return cli.ExitError
		}
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(l)
			return cli.ExitOK
		}
		printQuarantineList(stdout, l, src.where())
	case "show":
		e, err := src.get(id)
		if err != nil {
			fmt.Fprintf(stderr, "%s: quarantine show: %v\n", program, err)
			return cli.ExitError
		}
		switch {
		case raw:
			_, _ = stdout.Write(e.Raw)
		case asJSON:
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(e)
		default:
			printQuarantineEntry(stdout, e)
		}
	case "purge":
		n, err := src.purge(beforeT)
		if err != nil {
			fmt.Fprintf(stderr, "%s: quarantine purge: %v\n", program, err)
			return cli.ExitError
		}
		fmt.Fprintf(stdout, "purged %d entries\n", n)
	}
	return cli.ExitOK
}

// parseBefore reads --before: RFC 3339, Unix seconds, or a duration meaning
// that long ago (24h).
func parseBefore(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("want RFC 3339 (2026-01-02T15:04:05Z), Unix seconds or an age such as 24h, got %q", s)
}

// openQuarantine opens the file if no agent holds it, else turns to the
// agent at httpAddr. A missing file is an empty quarantine for reading.
func openQuarantine(ctx context.Context, dataDir, httpAddr string, readOnly bool) (quarantineSource, error) {
	path := filepath.Join(dataDir, quarantine.FileName)
	if readOnly {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return emptySource(path), nil
		}
	}
	q, err := quarantine.Open(path, quarantine.Options{ReadOnly: readOnly})
	if err == nil {
		return fileSource{q}, nil
	}
	if !errors.Is(err, quarantine.ErrLocked) {
		return nil, err
	}
	// An agent holds the file: ask it.
	hs := httpSource{ctx: ctx, base: "http://" + httpAddr}
	if _, herr := hs.list(); herr != nil {
		return nil, fmt.Errorf("%s is held by a running agent, and asking it at %s failed: %v (give its address with --http or -c)", path, httpAddr, herr)
	}
	return hs, nil
}

type fileSource struct{ q *quarantine.Store }

func (f fileSource) list() (agent.QuarantineList, error) {
	es, err := f.q.List()
	if err != nil {
		return agent.QuarantineList{}, err
	}
	st, err := f.q.Stats()
	return agent.QuarantineList{Path: f.q.Path(), Stats: st, Entries: es}, err
}
func (f fileSource) get(id uint64) (quarantine.Entry, error) { return f.q.Get(id) }
func (f fileSource) purge(before time.Time) (int, error)     { return f.q.Purge(before) }
func (f fileSource) where() string                           { return f.q.Path() }
func (f fileSource) close()                                  { f.q.Close() }

type emptySource string

func (e emptySource) list() (agent.QuarantineList, error) {
	return agent.QuarantineList{Path: string(e), Entries: []quarantine.Entry{}}, nil
}
func (e emptySource) get(id uint64) (quarantine.Entry, error) {
	return quarantine.Entry{}, fmt.Errorf("%w: %d (%s does not exist)", quarantine.ErrNotFound, id, string(e))
}
func (e emptySource) purge(time.Time) (int, error) { return 0, nil }
func (e emptySource) where() string                { return string(e) }
func (e emptySource) close()                       {}

// httpSource asks a running agent (agent.quarantineRoutes).
type httpSource struct {
	ctx  context.Context
	base string
}

func (h httpSource) do(method, path string, v any) error {
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}

func (h httpSource) list() (agent.QuarantineList, error) {
	var l agent.QuarantineList
	err := h.do(http.MethodGet, "/quarantine", &l)
	return l, err
}

func (h httpSource) get(id uint64) (quarantine.Entry, error) {
	var e quarantine.Entry
	err := h.do(http.MethodGet, "/quarantine/"+strconv.FormatUint(id, 10), &e)
	return e, err
}

func (h httpSource) purge(before time.Time) (int, error) {
	q := ""
	if !before.IsZero() {
		q = "?before=" + url.QueryEscape(before.UTC().Format(time.RFC3339Nano))
	}
	var ans struct {
		Purged int `json:"purged"`
	}
	err := h.do(http.MethodDelete, "/quarantine"+q, &ans)
	return ans.Purged, err
}

func (h httpSource) where() string { return h.base + "/quarantine (the running agent)" }
func (h httpSource) close()        {}

func printQuarantineList(w io.Writer, l agent.QuarantineList, where string) {
	fmt.Fprintf(w, "quarantine  %s\n", where)
	fmt.Fprintf(w, "kept        %d entries, %d bytes; %d evicted to stay within bounds\n\n", l.Stats.Entries, l.Stats.Bytes, l.Stats.Evicted)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tINPUT\tBYTES\tSOURCE\tREASON")
	for _, e := range l.Entries {
		reason := e.Reason
		if i := strings.IndexByte(reason, '\n'); i >= 0 {
			reason = reason[:i] + " …"
		}
		if len(reason) > 80 {
			reason = reason[:80] + "…"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", e.ID, e.Time.UTC().Format(time.RFC3339), e.Input, e.Size, e.Source, reason)
	}
	tw.Flush()
}

func printQuarantineEntry(w io.Writer, e quarantine.Entry) {
	fmt.Fprintf(w, "id      %d\n", e.ID)
	fmt.Fprintf(w, "time    %s\n", e.Time.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "input   %s\n", e.Input)
	fmt.Fprintf(w, "source  %s\n", e.Source)
	fmt.Fprintf(w, "reason  %s\n", strings.ReplaceAll(e.Reason, "\n", "\n        "))
	if e.Truncated() {
		fmt.Fprintf(w, "size    %d bytes, the first %d kept\n", e.Size, len(e.Raw))
	} else {
		fmt.Fprintf(w, "size    %d bytes\n", e.Size)
	}
	fmt.Fprintln(w)
	d := hex.Dumper(w)
	_, _ = d.Write(e.Raw)
	d.Close()
}
