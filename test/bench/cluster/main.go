// Command cluster measures collector ingest on one node and on a cluster of
// three (on 127.0.0.1–3, replication 2), with the same simulated data set
// written over the Influx API by the same writers spread over the nodes,
// and prints points per second of wall time and nanoseconds of CPU (all
// collector processes together) per point, and the ratios.
//
//	go run ./test/bench/cluster [-collector BIN] [-stations 500] [-ticks 120] [-writers 6]
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

type config struct {
	collector string
	stations  int
	ticks     int
	writers   int
	dir       string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.collector, "collector", "", "citysense-collector binary; empty builds ./collector/cmd/citysense-collector")
	flag.IntVar(&cfg.stations, "stations", 500, "simulated stations (six fields each)")
	flag.IntVar(&cfg.ticks, "ticks", 120, "readings per station, one a minute")
	flag.IntVar(&cfg.writers, "writers", 6, "concurrent write requests, spread over the nodes")
	flag.StringVar(&cfg.dir, "dir", "", "work directory; empty makes a temporary one")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(cfg, log); err != nil {
		log.Error("cluster bench failed", "err", err)
		os.Exit(1)
	}
}

func run(cfg config, log *slog.Logger) error {
	if cfg.dir == "" {
		d, err := os.MkdirTemp("", "citysense-cluster-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		cfg.dir = d
	}
	if cfg.collector == "" {
		cfg.collector = filepath.Join(cfg.dir, "citysense-collector")
		cmd := exec.Command("go", "build", "-o", cfg.collector, "./collector/cmd/citysense-collector")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build collector: %w", err)
		}
	}
	end := time.Now().UTC().Truncate(time.Minute)
	params := sim.Params{Stations: cfg.stations, Seed: 1, Interval: time.Minute, Start: end.Add(-time.Duration(cfg.ticks-1) * time.Minute)}
	bodies := make([][]byte, cfg.ticks)
	var values int64
	for t := range cfg.ticks {
		pts := sim.Generate(params, t)
		for _, p := range pts {
			values += int64(len(p.Fields))
		}
		b, err := protocols.AppendLines(nil, pts, protocols.Nanosecond)
		if err != nil {
			return err
		}
		bodies[t] = b
	}
	fmt.Printf("data: %d stations × %d ticks = %d values\n", cfg.stations, cfg.ticks, values)
	one, err := measure(cfg, log, 1, bodies, values)
	if err != nil {
		return fmt.Errorf("1 node: %w", err)
	}
	three, err := measure(cfg, log, 3, bodies, values)
	if err != nil {
		return fmt.Errorf("3 nodes: %w", err)
	}
	fmt.Printf("\n%-8s %14s %14s %12s\n", "nodes", "values/s", "CPU ns/value", "wall")
	for _, r := range []result{one, three} {
		fmt.Printf("%-8d %14.0f %14.0f %12s\n", r.nodes, float64(values)/r.wall.Seconds(), float64(r.cpu.Nanoseconds())/float64(values), r.wall.Round(time.Millisecond))
	}
	fmt.Printf("\n3 nodes / 1 node: throughput %.2f×, CPU per value %.2f× (replication 2: each value is stored twice)\n",
		one.wall.Seconds()/three.wall.Seconds(), float64(three.cpu)/float64(one.cpu))
	return nil
}

type result struct {
	nodes int
	wall  time.Duration
	cpu   time.Duration
}

type node struct {
	name, host, http, dir, cfg, token string
	cmd                               *exec.Cmd
}

