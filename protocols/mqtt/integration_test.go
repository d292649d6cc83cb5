package mqtt

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
)

// needPeer skips (or, under CI=true, fails) when a real peer is missing.
func needPeer(t testing.TB, path string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI: %v", path, err)
		}
		t.Skipf("%s not installed (Debian: apt-get install mosquitto mosquitto-clients): %v", path, err)
	}
	return p
}

// startMosquitto runs a private broker on a free loopback port and returns
// its address.
func startMosquitto(t testing.TB, extra ...string) string {
	t.Helper()
	bin := needPeer(t, "/usr/sbin/mosquitto")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n%s", port, strings.Join(extra, "\n"))), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	logf, _ := os.Create(filepath.Join(dir, "mosquitto.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("mosquitto log:\n%s", b)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pub(t *testing.T, addr, topic, payload string, qos int) {
	t.Helper()
	bin := needPeer(t, "mosquitto_pub")
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(bin, "-h", host, "-p", port, "-q", fmt.Sprint(qos), "-t", topic, "-m", payload).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
}

// collect is an Accumulator that can be told to refuse writes.
type collect struct {
	mu     sync.Mutex
	pts    []protocols.Point
	refuse bool
	calls  int
}

func (c *collect) Write(_ context.Context, pts []protocols.Point) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.refuse {
		return fmt.Errorf("refused")
	}
	c.pts = append(c.pts, pts...)
	return nil
}

func (c *collect) snapshot() []protocols.Point {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]protocols.Point(nil), c.pts...)
	sort.Slice(out, func(i, j int) bool { return out[i].Time < out[j].Time })
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runInput(t *testing.T, in *Input, acc protocols.Accumulator) (stop func()) {
	t.Helper()
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	in.writeRetry = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, acc) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}
}

// TestInput_Run_mosquitto: JSON and line protocol on templated topics at
// QoS 0, 1 and 2 through a real broker, and the persistent session: messages
// whose write was refused, and messages published while the input was
// away, arrive after a restart with the same client id.
func TestInput_Run_mosquitto(t *testing.T) {
	addr := startMosquitto(t)
	newInput := func() *Input {
		in := New()
		in.Broker = "tcp://" + addr
		in.ClientID = "citysense-it-1"
		in.Topics = []Topic{
			{Filter: "sensors/+/+/+", Template: "sensors/{district}/{station}/{_measurement}", JSON: JSONOptions{TimePath: "ts"}},
			{Filter: "lp/+", Template: "lp/{district}", Format: "line", Precision: "s", QoS: qos(2)},
		}
		return in
	}
	acc := &collect{}
	stop := runInput(t, newInput(), acc)
	// Subscribed when a QoS 0 message gets through.
	waitUntil(t, "the subscription", func() bool {
		pub(t, addr, "sensors/d01/s0001/air", `{"ts":1,"pm25":1}`, 0)
		time.Sleep(50 * time.Millisecond)
		return len(acc.snapshot()) > 0
	})
	pub(t, addr, "sensors/d01/s0001/air", `{"ts":1735689600,"pm25":12.5,"no2":30}`, 1)
	pub(t, addr, "lp/d02", "noise,station=s0002 laeq=55.5 1735689601", 2)
	waitUntil(t, "two messages", func() bool { return len(acc.snapshot()) >= 3 })

	// Refused writes: nothing is acknowledged, so the broker keeps the message.
	acc.mu.Lock()
	acc.refuse = true
	acc.mu.Unlock()
	pub(t, addr, "sensors/d03/s0003/air", `{"ts":1735689602,"pm25":3}`, 1)
	waitUntil(t, "a refused write", func() bool { acc.mu.Lock(); defer acc.mu.Unlock(); return acc.calls >= 6 })
	stop()
	// While the input is away.
	pub(t, addr, "sensors/d04/s0004/air", `{"ts":1735689603,"pm25":4}`, 1)

	acc2 := &collect{}
	stop2 := runInput(t, newInput(), acc2)
	defer stop2()
	waitUntil(t, "redelivery", func() bool { return len(acc2.snapshot()) >= 2 })
	time.Sleep(100 * time.Millisecond)

	got := append(acc.snapshot()[1:], acc2.snapshot()...)
	for i := range got {
		got[i] = got[i].Clone()
		sortFields(&got[i])
	}
	want := []protocols.Point{
		pt("air", tags("district", "d01", "station", "s0001"), 1735689600e9, "no2", 30.0, "pm25", 12.5),
		pt("noise", tags("district", "d02", "station", "s0002"), 1735689601e9, "laeq", 55.5),
		pt("air", tags("district", "d03", "station", "s0003"), 1735689602e9, "pm25", 3.0),
		pt("air", tags("district", "d04", "station", "s0004"), 1735689603e9, "pm25", 4.0),
	}
	// The QoS 0 probes (ts=1) may have been seen more than once.
	var real []protocols.Point
	for _, p := range got {
		if p.Time != 1e9 {
			real = append(real, p)
		}
	}
	if !reflect.DeepEqual(real, want) {
		t.Fatalf("got  %v\nwant %v", real, want)
	}
}

func sortFields(p *protocols.Point) {
	sort.Slice(p.Fields, func(i, j int) bool { return p.Fields[i].Key < p.Fields[j].Key })
}
