package e2e

import (
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// edgeNotifySocket listens where a Type=notify service's systemd would and
// records every datagram.
type edgeNotifySocket struct {
	mu   sync.Mutex
	msgs []string
}

func edgeListenNotify(t *testing.T) (*edgeNotifySocket, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &edgeNotifySocket{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, string(buf[:n]))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return s, path
}

func (s *edgeNotifySocket) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

func edgeCount(msgs []string, m string) int {
	n := 0
	for _, x := range msgs {
		if x == m {
			n++
		}
	}
	return n
}

// TestEdge_SdNotify runs both built programs as systemd would run them with
// Type=notify and WatchdogSec (NOTIFY_SOCKET, WATCHDOG_USEC) and checks the
// datagrams: READY=1 once, watchdog pings after it, STOPPING=1 last on
// SIGTERM, and a clean exit.
func TestEdge_SdNotify(t *testing.T) {
	for _, prog := range []string{"citysense-agent", "citysense-collector"} {
		t.Run(prog, func(t *testing.T) {
			sock, path := edgeListenNotify(t)
			t.Setenv("NOTIFY_SOCKET", path)
			t.Setenv("WATCHDOG_USEC", "200000") // a ping every 100 ms
			t.Setenv("WATCHDOG_PID", "")

			var p *proc
			if prog == "citysense-agent" {
				cfg := writeFile(t, "agent.yaml", `
agent:
  id: e2e-notify
inputs:
  - type: sim
    stations: 2
    interval: 1s
`)
				// No collector: the agent buffers, which is ready (degraded).
				p = start(t, prog, "run", "-c", cfg, "--data-dir", t.TempDir(), "--http", freeAddr(t),
					"--collector", "nats://"+freeAddr(t), "--log-format", "json")
			} else {
				p = start(t, prog, "run", "--data-dir", t.TempDir(), "--http", freeAddr(t), "--nats", freeAddr(t), "--log-format", "json")
			}
			waitFor(t, prog+" to say READY=1 and ping the watchdog 3 times", 60*time.Second, func() (bool, error) {
				msgs := sock.got()
				return edgeCount(msgs, "READY=1") == 1 && edgeCount(msgs, "WATCHDOG=1") >= 3, nil
			})
			p.stop(t, 30*time.Second)
			// The process has exited; its last datagrams may still be queued
			// in the socket for the reader.
			waitFor(t, "STOPPING=1 to be read", 10*time.Second, func() (bool, error) {
				return edgeCount(sock.got(), "STOPPING=1") > 0, nil
			})
			msgs := sock.got()
			if msgs[0] != "READY=1" {
				t.Fatalf("first datagram %q, want READY=1 (all: %q)", msgs[0], msgs)
			}
			if msgs[len(msgs)-1] != "STOPPING=1" || edgeCount(msgs, "STOPPING=1") != 1 {
				t.Fatalf("want STOPPING=1 once and last, got %q", msgs)
			}
			for _, m := range msgs[1 : len(msgs)-1] {
				if m != "WATCHDOG=1" {
					t.Fatalf("unexpected datagram %q between READY and STOPPING (all: %q)", m, msgs)
				}
			}
			t.Logf("%s: READY=1, %d × WATCHDOG=1, STOPPING=1", prog, edgeCount(msgs, "WATCHDOG=1"))
		})
	}
}
