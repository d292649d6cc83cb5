package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

type config struct {
	scale     float64
	days      int
	interval  time.Duration
	writers   int
	runs      int
	systems   string
	collector string
	keep      bool
	workDir   string
	noInstall bool
	end       string // RFC 3339; empty: the current minute
	queryOnly bool
}

func main() {
	var cfg config
	flag.Float64Var(&cfg.scale, "scale", 1, "data set size: 1,000 stations × `SCALE`")
	flag.IntVar(&cfg.days, "days", 3, "days of data")
	flag.DurationVar(&cfg.interval, "interval", time.Minute, "time between readings of a station")
	flag.IntVar(&cfg.writers, "writers", 4, "concurrent write requests")
	flag.IntVar(&cfg.runs, "runs", 31, "timed runs per query (the median is reported)")
	flag.StringVar(&cfg.systems, "systems", "citysense,victoriametrics,influxdb", "systems to measure, comma-separated")
	flag.StringVar(&cfg.collector, "collector", "", "citysense-collector binary; empty builds ./collector/cmd/citysense-collector")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the data directories")
	flag.StringVar(&cfg.workDir, "dir", "", "directory for data and binaries; empty makes a temporary one")
	flag.BoolVar(&cfg.noInstall, "no-install", false, "do not apt-get install missing peers (skip them instead)")
	flag.StringVar(&cfg.end, "end", "", "last minute of the data set, RFC 3339 (empty: the current minute)")
	flag.BoolVar(&cfg.queryOnly, "query-only", false, "only time the queries, on the data a run with -keep left in -dir (give its -end, printed as the data set's end)")
	flag.Parse()
	if cfg.queryOnly && (cfg.workDir == "" || cfg.end == "") {
		fmt.Fprintln(os.Stderr, "bench: -query-only needs -dir and -end of a run kept with -keep")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log, os.Stdout); err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

// dataset is the deterministic data set: sim's city, one tick per
// interval, ending at the minute the run started.
type dataset struct {
	params   sim.Params
	ticks    int
	values   int64 // field values: what "per point" means below
	lines    int64
	from, to time.Time // first and last tick
}

func newDataset(cfg config) (*dataset, error) {
	stations := max(1, int(math.Round(1000*cfg.scale)))
	ticks := int(time.Duration(cfg.days) * 24 * time.Hour / cfg.interval)
	end := time.Now().UTC().Truncate(time.Minute)
	if cfg.end != "" {
		t, err := time.Parse(time.RFC3339, cfg.end)
		if err != nil {
			return nil, fmt.Errorf("-end: %w", err)
		}
		end = t.UTC().Truncate(time.Minute)
	}
	start := end.Add(-time.Duration(ticks-1) * cfg.interval)
	ds := &dataset{
		params: sim.Params{Stations: stations, Seed: 1, Interval: cfg.interval, Start: start},
		ticks:  ticks,
		from:   start,
		to:     end,
	}
	// Counted once, up front, from the generator itself.
	for tick := range ticks {
		for _, p := range sim.Generate(ds.params, tick) {
			ds.values += int64(len(p.Fields))
			ds.lines++
		}
	}
	return ds, nil
}

// body is the line protocol of one tick (every station), ns precision.
func (ds *dataset) body(tick int) []byte {
	b, err := protocols.AppendLines(nil, sim.Generate(ds.params, tick), protocols.Nanosecond)
	if err != nil {
		panic(err) // sim makes valid points
	}
	return b
}

// result holds one system's figures.
type result struct {
	name        string
	ingestCPU   time.Duration
	ingestWall  time.Duration
	diskBytes   int64 // whole data directory
	storeBytes  int64 // CitySense's store alone; 0 for the others
	peakRSS     int64
	queries     [3]time.Duration
	queryErrors [3]string
	note        string
}

func run(ctx context.Context, cfg config, log *slog.Logger, out io.Writer) error {
	work := cfg.workDir
	if work == "" {
		dir, err := os.MkdirTemp("", "citysense-bench-")
		if err != nil {
			return err
		}
		work = dir
		if !cfg.keep {
			defer os.RemoveAll(dir)
		}
	}
	var systems []system
	for _, name := range strings.Split(cfg.systems, ",") {
		switch strings.TrimSpace(name) {
		case "citysense":
			bin := cfg.collector
			if bin == "" {
				var err error
				if bin, err = buildCollector(ctx, work); err != nil {
					return err
				}
			}
			systems = append(systems, &citysense{bin: bin})
		case "victoriametrics":
			bin, err := ensure(ctx, log, "victoria-metrics", "victoria-metrics", cfg.noInstall)
			if err != nil {
				log.Warn("skipping VictoriaMetrics", "err", err)
				continue
			}
			systems = append(systems, &victoria{bin: bin})
		case "influxdb":
			bin, err := ensure(ctx, log, "influxd", "influxdb", cfg.noInstall)
			if err != nil {
				log.Warn("skipping InfluxDB", "err", err)
				continue
			}
			systems = append(systems, &influx{bin: bin})
		case "":
		default:
			return fmt.Errorf("unknown system %q", name)
		}
	}
	log.Info("generating the data set", "stations", int(math.Round(1000*cfg.scale)), "days", cfg.days, "interval", cfg.interval)
	ds, err := newDataset(cfg)
	if err != nil {
		return err
	}
	log.Info("data set", "ticks", ds.ticks, "lines", ds.lines, "values", ds.values, "from", ds.from, "to", ds.to)

	var results []result
	for _, sys := range systems {
		if cfg.queryOnly {
			// A missing directory would start an empty server and wait
			// minutes for data that never comes.
			if _, err := os.Stat(filepath.Join(work, sys.name(), "data")); err != nil {
				return fmt.Errorf("%s: no kept data in %s (run once with -keep -dir %s): %w", sys.name(), work, work, err)
			}
			results = append(results, result{name: sys.name()})
			continue
		}
		dir := filepath.Join(work, sys.name())
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
		r, err := measure(ctx, cfg, log, sys, dir, ds)
		if err != nil {
			return fmt.Errorf("%s: %w", sys.name(), err)
		}
		results = append(results, r)
	}
	if err := queryAll(ctx, cfg, log, systems, work, ds, results); err != nil {
		return err
	}
	report(out, cfg, ds, results)
	return nil
}

// measure runs one system through ingest and the clean stop.
func measure(ctx context.Context, cfg config, log *slog.Logger, sys system, dir string, ds *dataset) (result, error) {
	r := result{name: sys.name()}
	log = log.With("system", sys.name())
	p, err := sys.start(ctx, dir)
	if err != nil {
		return r, err
	}
	defer p.kill()
	cpu0, err := p.cpu()
	if err != nil {
		return r, err
	}

	log.Info("ingesting", "values", ds.values)
	begin := time.Now()
	if err := ingest(ctx, cfg, sys, ds); err != nil {
		return r, fmt.Errorf("ingest: %w", err)
	}
	if err := waitFor(ctx, 10*time.Minute, func() (bool, error) { return sys.stored(ctx, ds) }); err != nil {
		return r, fmt.Errorf("waiting for every point to be queryable: %w", err)
	}
	r.ingestWall = time.Since(begin)
	log.Info("ingested", "wall", r.ingestWall.Round(time.Millisecond))
	// Background work (merges, compactions, rollups) belongs to ingest:
	// wait until the server is idle.
	if err := p.waitIdle(ctx, 3*time.Minute); err != nil {
		log.Warn("server did not settle", "err", err)
	}
	if s, ok := sys.(settler); ok {
		if err := s.settle(ctx, dir); err != nil {
			log.Warn("server did not settle", "err", err)
		}
		if err := p.waitIdle(ctx, 3*time.Minute); err != nil {
			log.Warn("server did not settle", "err", err)
		}
	}
	if r.peakRSS, err = p.peakRSS(); err != nil {
		return r, err
	}
	total, err := p.stop(2 * time.Minute)
	if err != nil {
		return r, fmt.Errorf("clean stop: %w", err)
	}
	r.ingestCPU = total - cpu0
	if r.diskBytes, err = diskUsage(dir); err != nil {
		return r, err
	}
	r.storeBytes = sys.storeBytes(dir)
	log.Info("stopped", "cpu", r.ingestCPU.Round(time.Millisecond), "disk", r.diskBytes, "peak_rss", r.peakRSS)

	return r, nil
}

// ingest writes every tick's batch, cfg.writers requests at a time, in tick
// order.
func ingest(ctx context.Context, cfg config, sys system, ds *dataset) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ticks := make(chan int)
	errs := make(chan error, cfg.writers)
	var wg sync.WaitGroup
	for range cfg.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tick := range ticks {
				if err := sys.write(ctx, ds.body(tick)); err != nil {
					errs <- fmt.Errorf("tick %d: %w", tick, err)
					cancel()
					return
				}
			}
		}()
	}
	for tick := range ds.ticks {
		select {
		case ticks <- tick:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(ticks)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// settler is a system that needs more than idleness before it is measured.
type settler interface {
	settle(ctx context.Context, dir string) error
}

// query is one timed HTTP request with a check of its answer.
type query struct {
	url    string
	header http.Header
	check  func(body []byte) error
}

var client = &http.Client{Timeout: 2 * time.Minute}

func (q query) do(ctx context.Context) error {
	_, err := q.timed(ctx)
	return err
}

// timed sends the request and checks the answer; the time it returns ends
// when the last byte of the answer has arrived, before the check decodes
// it: the check's JSON decoding is the bench's own work (20–40 µs for Q1's
// answer here), and timing it would add to every system a cost that is
// none of theirs.
func (q query) timed(ctx context.Context) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, q.url, nil)
	if err != nil {
		return 0, err
	}
	for k, v := range q.header {
		req.Header[k] = v
	}
	begin := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(resp.Body)
	took := time.Since(begin)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body[:min(len(body), 300)])))
	}
	if q.check != nil {
		if err := q.check(body); err != nil {
			return 0, err
		}
	}
	return took, nil
}

