// Command mqtt measures QoS 1 MQTT throughput into the agent and on to a
// collector: stock Debian mosquitto (only a loopback listener added to its
// configuration), N agent connections sharing one subscription, 5-field
// JSON payloads acknowledged only after the agent's fsync'd buffer commit,
// forwarded over NATS to a collector. `make bench` runs it.
//
// It starts its own mosquitto on a free loopback port, a collector and an
// agent (built from this checkout, or taken from -bin), publishes -n
// messages (at most for -max-time) from -publishers connections, and
// prints messages/s into the agent (publish start to the last message in
// its buffer) and end to end (to the last point handed to the collector's
// store), with the messages lost and duplicated: every payload carries a
// unique counter and timestamp, the collector's series give back the
// counters that arrived, and its ingest counter the points it received.
//
// Stock mosquitto queues at most 1000 messages per client (a publisher
// faster than the subscribers makes it drop QoS 1 messages beyond that,
// which no subscriber can prevent), so the publishers hold at most -window
// messages ahead of what the agent has taken. With TELEGRAF=/path/to/telegraf
// (or -telegraf) the same run is made with Telegraf's mqtt_consumer and
// influxdb_v2 output (memory buffer) beside it, paced on what reached the
// collector. It reports and never asserts.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citysense/citysense/protocols/mqtt"
)

type config struct {
	n, connections, publishers, window, stations int
	maxTime, flushInterval                       time.Duration
	bin, telegraf, work                          string
	keep                                         bool
}

func main() {
	var cfg config
	flag.IntVar(&cfg.n, "n", 300000, "messages to publish")
	flag.DurationVar(&cfg.maxTime, "max-time", 90*time.Second, "give up publishing after this long")
	flag.IntVar(&cfg.connections, "connections", 8, "agent MQTT connections sharing the subscription")
	flag.IntVar(&cfg.publishers, "publishers", 4, "publishing connections")
	flag.IntVar(&cfg.window, "window", 0, "most messages published ahead of what the subscriber took (0: 400 per agent connection)")
	flag.DurationVar(&cfg.flushInterval, "flush-interval", time.Millisecond, "the agent's buffer.flush_interval (its default is 10ms)")
	flag.IntVar(&cfg.stations, "stations", 100, "stations (topics) the messages are spread over")
	flag.StringVar(&cfg.bin, "bin", "", "directory with citysense-agent and citysense-collector (empty: build them)")
	flag.StringVar(&cfg.telegraf, "telegraf", os.Getenv("TELEGRAF"), "telegraf binary to measure beside the agent")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work directory")
	flag.Parse()
	if cfg.n < 1 || cfg.connections < 1 || cfg.publishers < 1 || cfg.stations < 1 {
		fmt.Fprintln(os.Stderr, "mqtt bench: -n, -connections, -publishers and -stations must be positive")
		os.Exit(2)
	}
	if cfg.window == 0 {
		cfg.window = 400 * cfg.connections
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mqtt bench:", err)
		os.Exit(1)
	}
}

// result is one subscriber's figures.
type result struct {
	name                     string
	published                int
	intoSubscriber, toStore  time.Duration // from the first publish
	lost, duplicated, stored int
	note                     string
	cpu                      map[string]time.Duration // CPU used during the run, per process
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	work, err := os.MkdirTemp("", "citysense-bench-mqtt-")
	if err != nil {
		return err
	}
	cfg.work = work
	if !cfg.keep {
		defer os.RemoveAll(work)
	} else {
		fmt.Fprintln(out, "work directory:", work)
	}
	if cfg.bin == "" {
		cfg.bin = filepath.Join(work, "bin")
		for _, prog := range []string{"agent", "collector"} {
			cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(cfg.bin, "citysense-"+prog), "./"+prog+"/cmd/citysense-"+prog)
			cmd.Dir = repoRoot()
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("build %s: %v: %s", prog, err, b)
			}
		}
	}
	var results []result
	r, err := runAgent(ctx, cfg)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	results = append(results, r)
	if cfg.telegraf != "" {
		r, err := runTelegraf(ctx, cfg)
		if err != nil {
			return fmt.Errorf("telegraf: %w", err)
		}
		results = append(results, r)
	}
	report(out, cfg, results)
	return nil
}