func freeAddr(host string) (string, error) {
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// measure starts n nodes, writes every body (each to the next node in
// turn), waits until one node answers every value, and returns the wall
// time and the CPU all nodes used for it.
func measure(cfg config, log *slog.Logger, n int, bodies [][]byte, values int64) (result, error) {
	r := result{nodes: n}
	k := make([]byte, 32)
	rand.Read(k)
	key := base64.StdEncoding.EncodeToString(k)
	var nodes []*node
	defer func() {
		for _, nd := range nodes {
			if nd.cmd != nil && nd.cmd.ProcessState == nil {
				nd.cmd.Process.Kill()
				nd.cmd.Wait()
			}
		}
	}()
	var gossip0 string
	for i := range n {
		host := fmt.Sprintf("127.0.0.%d", i+1)
		nd := &node{name: fmt.Sprintf("c%d", i+1), host: host, dir: filepath.Join(cfg.dir, fmt.Sprintf("n%d-%d", n, i+1))}
		addrs := make([]string, 4)
		for j := range addrs {
			a, err := freeAddr(host)
			if err != nil {
				return r, err
			}
			addrs[j] = a
		}
		nd.http = addrs[0]
		text := fmt.Sprintf("node:\n  name: %s\n  data_dir: %s\nhttp:\n  listen: %s\nnats:\n  listen: %s\nlog:\n  level: warn\n  format: json\n", nd.name, nd.dir, addrs[0], addrs[1])
		if n > 1 {
			seeds := "[]"
			if i == 0 {
				gossip0 = addrs[2]
			} else {
				seeds = "[" + gossip0 + "]"
			}
			text += fmt.Sprintf("cluster:\n  gossip: %s\n  routes: %s\n  seeds: %s\n  replication: 2\n  key: %s\n", addrs[2], addrs[3], seeds, key)
		}
		nd.cfg = filepath.Join(cfg.dir, fmt.Sprintf("n%d-c%d.yaml", n, i+1))
		if err := os.WriteFile(nd.cfg, []byte(text), 0o600); err != nil {
			return r, err
		}
		out, err := exec.Command(cfg.collector, "token", "add", "bench", "--admin", "--data-dir", nd.dir).CombinedOutput()
		nd.token = regexp.MustCompile(`(?m)^cs_[A-Za-z0-9_-]{43}$`).FindString(string(out))
		if err != nil || nd.token == "" {
			return r, fmt.Errorf("token add: %v: %s", err, out)
		}
		logf, err := os.Create(filepath.Join(cfg.dir, fmt.Sprintf("n%d-c%d.log", n, i+1)))
		if err != nil {
			return r, err
		}
		nd.cmd = exec.Command(cfg.collector, "run", "-c", nd.cfg)
		if os.Getenv("CLUSTER_BENCH_PPROF") != "" {
			// Each node's profiler on its own address, port 6060.
			nd.cmd.Env = append(os.Environ(), "CITYSENSE_PPROF_LISTEN="+host+":6060")
		}
		nd.cmd.Stdout, nd.cmd.Stderr = logf, logf
		nd.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := nd.cmd.Start(); err != nil {
			return r, err
		}
		nodes = append(nodes, nd)
	}
	// Ready: every node's readyz, and in a cluster every partition with
	// two serving owners.
	if err := wait(3*time.Minute, func() error {
		for _, nd := range nodes {
			if err := get(nd, "/readyz", nil); err != nil {
				return err
			}
		}
		if n == 1 {
			return nil
		}
		var st struct {
			Partitions []struct {
				Owners []struct{ Serving bool } `json:"owners"`
			} `json:"partitions"`
		}
		if err := get(nodes[0], "/admin/v1/cluster", &st); err != nil {
			return err
		}
		for p, ps := range st.Partitions {
			s := 0
			for _, o := range ps.Owners {
				if o.Serving {
					s++
				}
			}
			if s != 2 {
				return fmt.Errorf("partition %d: %d serving owners", p, s)
			}
		}
		return nil
	}); err != nil {
		return r, fmt.Errorf("nodes not ready: %w", err)
	}
	log.Info("nodes ready", "nodes", n)
	cpu0, err := cpuOf(nodes)
	if err != nil {
		return r, err
	}
	begin := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, cfg.writers)
	for w := range cfg.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t := int(next.Add(1) - 1)
				if t >= len(bodies) {
					return
				}
				if err := write(nodes[(t+w)%len(nodes)], bodies[t]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return r, err
	}
	// Stored: the count of every series of one field, over all stations,
	// equals ticks on every node asked. Polled once a second: the
	// fanned-out count queries cost CPU too.
	if err := waitEvery(5*time.Minute, time.Second, func() error {
		for _, nd := range nodes {
			var res struct {
				Series []struct {
					Points [][2]float64 `json:"points"`
				} `json:"series"`
			}
			q := fmt.Sprintf("/api/v1/series?field=pm25&from=%d&to=%d&step=24h&agg=count", time.Now().Add(-48*time.Hour).Unix(), time.Now().Add(time.Hour).Unix())
			if err := get(nd, q, &res); err != nil {
				return err
			}
			got := 0.0
			for _, s := range res.Series {
				for _, p := range s.Points {
					got += p[1]
				}
			}
			if want := float64(len(bodies) * cfg.stations); got != want {
				return fmt.Errorf("%s: %v pm25 values, want %v", nd.name, got, want)
			}
		}
		return nil
	}); err != nil {
		return r, err
	}
	r.wall = time.Since(begin)
	cpu1, err := cpuOf(nodes)
	if err != nil {
		return r, err
	}
	r.cpu = cpu1 - cpu0
	log.Info("ingested", "nodes", n, "wall", r.wall.Round(time.Millisecond), "cpu", r.cpu.Round(time.Millisecond))
	for _, nd := range nodes {
		nd.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, nd := range nodes {
		nd.cmd.Wait()
	}
	return r, nil
}

var client = &http.Client{Timeout: 60 * time.Second}

func write(nd *node, body []byte) error {
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequest(http.MethodPost, "http://"+nd.http+"/api/v2/write?org=b&bucket=b&precision=ns", bytes.NewReader(body))
		req.Header.Set("Authorization", "Token "+nd.token)
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		if attempt == 5 {
			return err
		}
		time.Sleep(time.Second)
	}
}

func get(nd *node, path string, v any) error {
	req, _ := http.NewRequest(http.MethodGet, "http://"+nd.http+path, nil)
	req.Header.Set("Authorization", "Bearer "+nd.token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}

func wait(timeout time.Duration, cond func() error) error {
	return waitEvery(timeout, 200*time.Millisecond, cond)
}

func waitEvery(timeout, every time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(every)
	}
}

// cpuOf sums the user and system CPU of the nodes' processes.
func cpuOf(nodes []*node) (time.Duration, error) {
	var total time.Duration
	for _, nd := range nodes {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", nd.cmd.Process.Pid))
		if err != nil {
			return 0, err
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		if len(f) < 13 {
			return 0, errors.New("short /proc stat")
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+s) * 10 * time.Millisecond
	}
	return total, nil
}
