// Command agent measures the agent end to end against a real collector:
// throughput and memory under load, and memory at rest. `make bench` runs
// it after the Go benchmarks.
//
// Load: a collector on loopback (fresh data directory) and an agent whose
// sim input emits -stations stations × -ticks ticks as fast as the buffer
// takes them (realtime: false), through the buffer and the nats output to
// the collector's JetStream. The run ends when the agent's /status says
// every reading was confirmed by the collector. Figures: readings per
// second from the first reading read to the last confirmed (wall clock),
// the agent's CPU time per million readings, and its peak RSS (VmHWM; the
// anonymous and file-backed parts are sampled every 20 ms alongside).
//
// Idle: an agent with a -idle-stations sim input in real time (one tick
// every 10 s) and the same collector; after -settle its RSS is sampled for
// -idle-for and the largest value reported.
//
// It reports and never asserts: speed is not a test.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type config struct {
	bin          string
	stations     int
	ticks        int
	idleStations int
	settle       time.Duration
	idleFor      time.Duration
	timeout      time.Duration
	keep         bool
	agentEnv     string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "", "directory with citysense-agent and citysense-collector; empty builds them")
	flag.IntVar(&cfg.stations, "stations", 2000, "sim stations under load")
	flag.IntVar(&cfg.ticks, "ticks", 200, "sim ticks under load")
	flag.IntVar(&cfg.idleStations, "idle-stations", 50, "sim stations of the idle agent (real time, every 10 s)")
	flag.DurationVar(&cfg.settle, "settle", 20*time.Second, "idle agent: wait before sampling")
	flag.DurationVar(&cfg.idleFor, "idle-for", 10*time.Second, "idle agent: sample this long")
	flag.DurationVar(&cfg.timeout, "timeout", 3*time.Minute, "give up on the load run after this")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work directory")
	flag.StringVar(&cfg.agentEnv, "agent-env", "", "extra environment for the agents, comma-separated K=V (e.g. GOGC=50)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	work, err := os.MkdirTemp("", "citysense-bench-agent-")
	if err != nil {
		return err
	}
	if cfg.keep {
		fmt.Fprintln(os.Stderr, "work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	if cfg.bin == "" {
		cfg.bin = filepath.Join(work, "bin")
		for _, prog := range []string{"agent", "collector"} {
			cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(cfg.bin, "citysense-"+prog), "./"+prog+"/cmd/citysense-"+prog)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("build %s (run from the repository's root): %w", prog, err)
			}
		}
	}

	col, natsAddr, err := startCollector(ctx, cfg, work)
	if err != nil {
		return err
	}
	defer col.stop()

	load, err := loadRun(ctx, cfg, work, natsAddr)
	if err != nil {
		return err
	}
	idle, err := idleRun(ctx, cfg, work, natsAddr)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "\nAgent end to end (sim → buffer → nats → collector), %d CPUs, Go %s\n", runtime.NumCPU(), runtime.Version())
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "figure\tvalue\t\n")
	fmt.Fprintf(tw, "load: readings\t%d\t\n", load.points)
	fmt.Fprintf(tw, "load: readings/s (wall)\t%.0f\t\n", float64(load.points)/load.wall.Seconds())
	fmt.Fprintf(tw, "load: agent CPU s per million readings\t%.2f\t\n", load.cpu.Seconds()/float64(load.points)*1e6)
	fmt.Fprintf(tw, "load: agent RSS peak (VmHWM) MB\t%.1f\t\n", mb(load.hwm))
	fmt.Fprintf(tw, "load: agent RSS anon / file at the peak sample MB\t%.1f / %.1f\t\n", mb(load.peak.anon), mb(load.peak.file))
	fmt.Fprintf(tw, "idle: agent RSS max MB (%d stations, real time)\t%.1f\t\n", cfg.idleStations, mb(idle.max.rss))
	fmt.Fprintf(tw, "idle: agent RSS anon / file MB\t%.1f / %.1f\t\n", mb(idle.max.anon), mb(idle.max.file))
	return tw.Flush()
}

func mb(kb int64) float64 { return float64(kb) / 1024 }

// proc is a process the bench started, in its own process group.
type proc struct {
	cmd  *exec.Cmd
	done chan error
}

func startProc(bin string, args []string, env []string, logPath string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	return p, nil
}

// stop ends the process with SIGTERM, or SIGKILL after 30 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

var client = &http.Client{Timeout: 5 * time.Second}

func waitOK(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready within %s", url, timeout)
}

func startCollector(ctx context.Context, cfg config, work string) (*proc, string, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	natsAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	p, err := startProc(filepath.Join(cfg.bin, "citysense-collector"),
		[]string{"run", "--data-dir", filepath.Join(work, "collector"), "--http", httpAddr, "--nats", natsAddr, "--log-format", "json"},
		nil, filepath.Join(work, "collector.log"))
	if err != nil {
		return nil, "", fmt.Errorf("start collector: %w", err)
	}
	if err := waitOK(ctx, "http://"+httpAddr+"/readyz", time.Minute); err != nil {
		p.stop()
		return nil, "", fmt.Errorf("collector: %w (log in %s)", err, work)
	}
	return p, natsAddr, nil
}