// queryAll restarts every system on its data directory, as it would run
// on a cold box, and times the queries with the systems interleaved: each
// round sends a query once to every system, in an order that changes from
// round to round. The machine's speed drifts by a third over a minute here
// (the same server answered the same query in 0.30 ms one minute and
// 0.53 ms the next), so systems timed one after the other compare that
// drift more than themselves; interleaved, every system sees the same
// moments. The servers run side by side only now, idle but for the
// queries: ingest, CPU, disk and RSS were measured with each alone.
func queryAll(ctx context.Context, cfg config, log *slog.Logger, systems []system, work string, ds *dataset, results []result) error {
	procs := make([]*proc, len(systems))
	defer func() {
		for _, p := range procs {
			if p != nil {
				p.kill()
			}
		}
	}()
	for i, sys := range systems {
		p, err := sys.start(ctx, filepath.Join(work, sys.name()))
		if err != nil {
			return fmt.Errorf("%s: restart: %w", sys.name(), err)
		}
		procs[i] = p
		if err := waitFor(ctx, 5*time.Minute, func() (bool, error) { return sys.stored(ctx, ds) }); err != nil {
			return fmt.Errorf("%s: after restart: %w", sys.name(), err)
		}
	}
	for i, p := range procs {
		if err := p.waitIdle(ctx, time.Minute); err != nil {
			log.Warn("server did not settle after restart", "system", systems[i].name(), "err", err)
		}
	}
	qs := make([][3]query, len(systems))
	for i, sys := range systems {
		qs[i] = sys.queries(ds)
	}
	log.Info("timing queries", "runs", cfg.runs)
	for qi := range 3 {
		times, errs := timeInterleaved(ctx, len(systems), cfg.runs, func(i int) query { return qs[i][qi] })
		for i := range systems {
			if errs[i] != nil {
				results[i].queryErrors[qi] = errs[i].Error()
				log.Warn("query failed", "system", systems[i].name(), "query", qi+1, "err", errs[i])
				continue
			}
			t := times[i]
			results[i].queries[qi] = quantile(t, 0.5)
			log.Info("query times", "system", systems[i].name(), "query", qi+1, "min", quantile(t, 0), "p25", quantile(t, 0.25),
				"median", quantile(t, 0.5), "p75", quantile(t, 0.75), "max", quantile(t, 1))
		}
	}
	for i, p := range procs {
		if _, err := p.stop(2 * time.Minute); err != nil {
			log.Warn("stop after queries", "system", systems[i].name(), "err", err)
		}
		procs[i] = nil
	}
	return nil
}

