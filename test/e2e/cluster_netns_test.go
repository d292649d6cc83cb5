package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// netLab is one network namespace per cluster node, joined by a bridge in
// the test's own namespace: node i is 10.99.0.<i+1>, the test 10.99.0.254.
// Unlike loopback aliases, a namespace can be cut off whole (its
// outgoing connections included) with iptables inside it, while the test
// still reaches it.
type netLab struct {
	t      *testing.T
	prefix string
	n      int
}

func (l *netLab) ns(i int) string   { return fmt.Sprintf("%s%d", l.prefix, i+1) }
func (l *netLab) addr(i int) string { return fmt.Sprintf("10.99.0.%d", i+1) }

func labRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newNetLab(t *testing.T, n int) *netLab {
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed for the network-partition test (Debian iproute2, iptables): %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("the network-partition test creates network namespaces and needs root")
	}
	l := &netLab{t: t, prefix: fmt.Sprintf("cse%d-", os.Getpid()%10000), n: n}
	br := l.prefix + "br"
	t.Cleanup(func() {
		for i := range n {
			exec.Command("ip", "netns", "del", l.ns(i)).Run()
		}
		exec.Command("ip", "link", "del", br).Run()
	})
	labRun(t, "ip", "link", "add", br, "type", "bridge")
	labRun(t, "ip", "addr", "add", "10.99.0.254/24", "dev", br)
	labRun(t, "ip", "link", "set", br, "up")
	for i := range n {
		ns, host := l.ns(i), fmt.Sprintf("%sv%d", l.prefix, i+1)
		labRun(t, "ip", "netns", "add", ns)
		labRun(t, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
		labRun(t, "ip", "link", "set", host, "master", br)
		labRun(t, "ip", "link", "set", host, "up")
		labRun(t, "ip", "-n", ns, "addr", "add", l.addr(i)+"/24", "dev", "eth0")
		labRun(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		labRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	return l
}

// cut drops all traffic between node i and the other nodes, both ways,
// inside i's namespace; the test's address still gets through.
func (l *netLab) cut(i int) {
	for j := range l.n {
		if j == i {
			continue
		}
		labRun(l.t, "ip", "netns", "exec", l.ns(i), "iptables", "-A", "INPUT", "-s", l.addr(j), "-j", "DROP")
		labRun(l.t, "ip", "netns", "exec", l.ns(i), "iptables", "-A", "OUTPUT", "-d", l.addr(j), "-j", "DROP")
	}
}

func (l *netLab) heal(i int) {
	labRun(l.t, "ip", "netns", "exec", l.ns(i), "iptables", "-F", "INPUT")
	labRun(l.t, "ip", "netns", "exec", l.ns(i), "iptables", "-F", "OUTPUT")
}

var clProbeClient = &http.Client{Timeout: 2 * time.Second}

// TestCluster_NetworkPartition cuts one node of three off the other two
// while writers write to all three: the cut-off node stops acknowledging
// writes (it has no JetStream quorum), the other two go on, and after the
// cut is healed every acknowledged point is present exactly once on every
// node.
func TestCluster_NetworkPartition(t *testing.T) {
	lab := newNetLab(t, 3)
	c := newCluster(t, 3, func(i int) string { return lab.addr(i) })
	for i := range c.nodes {
		c.nodes[i].netns = lab.ns(i)
		c.start(i)
	}
	c.waitServing(0, 3, 90*time.Second)
	ws := c.writers()

	// The minority's own writes: what c3 answers while cut off.
	var minority struct {
		sync.Mutex
		ok, refused int
	}
	probe := func(ctx context.Context) {
		for k := 0; ; k++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			body := fmt.Sprintf("clw,writer=probe,station=s00 v=%di %d\n", k, time.Now().UnixNano())
			tok, _ := c.nodes[2].token.Load().(string)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.nodes[2].base()+"/api/v2/write?org=e2e&bucket=e2e&precision=ns", strings.NewReader(body))
			req.Header.Set("Authorization", "Token "+tok)
			resp, err := clProbeClient.Do(req)
			minority.Lock()
			if err == nil && resp.StatusCode == http.StatusNoContent {
				minority.ok++
			} else {
				minority.refused++
			}
			minority.Unlock()
			if err == nil {
				resp.Body.Close()
			}
		}
	}
	c.phase(ws, "partition", func() {
		lab.cut(2)
		// Give the cut time to be noticed (leader elections, failure
		// detection), then count only what c3 answers from then on.
		time.Sleep(12 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		probe(ctx)
		cancel()
		t.Logf("while cut off, c3 acknowledged %d of %d writes", minority.ok, minority.ok+minority.refused)
		if minority.ok != 0 || minority.refused == 0 {
			t.Errorf("c3 cut off acknowledged %d writes and refused %d, want 0 acknowledged", minority.ok, minority.refused)
		}
		lab.heal(2)
		c.waitServing(0, 3, 120*time.Second)
	}, func(k int) int { return k % 2 })
}