// repoRoot is the module's root: the nearest directory above the working
// directory that holds go.mod (make runs from the root).
func repoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// rig is one run's mosquitto and collector.
type rig struct {
	cfg          config
	dir          string
	broker       string
	httpC, natsC string
	procs        []*proc
}

func (r *rig) close() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		r.procs[i].stop(30 * time.Second)
	}
}

func newRig(ctx context.Context, cfg config, name string) (*rig, error) {
	r := &rig{cfg: cfg, dir: filepath.Join(cfg.work, name)}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("/usr/sbin/mosquitto")
	if err != nil {
		return nil, fmt.Errorf("mosquitto (Debian package mosquitto): %w", err)
	}
	r.broker = freeAddr()
	_, port, _ := net.SplitHostPort(r.broker)
	// Stock limits: only a listener is configured.
	conf := filepath.Join(r.dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\n", port)), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc("mosquitto", bin, []string{"-c", conf}, filepath.Join(r.dir, "mosquitto.log"))
	if err != nil {
		return nil, err
	}
	r.procs = append(r.procs, p)
	if err := waitFor(ctx, 10*time.Second, func() (bool, error) {
		c, err := net.Dial("tcp", r.broker)
		if err == nil {
			c.Close()
		}
		return err == nil, err
	}); err != nil {
		r.close()
		return nil, fmt.Errorf("mosquitto: %w", err)
	}
	r.httpC, r.natsC = freeAddr(), freeAddr()
	p, err = startProc("collector", filepath.Join(cfg.bin, "citysense-collector"),
		[]string{"run", "--data-dir", filepath.Join(r.dir, "collector"), "--http", r.httpC, "--nats", r.natsC, "--log-format", "json"},
		filepath.Join(r.dir, "collector.log"))
	if err != nil {
		r.close()
		return nil, err
	}
	r.procs = append(r.procs, p)
	if err := waitFor(ctx, 60*time.Second, func() (bool, error) { return httpStatus("http://"+r.httpC+"/readyz") == http.StatusOK, nil }); err != nil {
		r.close()
		return nil, fmt.Errorf("collector: %w (log %s)", err, p.log)
	}
	return r, nil
}

// storedPoints is how many points the collector handed to its store.
func (r *rig) storedPoints() (float64, error) {
	return metric("http://"+r.httpC+"/metrics", `citysense_ingest_points_total{stream="CS_SERIES"}`)
}

// receivedPoints is how many points the collector took from CS_RAW.
func (r *rig) receivedPoints() (float64, error) {
	return metric("http://"+r.httpC+"/metrics", `citysense_ingest_points_total{stream="CS_RAW"}`)
}

func runAgent(ctx context.Context, cfg config) (result, error) {
	res := result{name: fmt.Sprintf("citysense-agent (%d conns, flush %s)", cfg.connections, cfg.flushInterval)}
	r, err := newRig(ctx, cfg, "agent")
	if err != nil {
		return res, err
	}
	defer r.close()
	httpA := freeAddr()
	conf := filepath.Join(r.dir, "agent.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`agent:
  id: bench-mqtt
inputs:
  - type: mqtt
    broker: tcp://%s
    client_id: bench-agent
    qos: 1
    connections: %d
    topics:
      - filter: bench/+/+
        template: bench/{district}/{station}
        measurement: air
        json: {time_path: ts, time_format: unix_ms}
buffer:
  flush_interval: %s
outputs:
  - type: nats
`, r.broker, cfg.connections, cfg.flushInterval)), 0o600); err != nil {
		return res, err
	}
	p, err := startProc("agent", filepath.Join(cfg.bin, "citysense-agent"),
		[]string{"run", "-c", conf, "--data-dir", filepath.Join(r.dir, "agent"), "--http", httpA, "--collector", "nats://" + r.natsC, "--log-format", "json"},
		filepath.Join(r.dir, "agent.log"))
	if err != nil {
		return res, err
	}
	r.procs = append(r.procs, p)
	read := func() (int, error) {
		var st struct {
			PointsRead int `json:"points_read"`
		}
		err := getJSON("http://"+httpA+"/status", &st)
		return st.PointsRead, err
	}
	// The buffer's group commit: how many messages share one fsync'd
	// commit, and what one costs.
	commits := func() (n, seconds float64) {
		u := "http://" + httpA + "/metrics"
		n, _ = metric(u, "citysense_agent_buffer_commits_total")
		seconds, _ = metric(u, "citysense_agent_buffer_commit_duration_seconds_sum")
		return n, seconds
	}
	return measure(ctx, r, res, "bench", read, commits)
}

// measure publishes and counts. topicRoot/<district>/<station> carries the
// messages; taken reports how many messages the subscriber has taken.
func measure(ctx context.Context, r *rig, res result, topicRoot string, taken func() (int, error), commits func() (n, seconds float64)) (result, error) {
	cfg := r.cfg
	pubs := make([]paho.Client, cfg.publishers)
	for i := range pubs {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + r.broker).
			SetClientID(fmt.Sprintf("bench-pub-%d", i)).SetCleanSession(true).SetWriteTimeout(10 * time.Second).
			// The agent's buffered connection: the publishers' system calls
			// would otherwise take CPU from what is measured.
			SetCustomOpenConnectionFn(mqtt.OpenBuffered))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return res, fmt.Errorf("publisher connect: %v", tok.Error())
		}
		defer c.Disconnect(250)
		pubs[i] = c
	}
	// Probe: counters below zero, the hour before the measured range, so
	// they are told apart and not counted. Wait until probes flow through
	// and the collector has stored what the subscriber took.
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Second).UnixMilli()
	probe := 0
	if err := waitFor(ctx, 60*time.Second, func() (bool, error) {
		probe++
		pubs[0].Publish(fmt.Sprintf("%s/d00/probe", topicRoot), 1, false, payload(start-int64(probe)*1000, -probe)).Wait()
		n, err := taken()
		return n > 0 && n >= min(probe, 10), err
	}); err != nil {
		return res, fmt.Errorf("subscriber never took a probe: %w", err)
	}
	time.Sleep(time.Second) // the last probes
	var base0, recv0 float64
	if err := waitFor(ctx, 60*time.Second, func() (bool, error) {
		n, err := taken()
		if err != nil {
			return false, err
		}
		s, err := r.storedPoints()
		if err != nil {
			return false, err
		}
		base0 = s
		recv0, _ = r.receivedPoints()
		return int(s) >= n, nil
	}); err != nil {
		return res, fmt.Errorf("probes never reached the store: %w", err)
	}
	taken0, _ := taken()
	var commits0, commitSec0 float64
	if commits != nil {
		commits0, commitSec0 = commits()
	}
	cpu0 := map[string]time.Duration{}
	for _, p := range r.procs {
		cpu0[p.name], _ = p.cpu()
	}
	cpu0["publishers"], _ = pidCPU(os.Getpid())

	// Publish, holding at most window messages ahead of the subscriber.
	var next, sent atomic.Int64 // counters handed out, messages published
	var progress atomic.Int64   // messages the subscriber took
	t0 := time.Now()
	deadline := t0.Add(cfg.maxTime)
	pollDone := make(chan struct{})
	var intoSub time.Duration
	var target atomic.Int64 // what the subscriber must take: -n, or fewer when -max-time cut publishing short
	target.Store(int64(cfg.n))
	go func() {
		defer close(pollDone)
		for time.Now().Before(deadline.Add(60 * time.Second)) {
			n, err := taken()
			if err == nil {
				progress.Store(int64(n - taken0))
				if int64(n-taken0) >= target.Load() {
					intoSub = time.Since(t0)
					return
				}
			}
			if ctx.Err() != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	var pubErr atomic.Value
	for _, c := range pubs {
		wg.Go(func() {
			var toks []paho.Token
			for {
				// Every counter handed out is published, so that those
				// published are exactly 0 … sent-1.
				if time.Now().After(deadline) || ctx.Err() != nil {
					break
				}
				i := next.Add(1) - 1
				if i >= int64(cfg.n) {
					break
				}
				for i-progress.Load() >= int64(cfg.window) && time.Now().Before(deadline) && ctx.Err() == nil {
					time.Sleep(200 * time.Microsecond)
				}
				topic := fmt.Sprintf("%s/d%02d/s%04d", topicRoot, i%8+1, i%int64(cfg.stations))
				toks = append(toks, c.Publish(topic, 1, false, payload(start+i, int(i))))
				sent.Add(1)
				if len(toks) >= 256 {
					for _, t := range toks {
						if t.Wait(); t.Error() != nil {
							pubErr.Store(t.Error())
						}
					}
					toks = toks[:0]
				}
			}
			for _, t := range toks {
				if t.Wait(); t.Error() != nil {
					pubErr.Store(t.Error())
				}
			}
		})
	}
	wg.Wait()
	res.published = int(sent.Load())
	target.Store(int64(res.published))
	if e, ok := pubErr.Load().(error); ok {
		return res, fmt.Errorf("publish: %w", e)
	}
	<-pollDone
	if intoSub == 0 {
		res.note = fmt.Sprintf("subscriber took %d of %d", progress.Load(), res.published)
	}
	res.intoSubscriber = intoSub
	// End to end: until the store holds as many as were published, or
	// nothing moves for 15 s.
	last, lastMove := 0.0, time.Now()
	for ctx.Err() == nil {
		s, err := r.storedPoints()
		if err == nil && s != last {
			last, lastMove = s, time.Now()
		}
		if int(last-base0) >= res.published {
			res.toStore = time.Since(t0)
			break
		}
		if time.Since(lastMove) > 15*time.Second {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if commits != nil {
		n, sec := commits()
		if n -= commits0; n > 0 {
			res.note = strings.TrimPrefix(res.note+fmt.Sprintf("; %.0f msgs per fsync'd commit, %.2f ms per commit", float64(res.published)/n, (sec-commitSec0)/n*1000), "; ")
		}
	}
	res.cpu = map[string]time.Duration{}
	for _, p := range r.procs {
		c, _ := p.cpu()
		res.cpu[p.name] = c - cpu0[p.name]
	}
	c, _ := pidCPU(os.Getpid()) // this program: the publishers, mostly
	res.cpu["publishers"] = c - cpu0["publishers"]
	time.Sleep(time.Second) // late duplicates would arrive now
	// Exact: which counters arrived.
	seen := make([]uint8, res.published)
	for st := range cfg.stations {
		vals, err := seriesValues(r.httpC, fmt.Sprintf("s%04d", st), start/1000-1, (start+int64(cfg.n))/1000+1)
		if err != nil {
			return res, err
		}
		for _, v := range vals {
			if i := int(v); i >= 0 && i < len(seen) {
				seen[i] = min(seen[i]+1, 2)
			}
		}
	}
	for _, c := range seen {
		if c == 0 {
			res.lost++
		} else {
			res.stored++
		}
	}
	recv1, _ := r.receivedPoints()
	res.duplicated = max(0, int(recv1-recv0)-res.stored)
	return res, nil
}

// payload is a 5-field JSON reading; counter makes loss and duplicates exact.
func payload(tsMillis int64, counter int) string {
	return fmt.Sprintf(`{"ts":%d,"pm25":%d.5,"pm10":%d.25,"no2":31.7,"temperature":4.5,"counter":%d}`, tsMillis, 10+counter%40, 20+counter%30, counter)
}

func seriesValues(httpC, station string, from, to int64) ([]float64, error) {
	q := url.Values{"measurement": {"air"}, "field": {"counter"}, "station": {station}, "from": {strconv.FormatInt(from, 10)}, "to": {strconv.FormatInt(to, 10)}}
	var ans struct {
		Series []struct {
			Points [][2]float64 `json:"points"`
		} `json:"series"`
	}
	if err := getJSON("http://"+httpC+"/api/v1/series?"+q.Encode(), &ans); err != nil {
		return nil, err
	}
	var out []float64
	for _, s := range ans.Series {
		for _, p := range s.Points {
			out = append(out, p[1])
		}
	}
	return out, nil
}

func runTelegraf(ctx context.Context, cfg config) (result, error) {
	res := result{name: "telegraf (memory buffer)"}
	r, err := newRig(ctx, cfg, "telegraf")
	if err != nil {
		return res, err
	}
	defer r.close()
	tok, err := exec.CommandContext(ctx, filepath.Join(cfg.bin, "citysense-collector"), "token", "add", "bench-telegraf", "--data-dir", filepath.Join(r.dir, "collector")).Output()
	if err != nil {
		return res, fmt.Errorf("issue a write token: %w", err)
	}
	conf := filepath.Join(r.dir, "telegraf.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`[agent]
  interval = "1s"
  flush_interval = "100ms"
  metric_batch_size = 5000
  metric_buffer_limit = 1000000
  omit_hostname = true

[[inputs.mqtt_consumer]]
  servers = ["tcp://%s"]
  topics = ["tg/+/+"]
  qos = 1
  client_id = "bench-telegraf"
  persistent_session = true
  max_undelivered_messages = 1000
  data_format = "json"
  json_time_key = "ts"
  json_time_format = "unix_ms"
  name_override = "air"
  topic_tag = ""
  [[inputs.mqtt_consumer.topic_parsing]]
    topic = "tg/+/+"
    tags = "_/district/station"

[[outputs.influxdb_v2]]
  urls = ["http://%s"]
  token = "%s"
  organization = "city"
  bucket = "bench"
`, r.broker, r.httpC, strings.TrimSpace(string(tok)))), 0o600); err != nil {
		return res, err
	}
	p, err := startProc("telegraf", cfg.telegraf, []string{"--config", conf}, filepath.Join(r.dir, "telegraf.log"))
	if err != nil {
		return res, err
	}
	r.procs = append(r.procs, p)
	// Telegraf has no progress counter of its own here: pace on what the
	// collector stored.
	stored := func() (int, error) {
		v, err := r.storedPoints()
		return int(v), err
	}
	return measure(ctx, r, res, "tg", stored, nil)
}

func report(out io.Writer, cfg config, results []result) {
	fmt.Fprintf(out, "\nMQTT QoS 1 throughput: stock mosquitto, %d messages of 5-field JSON, %d publishers, at most %d ahead of the subscriber\n", cfg.n, cfg.publishers, cfg.window)
	fmt.Fprintf(out, "%-34s %10s %14s %14s %8s %8s\n", "SUBSCRIBER", "PUBLISHED", "INTO IT msg/s", "END2END msg/s", "LOST", "DUPS")
	rate := func(n int, d time.Duration) string {
		if d <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(n)/d.Seconds())
	}
	for _, r := range results {
		fmt.Fprintf(out, "%-34s %10d %14s %14s %8d %8d", r.name, r.published, rate(r.published, r.intoSubscriber), rate(r.published, r.toStore), r.lost, r.duplicated)
		if r.note != "" {
			fmt.Fprintf(out, "  (%s)", r.note)
		}
		fmt.Fprintln(out)
		fmt.Fprintf(out, "%-34s", "  CPU s during the run:")
		for _, name := range []string{"mosquitto", "agent", "telegraf", "collector", "publishers"} {
			if c, ok := r.cpu[name]; ok {
				fmt.Fprintf(out, " %s %.2f (%.0f msg/CPU-s)", name, c.Seconds(), float64(r.published)/c.Seconds())
			}
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintln(out, "(CPU seconds are user+system from /proc; on a shared machine msg/CPU-s is steadier than msg/s.)")
	if len(results) == 2 && results[1].intoSubscriber > 0 && results[0].intoSubscriber > 0 {
		fmt.Fprintf(out, "ratio agent/telegraf (into subscriber): %.2f\n", results[1].intoSubscriber.Seconds()/results[0].intoSubscriber.Seconds())
	}
}

// proc is a process the bench started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(name, bin string, args []string, logPath string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// cpu is the user+system CPU time the process used so far.
func (p *proc) cpu() (time.Duration, error) { return pidCPU(p.cmd.Process.Pid) }

// pidCPU is the user+system CPU time process pid used so far.
func pidCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces): state is 3rd,
	// utime the 14th and stime the 15th of the whole line.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// stop sends SIGTERM and kills after timeout.
func (p *proc) stop(timeout time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
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
		case <-time.After(50 * time.Millisecond):
		}
	}
	if last == nil {
		last = errors.New("condition not met")
	}
	return fmt.Errorf("timed out after %s: %w", timeout, last)
}

var client = &http.Client{Timeout: 30 * time.Second}

func httpStatus(u string) int {
	resp, err := client.Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func getJSON(u string, v any) error {
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %.200s", u, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// metric returns the value of one sample on a Prometheus text page.
func metric(u, name string) (float64, error) {
	resp, err := client.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") {
			return strconv.ParseFloat(line[len(name)+1:], 64)
		}
	}
	return 0, sc.Err()
}