// timeInterleaved times query q(i) of n systems: two warm-up requests
// each, then runs rounds in which every system still answering gets one
// request. The rounds go through every order of the systems in turn, so
// that each follows each other equally often: a plain rotation of three
// put CitySense after InfluxDB's 2 ms query in two rounds of three and
// VictoriaMetrics in one, and a request right after a heavy one is the
// slower. It returns each system's times sorted, or the error that took it out
// (its answer is checked every time).
func timeInterleaved(ctx context.Context, n, runs int, q func(i int) query) ([][]time.Duration, []error) {
	errs := make([]error, n)
	for i := range n {
		for range 2 {
			if errs[i] == nil {
				errs[i] = q(i).do(ctx)
			}
		}
	}
	orders := permutations(n)
	ds := make([][]time.Duration, n)
	for r := range runs {
		for _, i := range orders[r%len(orders)] {
			if errs[i] != nil {
				continue
			}
			var took time.Duration
			if took, errs[i] = q(i).timed(ctx); errs[i] == nil {
				ds[i] = append(ds[i], took)
			}
		}
	}
	for i := range n {
		slices.Sort(ds[i])
	}
	return ds, errs
}

// quantile of sorted durations; q=0.5 is the median the table reports.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1)+0.5)]
}

// permutations lists every order of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for at := 0; at <= len(p); at++ {
			out = append(out, slices.Insert(slices.Clone(p), at, n-1))
		}
	}
	return out
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out after %s (last: %v)", timeout, last)
}

