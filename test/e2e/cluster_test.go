package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clNode is one collector of a test cluster on its own loopback address.
type clNode struct {
	name, host          string
	http, nats          string
	gossip, routes, cfg string
	dataDir             string
	netns               string // network namespace to run in, "" for the test's own
	p                   *proc
	token               atomic.Value // string: this node's write and admin token
}

func (n *clNode) base() string { return "http://" + n.http }

// freeAddrOn is freeAddr on another loopback address (127.0.0.2 and up
// answer on Linux without configuration).
func freeAddrOn(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// clCluster is three collector processes on 127.0.0.1–3 sharing a key;
// only the first is named as a seed.
type clCluster struct {
	t     *testing.T
	key   string
	nodes []*clNode
}

// newCluster configures n nodes, on 127.0.0.1… with free ports, or, with
// hosts, on hosts(i) (a network namespace's address) with fixed ports.
func newCluster(t *testing.T, n int, hosts ...func(i int) string) *clCluster {
	k := make([]byte, 32)
	rand.Read(k)
	c := &clCluster{t: t, key: base64.StdEncoding.EncodeToString(k)}
	for i := range n {
		nd := &clNode{name: fmt.Sprintf("c%d", i+1), dataDir: t.TempDir()}
		if len(hosts) > 0 {
			nd.host = hosts[0](i)
			nd.http, nd.nats, nd.gossip, nd.routes = nd.host+":8080", nd.host+":4222", nd.host+":7946", nd.host+":6222"
		} else {
			nd.host = fmt.Sprintf("127.0.0.%d", i+1)
			nd.http, nd.nats, nd.gossip, nd.routes = freeAddrOn(t, nd.host), freeAddrOn(t, nd.host), freeAddrOn(t, nd.host), freeAddrOn(t, nd.host)
		}
		c.nodes = append(c.nodes, nd)
	}
	for i, nd := range c.nodes {
		seeds := "[]"
		if i > 0 {
			seeds = "[" + c.nodes[0].gossip + "]"
		}
		nd.cfg = writeFile(t, nd.name+".yaml", fmt.Sprintf(`
node:
  name: %s
  data_dir: %s
http:
  listen: %s
nats:
  listen: %s
cluster:
  gossip: %s
  routes: %s
  seeds: %s
  replication: 2
  key: %s
log:
  level: info
  format: json
`, nd.name, nd.dataDir, nd.http, nd.nats, nd.gossip, nd.routes, seeds, c.key))
		if out, code := runCmd(t, "citysense-collector", "check", "-c", nd.cfg); code != 0 {
			t.Fatalf("check %s: %s", nd.name, out)
		}
	}
	return c
}

// start runs node i and, when it has none yet, gives it a token.
func (c *clCluster) start(i int) {
	t, nd := c.t, c.nodes[i]
	if nd.netns != "" {
		nd.p = startExec(t, "citysense-collector", "ip", "netns", "exec", nd.netns, filepath.Join(binDir, "citysense-collector"), "run", "-c", nd.cfg)
	} else {
		nd.p = start(t, "citysense-collector", "run", "-c", nd.cfg)
	}
	waitFor(t, nd.name+" /healthz", 60*time.Second, func() (bool, error) { return httpOK(nd.base() + "/healthz") })
	if tok, _ := nd.token.Load().(string); tok == "" {
		out, code := runCmd(t, "citysense-collector", "token", "add", "e2e", "--admin", "--data-dir", nd.dataDir)
		tok = regexp.MustCompile(`(?m)^cs_[A-Za-z0-9_-]{43}$`).FindString(out)
		if code != 0 || tok == "" {
			t.Fatalf("token add on %s (exit %d):\n%s", nd.name, code, out)
		}
		nd.token.Store(tok)
	}
}

// kill ends node i with SIGKILL.
func (c *clCluster) kill(i int) {
	nd := c.nodes[i]
	_ = nd.p.cmd.Process.Kill()
	<-nd.p.done
	nd.p.done <- nil
}

type clStatus struct {
	Node    string `json:"node"`
	Members []struct {
		Name, State string
		Serving     int `json:"partitions_serving"`
	} `json:"members"`
	Partitions []struct {
		Partition int `json:"partition"`
		Owners    []struct {
			Node    string `json:"node"`
			Serving bool   `json:"serving"`
			Pending int64  `json:"pending"`
		} `json:"owners"`
	} `json:"partitions"`
}

func (c *clCluster) status(i int) (clStatus, error) {
	nd := c.nodes[i]
	var st clStatus
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, nd.base()+"/admin/v1/cluster", nil)
	tok, _ := nd.token.Load().(string)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s: %s", resp.Status, body)
	}
	return st, json.Unmarshal(body, &st)
}

