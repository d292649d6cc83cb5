package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks that no goroutine outlives the tests. memberlist's
// Shutdown does not wait for a probe in flight (probeNode waits for its ack
// timer, up to one probe interval, then for its TCP fallback ping), so the
// check gives such stragglers a bounded time to end.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		err := goleak.Find()
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var testKey = []byte("0123456789abcdef")

func testMeta(name string) Meta {
	return Meta{API: "http://" + name + ":8080", Route: "nats://" + name + ":6222", NATS: "nats://" + name + ":4222", Version: "test"}
}

func start(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	if cfg.SecretKey == nil {
		cfg.SecretKey = testKey
	}
	if cfg.Meta == (Meta{}) {
		cfg.Meta = testMeta(cfg.Name)
	}
	if cfg.Profile == "" {
		cfg.Profile = "local"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Start(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Start %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() { c.Shutdown() })
	return c
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	for !cond() {
		if time.Since(t0) > d {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(t0)
}

func member(c *Cluster, name string) (Member, bool) {
	for _, m := range c.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func stateOf(c *Cluster, name string) string {
	m, _ := member(c, name)
	return m.State
}

func names(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// drain empties a Changes channel, so the next signal is a new one.
func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

func fired(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("Changes did not fire for %s", what)
	}
}

func counter(c *Cluster, name string) string {
	var b strings.Builder
	c.Metrics().WritePrometheus(&b)
	for line := range strings.Lines(b.String()) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// One cluster through its life: three nodes form, metadata spreads, a
// stranger with another key is kept out, a node leaves, restarts from its
// state file alone, and crashes.
func TestCluster_Lifecycle(t *testing.T) {
	n1 := start(t, Config{Name: "n1", Bind: "127.0.0.1:0"})
	seed := []string{n1.LocalAddr()}
	t0 := time.Now()
	n2 := start(t, Config{Name: "n2", Bind: "127.0.0.2:0", Seeds: seed})
	state3 := filepath.Join(t.TempDir(), "members.json")
	n3 := start(t, Config{Name: "n3", Bind: "127.0.0.3:0", Seeds: seed, StateFile: state3})
	nodes := []*Cluster{n1, n2, n3}

	waitFor(t, 10*time.Second, "three alive members everywhere", func() bool {
		for _, c := range nodes {
			if len(c.Live()) != 3 {
				return false
			}
		}
		return true
	})
	t.Logf("three nodes see each other %v after the second started", time.Since(t0))
	for _, c := range nodes {
		ms := c.Members()
		if got := names(ms); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
			t.Fatalf("%s: members %v", c.name, got)
		}
		for _, m := range ms {
			if m.State != StateAlive || m.Meta != testMeta(m.Name) || m.Self != (m.Name == c.name) || m.Addr == "" {
				t.Fatalf("%s sees %+v", c.name, m)
			}
		}
	}
	if m, _ := member(n1, "n3"); m.Addr != n3.LocalAddr() {
		t.Fatalf("n1 has n3 at %s, n3 is bound to %s", m.Addr, n3.LocalAddr())
	}
	if got := counter(n1, "citysense_cluster_joins_total"); got != "2" {
		t.Fatalf("n1 joins_total = %q, want 2", got)
	}
	if got := counter(n1, `citysense_cluster_members{state="alive"}`); got != "3" {
		t.Fatalf("n1 members alive = %q, want 3", got)
	}
	// n3 persisted the other two.
	waitFor(t, 5*time.Second, "n3's state file lists n1 and n2", func() bool {
		b, _ := os.ReadFile(state3)
		return strings.Contains(string(b), n1.LocalAddr()) && strings.Contains(string(b), n2.LocalAddr())
	})

	t.Run("UpdateMeta", func(t *testing.T) {
		drain(n1.Changes())
		m := testMeta("n2")
		m.Ready = "ff00"
		t0 := time.Now()
		if err := n2.UpdateMeta(m); err != nil {
			t.Fatalf("UpdateMeta: %v", err)
		}
		returned := time.Since(t0)
		waitFor(t, 10*time.Second, "n1 and n3 see n2's new metadata", func() bool {
			a, _ := member(n1, "n2")
			b, _ := member(n3, "n2")
			return a.Meta == m && b.Meta == m
		})
		t.Logf("UpdateMeta returned after %v; the others had it after %v", returned, time.Since(t0))
		fired(t, n1.Changes(), "a metadata update")
		if got := counter(n1, "citysense_cluster_meta_updates_total"); got == "0" || got == "" {
			t.Fatalf("n1 meta_updates_total = %q", got)
		}
	})

	t.Run("WrongKey", func(t *testing.T) {
		alien := start(t, Config{Name: "alien", Bind: "127.0.0.1:0", Seeds: seed, SecretKey: []byte("fedcba9876543210")})
		// Give it several join rounds.
		time.Sleep(2 * time.Second)
		if got := names(alien.Live()); !slices.Equal(got, []string{"alien"}) {
			t.Fatalf("alien sees %v", got)
		}
		for _, c := range nodes {
			if got := names(c.Members()); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
				t.Fatalf("%s sees %v", c.name, got)
			}
		}
		alien.Shutdown()
	})

	addr3 := n3.LocalAddr()
	t.Run("Leave", func(t *testing.T) {
		drain(n1.Changes())
		if err := n3.Leave(2 * time.Second); err != nil {
			t.Fatalf("Leave: %v", err)
		}
		fired(t, n1.Changes(), "a leave")
		waitFor(t, 10*time.Second, "n1 and n2 report n3 left", func() bool {
			return stateOf(n1, "n3") == StateLeft && stateOf(n2, "n3") == StateLeft
		})
		if got := names(n1.Live()); !slices.Equal(got, []string{"n1", "n2"}) {
			t.Fatalf("n1 Live = %v", got)
		}
		if got := counter(n1, "citysense_cluster_leaves_total"); got != "1" {
			t.Fatalf("n1 leaves_total = %q", got)
		}
		if got := counter(n1, "citysense_cluster_failures_total"); got != "0" {
			t.Fatalf("n1 failures_total = %q", got)
		}
		if err := n3.UpdateMeta(testMeta("n3")); !errors.Is(err, ErrShutdown) {
			t.Fatalf("UpdateMeta after Leave: %v", err)
		}
	})

	// Same name, same address, the state file and no seed.
	drain(n1.Changes())
	restart := time.Now()
	n3 = start(t, Config{Name: "n3", Bind: addr3, StateFile: state3})
	t.Run("RestartFromStateFile", func(t *testing.T) {
		waitFor(t, 10*time.Second, "n3 back and alive everywhere", func() bool {
			return len(n3.Live()) == 3 && stateOf(n1, "n3") == StateAlive && stateOf(n2, "n3") == StateAlive
		})
		t.Logf("restarted node alive everywhere %v after Start", time.Since(restart))
		fired(t, n1.Changes(), "a rejoin")
	})

	t.Run("Crash", func(t *testing.T) {
		drain(n1.Changes())
		n3.Shutdown()
		t0 := time.Now()
		var suspectAt time.Duration
		waitFor(t, 20*time.Second, "n1 and n2 report n3 dead", func() bool {
			if suspectAt == 0 && (stateOf(n1, "n3") == StateSuspect || stateOf(n2, "n3") == StateSuspect) {
				suspectAt = time.Since(t0)
			}
			return stateOf(n1, "n3") == StateDead && stateOf(n2, "n3") == StateDead
		})
		t.Logf("crash: suspect after %v (0 = not seen), dead everywhere after %v", suspectAt, time.Since(t0))
		fired(t, n1.Changes(), "a failure")
		if got := names(n2.Live()); !slices.Equal(got, []string{"n1", "n2"}) {
			t.Fatalf("n2 Live = %v", got)
		}
		if got := counter(n1, "citysense_cluster_failures_total"); got != "1" {
			t.Fatalf("n1 failures_total = %q", got)
		}
	})
}

// A node whose seed is not up yet starts alone and joins once the seed
// starts.
func TestStart_SeedStartsLater(t *testing.T) {
	// Reserve an address for the seed.
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	seedAddr := l.Addr().String()
	l.Close()

	early := start(t, Config{Name: "early", Bind: "127.0.0.3:0", Seeds: []string{seedAddr}})
	if got := names(early.Live()); !slices.Equal(got, []string{"early"}) {
		t.Fatalf("before the seed: %v", got)
	}
	time.Sleep(time.Second)
	drain(early.Changes())
	t0 := time.Now()
	seed := start(t, Config{Name: "seed", Bind: seedAddr})
	waitFor(t, 15*time.Second, "early joins the late seed", func() bool {
		return len(early.Live()) == 2 && len(seed.Live()) == 2
	})
	t.Logf("joined %v after the seed started", time.Since(t0))
	fired(t, early.Changes(), "the seed appearing")
}

func TestStart_Config(t *testing.T) {
	big := Meta{API: strings.Repeat("x", 600)}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
		is   error
	}{
		{"no name", Config{Bind: "127.0.0.1:0", SecretKey: testKey}, []string{"no node name"}, nil},
		{"no key", Config{Name: "a", Bind: "127.0.0.1:0"}, []string{"no secret key"}, nil},
		{"short key", Config{Name: "a", Bind: "127.0.0.1:0", SecretKey: []byte("short")}, []string{"5 bytes"}, nil},
		{"bad bind", Config{Name: "a", Bind: "127.0.0.1", SecretKey: testKey}, []string{"bind address"}, nil},
		{"advertise by name", Config{Name: "a", Bind: "127.0.0.1:0", Advertise: "host:1", SecretKey: testKey}, []string{"must be an IP"}, nil},
		{"profile", Config{Name: "a", Bind: "127.0.0.1:0", SecretKey: testKey, Profile: "wan"}, []string{`unknown profile "wan"`}, nil},
		{"meta too large", Config{Name: "a", Bind: "127.0.0.1:0", SecretKey: testKey, Meta: big}, []string{"bytes as JSON, limit 512"}, ErrMetaTooLarge},
		{"all at once", Config{Seeds: []string{"nope"}}, []string{"no node name", "no secret key", "bind address", `seed "nope"`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(context.Background(), tc.cfg, nil)
			if err == nil {
				t.Fatal("Start accepted the config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
		})
	}
}

func TestCluster_UpdateMeta_TooLarge(t *testing.T) {
	c := start(t, Config{Name: "solo", Bind: "127.0.0.1:0"})
	err := c.UpdateMeta(Meta{Ready: strings.Repeat("f", 520)})
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("UpdateMeta: %v", err)
	}
	if m, _ := member(c, "solo"); m.Meta != testMeta("solo") {
		t.Fatalf("a refused update changed the metadata: %+v", m.Meta)
	}
	// The largest Ready bitmap that fits next to typical URLs.
	typical := Meta{API: "https://collector-17.example.city:8443", Route: "nats://10.1.0.17:6222", NATS: "nats://10.1.0.17:4222", Version: "v1.4.2"}
	b, _ := encodeMeta(typical)
	t.Logf("typical metadata: %d bytes; room for a %d-partition Ready bitmap", len(b), (MetaLimit-len(b)-len(`,"ready":""`))*4)
}

func TestResolve_AllAddresses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := resolve(ctx, "localhost:7946")
	if err != nil {
		t.Skipf("localhost does not resolve here: %v", err)
	}
	if !slices.Contains(got, "127.0.0.1:7946") {
		t.Fatalf("localhost:7946 resolved to %v", got)
	}
	got, err = resolve(ctx, "127.0.0.3:1")
	if err != nil || !slices.Equal(got, []string{"127.0.0.3:1"}) {
		t.Fatalf("an IP resolved to %v, %v", got, err)
	}
}

func TestState_RoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "members.json")
	if got, err := readState(path); err != nil || got != nil {
		t.Fatalf("missing file: %v, %v", got, err)
	}
	want := []stateMember{{"a", "127.0.0.1:1"}, {"b", "127.0.0.2:2"}}
	for range 2 { // the second write replaces the first
		if err := writeState(path, want); err != nil {
			t.Fatal(err)
		}
	}
	got, err := readState(path)
	if err != nil || !slices.Equal(got, []string{"127.0.0.1:1", "127.0.0.2:2"}) {
		t.Fatalf("readState = %v, %v", got, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	os.WriteFile(path, []byte("{"), 0o600)
	if _, err := readState(path); err == nil {
		t.Fatal("a corrupt file read without error")
	}
}

// TestCluster_Timing measures joining and crash detection with both
// profiles. It asserts nothing about time and takes ~25 s, so it runs only
// with CITYSENSE_CLUSTER_TIMING=1.
func TestCluster_Timing(t *testing.T) {
	if os.Getenv("CITYSENSE_CLUSTER_TIMING") == "" {
		t.Skip("set CITYSENSE_CLUSTER_TIMING=1 to measure")
	}
	for _, profile := range []string{"local", "lan"} {
		t.Run(profile, func(t *testing.T) {
			a := start(t, Config{Name: "a", Bind: "127.0.0.1:0", Profile: profile})
			t0 := time.Now()
			b := start(t, Config{Name: "b", Bind: "127.0.0.2:0", Seeds: []string{a.LocalAddr()}, Profile: profile})
			c := start(t, Config{Name: "c", Bind: "127.0.0.3:0", Seeds: []string{a.LocalAddr()}, Profile: profile})
			waitFor(t, 20*time.Second, "three members", func() bool {
				return len(a.Live()) == 3 && len(b.Live()) == 3 && len(c.Live()) == 3
			})
			joined := time.Since(t0)
			c.Shutdown()
			t0 = time.Now()
			var suspect time.Duration
			waitFor(t, 30*time.Second, "c dead at a and b", func() bool {
				if suspect == 0 && (stateOf(a, "c") == StateSuspect || stateOf(b, "c") == StateSuspect) {
					suspect = time.Since(t0)
				}
				return stateOf(a, "c") == StateDead && stateOf(b, "c") == StateDead
			})
			t.Logf("%s: 3 members after %v; crash: first suspect %v, dead at both %v", profile, joined.Round(time.Millisecond), suspect.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
		})
	}
}