// ensure finds a peer's binary, installing its Debian package when it is
// missing and allowed to.
func ensure(ctx context.Context, log *slog.Logger, bin, pkg string, noInstall bool) (string, error) {
	if path, err := exec.LookPath(bin); err == nil {
		return path, nil
	}
	if noInstall {
		return "", fmt.Errorf("%s not found and -no-install given", bin)
	}
	log.Info("installing a peer", "package", pkg)
	install := func() error {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", pkg)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install %s: %w: %s", pkg, err, lastLines(out, 5))
		}
		return nil
	}
	if err := install(); err != nil {
		// Stale package lists are the usual cause; refresh them once.
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
			return "", fmt.Errorf("%w; apt-get update: %v: %s", err, uerr, lastLines(out, 5))
		}
		if err := install(); err != nil {
			return "", err
		}
	}
	return exec.LookPath(bin)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// buildCollector builds the collector of this checkout.
func buildCollector(ctx context.Context, work string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(work, "citysense-collector")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./collector/cmd/citysense-collector")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the collector: %w: %s", err, out)
	}
	return bin, nil
}

// diskUsage is what the files under dir occupy: allocated blocks, so that
// sparse files count what they hold.
func diskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	return total, err
}

func report(out io.Writer, cfg config, ds *dataset, results []result) {
	commit := "unknown"
	if b, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		commit = strings.TrimSpace(string(b))
	}
	fmt.Fprintf(out, "\nCitySense bench — commit %s, %s/%s, %d CPUs\n", commit, runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(out, "data: %d stations × %d days every %s = %d lines, %d values (\"points\" below), %s … %s\n\n",
		ds.params.Stations, cfg.days, cfg.interval, ds.lines, ds.values, ds.from.Format(time.RFC3339), ds.to.Format(time.RFC3339))
	var cs *result
	for i := range results {
		if results[i].name == "CitySense" {
			cs = &results[i]
		}
	}
	type row struct {
		name  string
		value func(r *result) (float64, bool)
		unit  string
	}
	per := float64(ds.values)
	rows := []row{
		{"ingest CPU per point", func(r *result) (float64, bool) { return float64(r.ingestCPU.Nanoseconds()) / per, true }, "ns"},
		{"ingest rate (wall)", func(r *result) (float64, bool) { return per / r.ingestWall.Seconds(), true }, "points/s"},
		{"disk per point (data dir)", func(r *result) (float64, bool) { return float64(r.diskBytes) / per, true }, "B"},
		{"disk per point (store only)", func(r *result) (float64, bool) {
			if r.storeBytes == 0 {
				return float64(r.diskBytes) / per, true
			}
			return float64(r.storeBytes) / per, true
		}, "B"},
		{"peak RSS", func(r *result) (float64, bool) { return float64(r.peakRSS) / (1 << 20), true }, "MiB"},
		{"Q1 hourly mean, 1 station", func(r *result) (float64, bool) { return ms(r.queries[0]), r.queryErrors[0] == "" }, "ms"},
		{"Q2 latest, every station", func(r *result) (float64, bool) { return ms(r.queries[1]), r.queryErrors[1] == "" }, "ms"},
		{"Q3 daily max per district", func(r *result) (float64, bool) { return ms(r.queries[2]), r.queryErrors[2] == "" }, "ms"},
	}
	if cfg.queryOnly { // nothing was ingested: only the queries have figures
		rows = slices.DeleteFunc(rows, func(rw row) bool { return rw.unit != "ms" })
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t", r.name)
	}
	for _, r := range results {
		if cs != nil && r.name != cs.name {
			fmt.Fprintf(tw, "CS/%s\t", short(r.name))
		}
	}
	fmt.Fprintln(tw, "unit\t")
	for _, rw := range rows {
		fmt.Fprintf(tw, "%s\t", rw.name)
		for i := range results {
			if v, ok := rw.value(&results[i]); ok {
				fmt.Fprintf(tw, "%s\t", num(v))
			} else {
				fmt.Fprint(tw, "n/a\t")
			}
		}
		for i := range results {
			if cs == nil || results[i].name == cs.name {
				continue
			}
			a, okA := rw.value(cs)
			b, okB := rw.value(&results[i])
			if okA && okB && b != 0 {
				fmt.Fprintf(tw, "%.2f×\t", a/b)
			} else {
				fmt.Fprint(tw, "n/a\t")
			}
		}
		fmt.Fprintf(tw, "%s\t\n", rw.unit)
	}
	tw.Flush()
	for _, r := range results {
		for i, e := range r.queryErrors {
			if e != "" {
				fmt.Fprintf(out, "%s Q%d: %s\n", r.name, i+1, e)
			}
		}
		if r.note != "" {
			fmt.Fprintf(out, "%s: %s\n", r.name, r.note)
		}
	}
	fmt.Fprintln(out, "\nRatios are CitySense/peer: below 1 is better for CitySense on every row but the ingest rate.")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func num(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func short(name string) string {
	switch name {
	case "VictoriaMetrics":
		return "VM"
	case "InfluxDB":
		return "Influx"
	}
	return name
}