type status struct {
	PointsRead int64 `json:"points_read"`
	PointsSent int64 `json:"points_sent"`
	InputsDone bool  `json:"inputs_done"`
}

func getStatus(httpAddr string) (status, error) {
	var st status
	resp, err := client.Get("http://" + httpAddr + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, errors.New(resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// mem is one sample of /proc/<pid>/status, in kB.
type mem struct{ rss, anon, file, hwm int64 }

func readMem(pid int) (mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return mem{}, err
	}
	var m mem
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			m.rss = n
		case "RssAnon":
			m.anon = n
		case "RssFile":
			m.file = n + m.file
		case "RssShmem":
			m.file += n
		case "VmHWM":
			m.hwm = n
		}
	}
	return m, nil
}

// cpuOf returns the user+system CPU time of a process from /proc.
func cpuOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(u+s) * 10 * time.Millisecond, nil // USER_HZ = 100
}

func agentConfig(work, name, httpAddr, natsAddr, input string) (string, error) {
	path := filepath.Join(work, name+".yaml")
	yaml := fmt.Sprintf(`agent:
  id: bench-%s
  data_dir: %s
  http: %s
log:
  level: warn
  format: json
inputs:
%s
outputs:
  - type: nats
    url: nats://%s
`, name, filepath.Join(work, name), httpAddr, input, natsAddr)
	return path, os.WriteFile(path, []byte(yaml), 0o600)
}

type loadResult struct {
	points int64
	wall   time.Duration
	cpu    time.Duration
	hwm    int64
	peak   mem
}

func (cfg config) env() []string {
	if cfg.agentEnv == "" {
		return nil
	}
	return strings.Split(cfg.agentEnv, ",")
}

func loadRun(ctx context.Context, cfg config, work, natsAddr string) (loadResult, error) {
	var r loadResult
	httpAddr, err := freeAddr()
	if err != nil {
		return r, err
	}
	// sim.Generate: 2 points per station and tick, one more on every third
	// station, and the station positions once, on tick 0.
	perTick := int64(2*cfg.stations + (cfg.stations+2)/3)
	want := perTick*int64(cfg.ticks) + int64(cfg.stations)
	path, err := agentConfig(work, "load", httpAddr, natsAddr, fmt.Sprintf(`  - type: sim
    stations: %d
    seed: 1
    interval: 10s
    start: "2026-03-01T00:00:00Z"
    ticks: %d
    realtime: false`, cfg.stations, cfg.ticks))
	if err != nil {
		return r, err
	}
	p, err := startProc(filepath.Join(cfg.bin, "citysense-agent"), []string{"run", "-c", path}, cfg.env(), filepath.Join(work, "agent-load.log"))
	if err != nil {
		return r, fmt.Errorf("start agent: %w", err)
	}
	defer p.stop()
	pid := p.cmd.Process.Pid
	var first time.Time
	deadline := time.Now().Add(cfg.timeout)
	for {
		if m, err := readMem(pid); err == nil && m.rss > r.peak.rss {
			r.peak = m
		}
		st, err := getStatus(httpAddr)
		now := time.Now()
		if err == nil {
			if first.IsZero() && st.PointsRead > 0 {
				first = now
			}
			if st.PointsSent >= want {
				r.points, r.wall = st.PointsSent, now.Sub(first)
				break
			}
		}
		if now.After(deadline) {
			return r, fmt.Errorf("load run: not every reading confirmed within %s (status %+v, err %v; logs in %s)", cfg.timeout, st, err, work)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-p.done:
			return r, fmt.Errorf("agent exited during the load run (log in %s)", work)
		case <-time.After(20 * time.Millisecond):
		}
	}
	m, err := readMem(pid)
	if err != nil {
		return r, err
	}
	r.hwm = m.hwm
	r.cpu, err = cpuOf(pid)
	return r, err
}

type idleResult struct{ max mem }

func idleRun(ctx context.Context, cfg config, work, natsAddr string) (idleResult, error) {
	var r idleResult
	httpAddr, err := freeAddr()
	if err != nil {
		return r, err
	}
	path, err := agentConfig(work, "idle", httpAddr, natsAddr, fmt.Sprintf(`  - type: sim
    stations: %d
    seed: 1
    interval: 10s
    realtime: true`, cfg.idleStations))
	if err != nil {
		return r, err
	}
	p, err := startProc(filepath.Join(cfg.bin, "citysense-agent"), []string{"run", "-c", path}, cfg.env(), filepath.Join(work, "agent-idle.log"))
	if err != nil {
		return r, fmt.Errorf("start agent: %w", err)
	}
	defer p.stop()
	if err := waitOK(ctx, "http://"+httpAddr+"/readyz", 30*time.Second); err != nil {
		return r, fmt.Errorf("idle agent: %w (log in %s)", err, work)
	}
	end := time.Now().Add(cfg.settle + cfg.idleFor)
	sampleFrom := time.Now().Add(cfg.settle)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-p.done:
			return r, fmt.Errorf("idle agent exited (log in %s)", work)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().Before(sampleFrom) {
			continue
		}
		m, err := readMem(p.cmd.Process.Pid)
		if err != nil {
			return r, err
		}
		if m.rss > r.max.rss {
			r.max = m
		}
	}
	return r, nil
}
