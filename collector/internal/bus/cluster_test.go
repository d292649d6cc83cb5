package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// testLog discards unless CS_BUS_TEST_LOG is set, which shows the servers'
// logs at that level (debug, info, warn).
func testLog(name string) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(os.Getenv("CS_BUS_TEST_LOG"))); err != nil || os.Getenv("CS_BUS_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("node", name)
}

// node is one collector's bus in a test cluster.
type node struct {
	name, dir string
	routeHP   string // host:port of the route listener, kept across restarts
	bus       *Bus
	// owner is the test that shuts the node down when it ends: the
	// top-level test, also for a restart done in a subtest.
	owner *testing.T
}

func clusterConfig(n *node, secret []byte, seeds []string) Config {
	return Config{
		Name: n.name, StoreDir: n.dir, Listen: strings.Split(n.routeHP, ":")[0] + ":0",
		Cluster: &ClusterConfig{Listen: n.routeHP, Routes: seeds, Secret: secret},
	}
}

// startNode starts a cluster node on ip; it does not wait for the streams.
func startNode(t *testing.T, name, ip string, secret []byte, seeds ...string) *node {
	t.Helper()
	n := &node{name: name, dir: t.TempDir(), routeHP: ip + ":0", owner: t}
	n.start(t, secret, seeds...)
	return n
}

func (n *node) start(t *testing.T, secret []byte, seeds ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Start(ctx, clusterConfig(n, secret, seeds), testLog(n.name))
	if err != nil {
		t.Fatalf("Start %s: %v", n.name, err)
	}
	n.owner.Cleanup(b.Shutdown)
	n.bus = b
	u, err := url.Parse(b.RouteURL())
	if err != nil {
		t.Fatal(err)
	}
	n.routeHP = u.Host // a restart binds the port the others know
}

func waitReady(t *testing.T, timeout time.Duration, nodes ...*node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, n := range nodes {
		if err := n.bus.WaitReady(ctx); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
	}
}

// eventually polls cond every 100 ms until it returns nil or timeout
// passes, and fails with its last error.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %v", what, err, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func health(t *testing.T, b *Bus) ClusterHealth {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := b.ClusterHealth(ctx)
	if err != nil {
		t.Fatalf("ClusterHealth: %v", err)
	}
	return h
}

func rawCount(ctx context.Context, b *Bus) (uint64, error) {
	s, err := b.JetStream().Stream(ctx, StreamRaw)
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.Msgs, nil
}