// waitServing waits until node i reports want alive members and every
// partition with two serving owners.
func (c *clCluster) waitServing(i, want int, timeout time.Duration) clStatus {
	var st clStatus
	waitFor(c.t, fmt.Sprintf("%s: %d members, every partition served by 2", c.nodes[i].name, want), timeout, func() (bool, error) {
		var err error
		if st, err = c.status(i); err != nil {
			return false, err
		}
		alive := 0
		for _, m := range st.Members {
			if m.State == "alive" {
				alive++
			}
		}
		if alive != want {
			return false, fmt.Errorf("%d alive members", alive)
		}
		for _, p := range st.Partitions {
			serving := 0
			for _, o := range p.Owners {
				if o.Serving {
					serving++
				}
			}
			if serving != 2 {
				return false, fmt.Errorf("partition %d: %d serving owners", p.Partition, serving)
			}
		}
		return len(st.Partitions) > 0, nil
	})
	return st
}

// clWriter writes batches of clStations points over the Influx API to
// whichever node answers, and remembers what was acknowledged.
type clWriter struct {
	c        *clCluster
	id       string
	start    int64
	mu       sync.Mutex
	acked    map[int]bool // batch seq
	seq      int          // the next batch's
	retries  atomic.Int64
	failures atomic.Int64
}

const clStations = 20

func (w *clWriter) run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for next := 0; ; w.seq++ {
		seq := w.seq
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var b bytes.Buffer
		ts := w.start + int64(seq)*int64(10*time.Millisecond)
		for s := range clStations {
			fmt.Fprintf(&b, "clw,writer=%s,station=s%02d v=%di %d\n", w.id, s, seq, ts)
		}
		// A batch is retried on the next node until one acknowledges it;
		// a batch no node took within 20 s is given up and not counted.
		deadline := time.Now().Add(20 * time.Second)
		acked := false
		for !acked && time.Now().Before(deadline) {
			nd := w.c.nodes[next%len(w.c.nodes)]
			next++
			tok, _ := nd.token.Load().(string)
			req, _ := http.NewRequest(http.MethodPost, nd.base()+"/api/v2/write?org=e2e&bucket=e2e&precision=ns", bytes.NewReader(b.Bytes()))
			req.Header.Set("Authorization", "Token "+tok)
			resp, err := clWriteClient.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusNoContent {
					w.mu.Lock()
					w.acked[seq] = true
					w.mu.Unlock()
					acked = true
					continue
				}
			}
			w.retries.Add(1)
			time.Sleep(50 * time.Millisecond)
		}
		if !acked {
			w.failures.Add(1)
		}
	}
}

var clWriteClient = &http.Client{Timeout: 15 * time.Second}

// clCounts asks node i for the number and sum of v per writer+station.
// counts asks node i (path: the public series endpoint, or the node's own
// copy with an admin token) for the number and sum of v per
// writer+station: from the raw points, or with rollup from daily count and
// sum aggregates (which the store computes from its rollups).
func (c *clCluster) counts(i int, from, to int64, path, token string, rollup ...bool) (map[string][2]int64, bool, error) {
	var res struct {
		Series []struct {
			Tags   map[string]string `json:"tags"`
			Points [][2]float64      `json:"points"`
		} `json:"series"`
		Partial bool `json:"partial"`
	}
	out := map[string][2]int64{}
	partial := false
	queries := []string{""}
	if len(rollup) > 0 && rollup[0] {
		queries = []string{"&step=24h&agg=count&group_by=writer,station", "&step=24h&agg=sum&group_by=writer,station"}
	}
	for k, q := range queries {
		url := fmt.Sprintf("%s%s?measurement=clw&field=v&from=%d&to=%d%s", c.nodes[i].base(), path, from/1e9, to/1e9+1, q)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := getJSONAuth(ctx, url, token, &res)
		cancel()
		if err != nil {
			return nil, false, err
		}
		partial = partial || res.Partial
		for _, s := range res.Series {
			if s.Tags["writer"] == "probe" {
				continue // TestCluster_NetworkPartition's probes of the minority
			}
			key := s.Tags["writer"] + "/" + s.Tags["station"]
			v := out[key]
			for _, p := range s.Points {
				if q == "" {
					v[0]++
					v[1] += int64(p[1])
				} else {
					v[k] += int64(p[1])
				}
			}
			out[key] = v
		}
	}
	return out, partial, nil
}

