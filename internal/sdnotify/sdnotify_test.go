package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listen opens a unixgram socket as systemd does and returns it with its
// NOTIFY_SOCKET value.
func listen(t *testing.T, name string) (*net.UnixConn, string) {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, name
}

// recv reads one datagram, failing the test after a generous deadline (a
// hang, not a speed bound).
func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestNew_environment(t *testing.T) {
	self := fmt.Sprint(os.Getpid())
	for _, c := range []struct {
		name     string
		env      map[string]string
		nilN     bool
		watchdog time.Duration
		err      string
	}{
		{name: "not under systemd", env: map[string]string{}, nilN: true},
		{name: "socket only", env: map[string]string{"NOTIFY_SOCKET": "/run/systemd/notify"}},
		{name: "abstract socket", env: map[string]string{"NOTIFY_SOCKET": "@sd-notify"}},
		{name: "watchdog", env: map[string]string{"NOTIFY_SOCKET": "/s", "WATCHDOG_USEC": "30000000"}, watchdog: 30 * time.Second},
		{name: "watchdog for this pid", env: map[string]string{"NOTIFY_SOCKET": "/s", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": self}, watchdog: 2 * time.Second},
		{name: "watchdog for another pid", env: map[string]string{"NOTIFY_SOCKET": "/s", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}},
		{name: "relative socket", env: map[string]string{"NOTIFY_SOCKET": "notify"}, err: `NOTIFY_SOCKET "notify"`},
		{name: "bad usec", env: map[string]string{"NOTIFY_SOCKET": "/s", "WATCHDOG_USEC": "30s"}, err: `WATCHDOG_USEC "30s"`},
		{name: "zero usec", env: map[string]string{"NOTIFY_SOCKET": "/s", "WATCHDOG_USEC": "0"}, err: `WATCHDOG_USEC "0"`},
		{name: "bad pid", env: map[string]string{"NOTIFY_SOCKET": "/s", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "me"}, err: `WATCHDOG_PID "me"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, err := New(env(c.env))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one naming %s", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (n == nil) != c.nilN {
				t.Fatalf("notifier = %v, want nil: %v", n, c.nilN)
			}
			if got := n.WatchdogInterval(); got != c.watchdog {
				t.Fatalf("watchdog = %s, want %s", got, c.watchdog)
			}
		})
	}
}

// TestNotifier_Start_readyWatchdogStopping runs the protocol against a real
// socket: nothing before ready() answers true, then READY=1, then
// WATCHDOG=1 pings, and STOPPING=1 when the context ends.
func TestNotifier_Start_readyWatchdogStopping(t *testing.T) {
	sock, path := listen(t, filepath.Join(t.TempDir(), "notify"))
	n, err := New(env(map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000"}))
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int64
	var isReady atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	stop := n.Start(ctx, nil, func() bool { asked.Add(1); return isReady.Load() })
	defer stop()

	// Not ready yet: the notifier asks, and sends nothing.
	for asked.Load() < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := sock.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if m, err := sock.Read(make([]byte, 64)); err == nil {
		t.Fatalf("a %d-byte datagram arrived before the service was ready", m)
	}

	isReady.Store(true)
	if got := recv(t, sock); got != Ready {
		t.Fatalf("first datagram %q, want %q", got, Ready)
	}
	for i := 0; i < 3; i++ {
		if got := recv(t, sock); got != Watchdog {
			t.Fatalf("datagram %d after READY = %q, want %q", i+1, got, Watchdog)
		}
	}
	cancel()
	// Pings already in flight may precede STOPPING=1; nothing follows it.
	for {
		got := recv(t, sock)
		if got == Stopping {
			break
		}
		if got != Watchdog {
			t.Fatalf("datagram %q while stopping, want %q or %q", got, Watchdog, Stopping)
		}
	}
	stop() // returns: the goroutine has ended
	if err := sock.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if m, err := sock.Read(make([]byte, 64)); err == nil {
		t.Fatalf("a %d-byte datagram arrived after STOPPING=1", m)
	}
}

// TestNotifier_Start_noWatchdog: without WATCHDOG_USEC the notifier sends
// READY=1 and, on stop, STOPPING=1, and no pings in between.
func TestNotifier_Start_noWatchdog(t *testing.T) {
	sock, path := listen(t, filepath.Join(t.TempDir(), "notify"))
	n, err := New(env(map[string]string{"NOTIFY_SOCKET": path}))
	if err != nil {
		t.Fatal(err)
	}
	stop := n.Start(context.Background(), nil, func() bool { return true })
	if got := recv(t, sock); got != Ready {
		t.Fatalf("first datagram %q, want %q", got, Ready)
	}
	stop() // the parent context never ends: stop alone ends the protocol
	if got := recv(t, sock); got != Stopping {
		t.Fatalf("second datagram %q, want %q", got, Stopping)
	}
}

// TestNotifier_Start_stoppedBeforeReady: a service that stops before it was
// ready still says STOPPING=1 and never READY=1.
func TestNotifier_Start_stoppedBeforeReady(t *testing.T) {
	sock, path := listen(t, filepath.Join(t.TempDir(), "notify"))
	n, err := New(env(map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000"}))
	if err != nil {
		t.Fatal(err)
	}
	stop := n.Start(context.Background(), nil, func() bool { return false })
	stop()
	if got := recv(t, sock); got != Stopping {
		t.Fatalf("datagram %q, want %q", got, Stopping)
	}
}

// TestNotifier_Notify_abstractSocket sends to a socket in the abstract
// namespace, which systemd uses in some containers.
func TestNotifier_Notify_abstractSocket(t *testing.T) {
	name := fmt.Sprintf("@citysense-sdnotify-test-%d", os.Getpid())
	sock, _ := listen(t, name)
	n, err := New(env(map[string]string{"NOTIFY_SOCKET": name}))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify("STATUS=buffering 12 batches\n" + Ready); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, sock); got != "STATUS=buffering 12 batches\nREADY=1" {
		t.Fatalf("datagram %q", got)
	}
}

// TestNotifier_nil: outside systemd every method is a no-op.
func TestNotifier_nil(t *testing.T) {
	var n *Notifier
	if err := n.Notify(Ready); err != nil {
		t.Fatal(err)
	}
	called := false
	n.Start(context.Background(), nil, func() bool { called = true; return true })()
	if called {
		t.Fatal("a nil notifier asked ready()")
	}
}

// TestNotifier_Notify_noListener: a socket nobody listens on is an error
// that names it, not a panic.
func TestNotifier_Notify_noListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone")
	n, err := New(env(map[string]string{"NOTIFY_SOCKET": path}))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(Ready); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want one naming %s", err, path)
	}
}