// TestCluster_threeNodes forms a cluster of three buses and walks it
// through replication, deduplication, an outsider, a restart without
// seeds and the loss of a node. The steps share the cluster, as forming
// one takes seconds.
func TestCluster_threeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a 3-node cluster")
	}
	t0 := time.Now()
	n1 := startNode(t, "c1", "127.0.0.1", testSecret)
	n2 := startNode(t, "c2", "127.0.0.2", testSecret, n1.bus.RouteURL())
	n3 := startNode(t, "c3", "127.0.0.3", testSecret, n1.bus.RouteURL())
	nodes := []*node{n1, n2, n3}
	eventually(t, 30*time.Second, "meta leader", func() error {
		if n1.bus.metaLeader() == "" {
			return errors.New("none")
		}
		return nil
	})
	t.Logf("meta leader elected %v after the first Start", time.Since(t0).Round(time.Millisecond))
	waitReady(t, 30*time.Second, nodes...)
	t.Logf("cluster formed, meta leader %s, streams created: %v after the first Start", n1.bus.metaLeader(), time.Since(t0).Round(time.Millisecond))

	// What the collector does when memberlist reports the peers.
	for _, n := range nodes {
		var urls []string
		for _, o := range nodes {
			urls = append(urls, o.bus.RouteURL()) // its own included: ignored
		}
		if err := n.bus.AddRoutes(urls); err != nil {
			t.Fatalf("%s AddRoutes: %v", n.name, err)
		}
		if got := len(n.bus.Routes()); got != 2 {
			t.Errorf("%s has %d routes, want 2: %v", n.name, got, n.bus.Routes())
		}
	}

	t.Run("replicas", func(t *testing.T) {
		t1 := time.Now()
		eventually(t, 20*time.Second, "SetReplicas(3)", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := n1.bus.SetReplicas(ctx, 3)
			if err == nil && r != 3 {
				err = fmt.Errorf("replicas %d", r)
			}
			return err
		})
		// A second call changes nothing; a smaller live count lowers nothing.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if r, err := n2.bus.SetReplicas(ctx, 2); err != nil || r != 3 {
			t.Errorf("SetReplicas(2) after 3 = %d, %v; want 3 (only raises)", r, err)
		}
		// 5 live members, but JetStream knows 3 servers: R3, never more.
		if r, err := n3.bus.SetReplicas(ctx, 5); err != nil || r != 3 {
			t.Errorf("SetReplicas(5) = %d, %v; want 3", r, err)
		}
		eventually(t, 20*time.Second, "all replicas current", func() error {
			h := health(t, n2.bus)
			if h.MetaLeader == "" || h.KnownServers != 3 || !slices.Equal(h.ConnectedRoutes, []string{"c1", "c3"}) {
				return errors.New("cluster view " + h.MetaLeader + " " + strings.Join(h.ConnectedRoutes, ","))
			}
			for _, s := range h.Streams {
				if s.Replicas != 3 || s.Leader == "" || len(s.Peers) != 2 || s.Error != "" {
					return errors.New(s.Name + " not at R3: " + s.Error)
				}
				for _, p := range s.Peers {
					if !p.Current || p.Offline {
						return errors.New(s.Name + " replica " + p.Name + " not current")
					}
				}
			}
			return nil
		})
		t.Logf("R1 → R3 on every stream with current replicas in %v", time.Since(t1).Round(time.Millisecond))
	})

	t.Run("dedupe across nodes", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for range 2 {
			if err := n2.bus.Publish(ctx, "cs.raw.gw1", "gw1-1", []byte("air pm25=12 1")); err != nil {
				t.Fatal(err)
			}
		}
		s, err := n3.bus.JetStream().Stream(ctx, StreamRaw)
		if err != nil {
			t.Fatal(err)
		}
		if n := s.CachedInfo().State.Msgs; n != 1 {
			t.Fatalf("CS_RAW holds %d messages after a resend with the same id, want 1", n)
		}
		m, err := s.GetMsg(ctx, s.CachedInfo().State.LastSeq)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != "air pm25=12 1" || m.Header.Get(jetstream.MsgIDHeader) != "gw1-1" {
			t.Fatalf("read on c3: %q id %q", m.Data, m.Header.Get(jetstream.MsgIDHeader))
		}
	})

	t.Run("wrong secret stays out", func(t *testing.T) {
		bad := []byte("fedcba9876543210fedcba9876543210")
		out := startNode(t, "intruder", "127.0.0.1", bad, n1.bus.RouteURL())
		defer out.bus.Shutdown()
		// A route that authenticates is connected within tens of ms; two
		// seconds of nothing is a refusal (nats-server retries it).
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if r := out.bus.connectedRoutes(); len(r) != 0 {
				t.Fatalf("the intruder routed to %v", r)
			}
			if h := health(t, n1.bus); !slices.Equal(h.ConnectedRoutes, []string{"c2", "c3"}) || h.KnownServers != 3 {
				t.Fatalf("c1 sees routes %v, %d servers", h.ConnectedRoutes, h.KnownServers)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := out.bus.Ready(); err == nil {
			t.Fatal("the intruder is ready on its own")
		}
	})

	t.Run("restart without seeds", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(n3.dir, "cluster-routes.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []*node{n1, n2} {
			if !strings.Contains(string(data), `"`+n.bus.RouteURL()+`"`) {
				t.Fatalf("peers file lacks %s: %s", n.bus.RouteURL(), data)
			}
		}
		n3.bus.Shutdown()
		t1 := time.Now()
		n3.start(t, testSecret) // no seeds
		waitReady(t, 30*time.Second, n3)
		eventually(t, 20*time.Second, "c3 rejoined", func() error {
			h := health(t, n3.bus)
			if !slices.Equal(h.ConnectedRoutes, []string{"c1", "c2"}) || h.KnownServers != 3 {
				return errors.New("routes " + strings.Join(h.ConnectedRoutes, ","))
			}
			for _, s := range h.Streams {
				if s.Replicas != 3 {
					return errors.New(s.Name + " not at R3")
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if n, err := rawCount(ctx, n3.bus); err != nil || n != 1 {
				return errors.New("CS_RAW count on c3 wrong")
			}
			return nil
		})
		t.Logf("c3 restarted without seeds and rejoined in %v", time.Since(t1).Round(time.Millisecond))
	})

	t.Run("one node lost", func(t *testing.T) {
		h := health(t, n2.bus)
		t.Logf("stopping c1; stream leaders before: %s", streamLeaders(h))
		n1.bus.Shutdown()
		t1 := time.Now()
		var tries int
		eventually(t, 25*time.Second, "publish after losing c1", func() error {
			tries++
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			// The same id on every try: a retry that did land is not stored twice.
			return n2.bus.Publish(ctx, "cs.raw.gw1", "gw1-2", []byte("air pm25=13 2"))
		})
		t.Logf("publish succeeded %v after c1 stopped (%d tries)", time.Since(t1).Round(time.Millisecond), tries)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		eventually(t, 10*time.Second, "count on c3", func() error {
			if n, err := rawCount(ctx, n3.bus); err != nil || n != 2 {
				return errors.New("CS_RAW count on c3 not 2")
			}
			return nil
		})
		if err := n2.bus.Ready(); err != nil {
			t.Errorf("c2 not ready with 2 of 3: %v", err)
		}
	})
}

func streamLeaders(h ClusterHealth) string {
	var parts []string
	for _, s := range h.Streams {
		parts = append(parts, s.Name+"="+s.Leader)
	}
	return strings.Join(parts, " ")
}

func TestCluster_singleNodeHasNoCluster(t *testing.T) {
	b := startTest(t)
	if b.RouteURL() != "" || b.Routes() != nil {
		t.Errorf("RouteURL %q Routes %v on a single node", b.RouteURL(), b.Routes())
	}
	if err := b.AddRoutes([]string{"127.0.0.2:6222"}); err == nil {
		t.Error("AddRoutes on a single node succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r, err := b.SetReplicas(ctx, 3); err != nil || r != 1 {
		t.Errorf("SetReplicas = %d, %v; want 1, nil", r, err)
	}
	h, err := b.ClusterHealth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Server != "test" || h.MetaLeader != "" || len(h.ConnectedRoutes) != 0 || len(h.Streams) != 3 {
		t.Fatalf("health = %+v", h)
	}
	for _, s := range h.Streams {
		if s.Replicas != 1 || s.Error != "" {
			t.Errorf("%s: replicas %d error %q", s.Name, s.Replicas, s.Error)
		}
	}
	if b.srv.ClusterAddr() != nil {
		t.Errorf("a single node listens for routes at %v", b.srv.ClusterAddr())
	}
}

func TestCluster_startRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		want string
	}{
		{"short secret", func(c *Config) { c.Cluster.Secret = []byte("short") }, "16 to 32 bytes"},
		{"long secret", func(c *Config) { c.Cluster.Secret = make([]byte, 33) }, "16 to 32 bytes"},
		{"no name", func(c *Config) { c.Name = "" }, "needs a name"},
		{"unspecified host", func(c *Config) { c.Cluster.Listen = "0.0.0.0:0" }, "set the advertise address"},
		{"bad seed", func(c *Config) { c.Cluster.Routes = []string{"http://x:1"} }, "scheme"},
		{"bad listen", func(c *Config) { c.Cluster.Listen = "nope" }, "cluster listen address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Name: "n", StoreDir: t.TempDir(), Listen: "127.0.0.1:0",
				Cluster: &ClusterConfig{Listen: "127.0.0.1:0", Secret: testSecret}}
			tt.cfg(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			b, err := Start(ctx, cfg, nil)
			if err == nil {
				b.Shutdown()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestNormalizeRoute(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.2:6222", "nats-route://127.0.0.2:6222"},
		{" nats-route://127.0.0.2:6222 ", "nats-route://127.0.0.2:6222"},
		{"nats-route://user:pw@Node-1.Example:6222/", "nats-route://node-1.example:6222"},
		{"nats://127.0.0.3:6222", "nats-route://127.0.0.3:6222"},
		{"[::1]:6222", "nats-route://[::1]:6222"},
		{"", ""},
		{"127.0.0.2", ""},
		{"127.0.0.2:0", ""},
		{"127.0.0.2:99999", ""},
		{"tls://127.0.0.2:6222", ""},
	}
	for _, tt := range tests {
		got, err := normalizeRoute(tt.in)
		if (err != nil) != (tt.want == "") || got != tt.want {
			t.Errorf("normalizeRoute(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestClusterState_mergeAndPersist(t *testing.T) {
	cs := &clusterState{self: "nats-route://127.0.0.1:6222"}
	got, err := cs.merge([]string{"nats-route://127.0.0.3:6222"},
		[]string{"127.0.0.2:6222", "nats-route://127.0.0.1:6222", "127.0.0.3:6222", "nats-route://127.0.0.2:6222"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"nats-route://127.0.0.2:6222", "nats-route://127.0.0.3:6222"}
	if !slices.Equal(got, want) {
		t.Fatalf("merge = %v, want %v", got, want)
	}
	if _, err := cs.merge(nil, []string{"127.0.0.2:6222", "bad"}); err == nil {
		t.Fatal("merge accepted a malformed URL")
	}

	path := filepath.Join(t.TempDir(), "sub", "routes.json")
	if r, err := readPeersFile(path); err != nil || r != nil {
		t.Fatalf("missing file = %v, %v", r, err)
	}
	if err := writePeersFile(path, want); err != nil {
		t.Fatal(err)
	}
	if err := writePeersFile(path, want[:1]); err != nil {
		t.Fatal(err)
	}
	if r, err := readPeersFile(path); err != nil || !slices.Equal(r, want[:1]) {
		t.Fatalf("read back %v, %v", r, err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("%d files in the directory, want the peers file alone", len(ents))
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readPeersFile(path); err == nil {
		t.Fatal("a torn peers file was accepted")
	}
}

func TestRouteCredentials(t *testing.T) {
	a, b := routePassword(testSecret), routePassword([]byte("fedcba9876543210fedcba9876543210"))
	if a == b || len(a) != 64 || a != routePassword(slices.Clone(testSecret)) {
		t.Fatalf("passwords %q %q", a, b)
	}
	if strings.Contains(a, string(testSecret)) {
		t.Fatal("the password contains the secret")
	}
	cs := &clusterState{self: "nats-route://127.0.0.1:6222", password: a}
	urls := cs.routeURLs([]string{"nats-route://127.0.0.2:6222"})
	if len(urls) != 2 || urls[0].Host != "127.0.0.1:6222" || urls[1].User.Username() != routeUser {
		t.Fatalf("route URLs %v", urls)
	}
	if pw, _ := urls[1].User.Password(); pw != a {
		t.Fatal("route URL without the derived password")
	}
}

func TestSeriesStreamConfigFor(t *testing.T) {
	single, clustered := SeriesStreamConfigFor(false, 0), SeriesStreamConfigFor(true, time.Hour)
	if single.Retention != jetstream.InterestPolicy || single.MaxAge != SeriesMaxAge {
		t.Errorf("single node: retention %v max age %v", single.Retention, single.MaxAge)
	}
	if clustered.Retention != jetstream.LimitsPolicy || clustered.MaxAge != time.Hour {
		t.Errorf("cluster: retention %v max age %v", clustered.Retention, clustered.MaxAge)
	}
	if SeriesStreamConfig().Retention != jetstream.InterestPolicy {
		t.Error("SeriesStreamConfig changed retention")
	}
}

// TestCluster_clientsNotOnRoutePort checks that the route listener is not
// a way around the client authenticator: a NATS client dialing it is
// refused.
func TestCluster_clientsNotOnRoutePort(t *testing.T) {
	n := startNode(t, "solo", "127.0.0.1", testSecret)
	u, _ := url.Parse(n.bus.RouteURL())
	nc, err := nats.Connect("nats://"+u.Host, nats.NoReconnect(), nats.Timeout(2*time.Second))
	if err == nil {
		defer nc.Close()
		// nats-server may accept the TCP connection before refusing the
		// CONNECT; a publish must not reach anything.
		if _, err := nc.Request("$JS.API.INFO", nil, time.Second); err == nil {
			t.Fatal("a client on the route port reached JetStream")
		}
	}
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		c.Close()
	} else {
		t.Fatalf("route port not listening: %v", err)
	}
}

// Routes with TLS: two nodes with certificates from the cluster's CA
// connect; a node without TLS (right secret, no certificate) does not.
func TestCluster_routeTLS(t *testing.T) {
	pki := newTestPKI(t)
	tlsCfg := TLSConfig{CertFile: pki.routeCert, KeyFile: pki.routeKey, CAFile: pki.ca}
	start := func(name string, tls bool, seeds ...string) *Bus {
		n := &node{name: name, dir: t.TempDir(), routeHP: "127.0.0.1:0", owner: t}
		cfg := clusterConfig(n, testSecret, seeds)
		if tls {
			cfg.Cluster.TLS = tlsCfg
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := Start(ctx, cfg, testLog(name))
		if err != nil {
			t.Fatalf("Start %s: %v", name, err)
		}
		t.Cleanup(b.Shutdown)
		return b
	}
	b1 := start("t1", true)
	b2 := start("t2", true, b1.RouteURL())
	plain := start("t3", false, b1.RouteURL())
	eventually(t, 20*time.Second, "t1 and t2 connected over TLS", func() error {
		for _, pair := range [][2]*Bus{{b1, b2}, {b2, b1}} {
			h := health(t, pair[0])
			if !slices.Contains(h.ConnectedRoutes, pair[1].srv.Name()) {
				return fmt.Errorf("%s connected to %v", h.Server, h.ConnectedRoutes)
			}
		}
		return nil
	})
	time.Sleep(2 * time.Second) // time for the plain node's attempts
	if h := health(t, plain); len(h.ConnectedRoutes) != 0 {
		t.Errorf("the node without TLS has routes to %v", h.ConnectedRoutes)
	}
	if h := health(t, b1); slices.Contains(h.ConnectedRoutes, "t3") {
		t.Errorf("t1 accepted a route from the node without TLS: %v", h.ConnectedRoutes)
	}
}