// expected is what the writers were acknowledged, in clCounts's shape.
func clExpected(ws ...*clWriter) (map[string][2]int64, int) {
	out := map[string][2]int64{}
	n := 0
	for _, w := range ws {
		w.mu.Lock()
		for seq := range w.acked {
			for s := range clStations {
				key := fmt.Sprintf("%s/s%02d", w.id, s)
				v := out[key]
				v[0]++
				v[1] += int64(seq)
				out[key] = v
				n++
			}
		}
		w.mu.Unlock()
	}
	return out, n
}

func clDiff(got, want map[string][2]int64) string {
	var d []string
	for k, w := range want {
		if g := got[k]; g != w {
			d = append(d, fmt.Sprintf("%s: got count %d sum %d, want %d and %d", k, g[0], g[1], w[0], w[1]))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("%s: unexpected, count %d", k, g[0]))
		}
	}
	if len(d) > 8 {
		d = append(d[:8], fmt.Sprintf("… %d more", len(d)-8))
	}
	return strings.Join(d, "\n")
}

// verify waits until every live node answers exactly what was acknowledged.
// When one does not, it reports each node's own copy of the series that
// differ (GET /admin/v1/local/series), to tell which node misses what.
func (c *clCluster) verify(live []int, ws ...*clWriter) {
	want, n := clExpected(ws...)
	from, to := ws[0].start, time.Now().Add(time.Hour).UnixNano()
	for _, i := range live {
		deadline := time.Now().Add(60 * time.Second)
		var last string
		for {
			got, partial, err := c.counts(i, from, to, "/api/v1/series", "")
			if err == nil {
				last = clDiff(got, want)
				if last == "" && !partial {
					// The daily aggregates must agree with the raw points.
					roll, _, err := c.counts(i, from, to, "/api/v1/series", "", true)
					if err != nil {
						c.t.Fatalf("%s: daily count and sum: %v", c.nodes[i].name, err)
					}
					if d := clDiff(roll, want); d != "" {
						c.t.Errorf("%s: the raw points are exact, but the daily count and sum differ:\n%s", c.nodes[i].name, d)
					}
					break
				}
				last = fmt.Sprintf("partial=%v:\n%s", partial, last)
			} else {
				last = err.Error()
			}
			if time.Now().After(deadline) {
				for j := range c.nodes {
					tok, _ := c.nodes[j].token.Load().(string)
					local, _, err := c.counts(j, from, to, "/admin/v1/local/series", tok)
					if err != nil {
						c.t.Logf("%s's own copy: %v", c.nodes[j].name, err)
						continue
					}
					var lines []string
					for k, w := range want {
						if g, ok := local[k]; ok && g != w {
							lines = append(lines, fmt.Sprintf("%s: count %d sum %d, want %d and %d", k, g[0], g[1], w[0], w[1]))
						}
					}
					c.t.Logf("%s's own copy: %d series, differing: %v", c.nodes[j].name, len(local), lines)
				}
				if st, err := c.status(i); err == nil {
					var lag []string
					for _, p := range st.Partitions {
						for _, o := range p.Owners {
							if o.Pending != 0 || !o.Serving {
								lag = append(lag, fmt.Sprintf("p%d@%s serving=%v pending=%d", p.Partition, o.Node, o.Serving, o.Pending))
							}
						}
					}
					c.t.Logf("partition owners not serving or behind: %v", lag)
				}
				c.t.Fatalf("%s does not answer the %d acknowledged points exactly after 60 s: %s", c.nodes[i].name, n, last)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	c.t.Logf("every node answers the %d acknowledged points exactly (count and sum per series)", n)
}

// querier asks node i for the series while something happens, counting
// answers that are neither complete nor flagged partial.
type clQuerier struct {
	ok, partial, failed atomic.Int64
	lastErr             atomic.Value
}

func (q *clQuerier) run(ctx context.Context, c *clCluster, pick func(k int) int, from int64) {
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
		i := pick(k)
		_, partial, err := c.counts(i, from, time.Now().Add(time.Hour).UnixNano(), "/api/v1/series", "")
		switch {
		case err != nil:
			q.failed.Add(1)
			q.lastErr.Store(fmt.Sprintf("%s: %v", c.nodes[i].name, err))
		case partial:
			q.partial.Add(1)
		default:
			q.ok.Add(1)
		}
	}
}

// TestCluster_FailoverAndRebuild runs three collectors on
// 127.0.0.1–3 from configs naming one seed, and checks under a steady load
// of HTTP writers: formation (every partition with two serving owners),
// kill -9 of a node and its return, and its replacement by a fresh node
// with an empty disk, each ending with every acknowledged point present
// exactly once on every node, while queries kept answering.
func TestCluster_FailoverAndRebuild(t *testing.T) {
	c := newCluster(t, 3)
	formed := time.Now()
	for i := range c.nodes {
		c.start(i)
	}
	st := c.waitServing(0, 3, 90*time.Second)
	t.Logf("cluster formed in %s: %d partitions", time.Since(formed).Round(time.Millisecond), len(st.Partitions))
	out, code := runCmd(t, "citysense-collector", "cluster", "status", "--url", c.nodes[1].base(), "--token", c.nodes[1].token.Load().(string))
	if code != 0 || strings.Count(out, " alive ") != 3 || !strings.Contains(out, "serving") {
		t.Fatalf("cluster status (exit %d):\n%s", code, out)
	}

	ws := c.writers()
	// Node loss: c3 is killed, queries go to c1 and c2, c3 comes back.
	c.phase(ws, "kill -9", func() {
		c.kill(2)
		time.Sleep(8 * time.Second)
		c.start(2)
		c.waitServing(0, 3, 90*time.Second)
	}, func(k int) int { return k % 2 })

	// Replacement: c3 loses its disk and comes back empty under its name.
	c.phase(ws, "replace", func() {
		c.kill(2)
		os.RemoveAll(c.nodes[2].dataDir)
		os.MkdirAll(c.nodes[2].dataDir, 0o750)
		c.nodes[2].token.Store("")
		c.start(2)
		c.waitServing(0, 3, 120*time.Second)
	}, func(k int) int { return k % 2 })
	if v, ok := agMetric(t, c.nodes[2].http, "citysense_cluster_handoff_points_total"); !ok || v <= 0 {
		t.Errorf("fresh c3 took %v points by hand-off, want some", v)
	}

}

// TestCluster_RollingRestart restarts the three nodes one at a time
// (SIGTERM, start, wait until every partition is served by two owners)
// under the writers' load; queries go to a node that is up, as a load
// balancer's health check would send them. Every acknowledged point must
// be present on every node afterwards.
func TestCluster_RollingRestart(t *testing.T) {
	c := newCluster(t, 3)
	for i := range c.nodes {
		c.start(i)
	}
	c.waitServing(0, 3, 90*time.Second)
	ws := c.writers()
	var down atomic.Int64
	down.Store(-1)
	c.phase(ws, "rolling restart", func() {
		for i := range c.nodes {
			down.Store(int64(i))
			c.nodes[i].p.stop(t, 30*time.Second)
			c.start(i)
			down.Store(-1)
			c.waitServing(i, 3, 90*time.Second)
		}
	}, func(k int) int {
		i := k % 3
		if int64(i) == down.Load() {
			i = (i + 1) % 3
		}
		return i
	})
}

// writers are the two HTTP writers of the cluster tests.
func (c *clCluster) writers() []*clWriter {
	start := time.Now().Add(-time.Minute).UnixNano()
	return []*clWriter{{c: c, id: "w1", start: start, acked: map[int]bool{}}, {c: c, id: "w2", start: start, acked: map[int]bool{}}}
}

// phase runs the writers and a querier for 3 s, then during, then 3 s
// more, and checks that no query failed and that every node then answers
// exactly what the writers were acknowledged.
func (c *clCluster) phase(ws []*clWriter, name string, during func(), pick func(k int) int) {
	t := c.t
	t.Helper()
	start := ws[0].start
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx, 50*time.Millisecond) }()
	}
	var q clQuerier
	qctx, qcancel := context.WithCancel(context.Background())
	qdone := make(chan struct{})
	go func() { defer close(qdone); q.run(qctx, c, pick, start) }()
	time.Sleep(3 * time.Second)
	during()
	time.Sleep(3 * time.Second)
	cancel()
	wg.Wait()
	qcancel()
	<-qdone
	retries, fails := ws[0].retries.Load()+ws[1].retries.Load(), ws[0].failures.Load()+ws[1].failures.Load()
	t.Logf("%s: queries ok %d, partial %d, failed %d; writes retried %d, given up %d", name, q.ok.Load(), q.partial.Load(), q.failed.Load(), retries, fails)
	if q.failed.Load() > 0 {
		t.Errorf("%s: %d queries failed, last: %v", name, q.failed.Load(), q.lastErr.Load())
	}
	if q.ok.Load() == 0 {
		t.Errorf("%s: no complete answer", name)
	}
	c.verify([]int{0, 1, 2}, ws...)
}
