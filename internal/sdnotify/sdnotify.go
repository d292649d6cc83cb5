package sdnotify

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// Messages of the protocol this package sends.
const (
	Ready    = "READY=1"
	Watchdog = "WATCHDOG=1"
	Stopping = "STOPPING=1"
)

// Notifier sends notifications to one socket. A nil *Notifier is valid and
// sends nothing: that is what New returns outside systemd.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration // 0: systemd asked for no watchdog pings
}

// New reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID through getenv
// (os.Getenv in the mains). It returns nil, nil when NOTIFY_SOCKET is unset,
// and an error naming the variable when one is malformed. Watchdog pings are
// asked for only when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is this
// process (systemd sets it so that children do not ping for their parent).
func New(getenv func(string) string) (*Notifier, error) {
	sock := getenv("NOTIFY_SOCKET")
	if sock == "" {
		return nil, nil
	}
	// A leading '@' names a socket in the abstract namespace; Go's net
	// package maps it to the leading NUL byte the kernel expects.
	if sock[0] != '/' && sock[0] != '@' {
		return nil, fmt.Errorf("NOTIFY_SOCKET %q: want an absolute path or an @abstract name", sock)
	}
	n := &Notifier{addr: &net.UnixAddr{Name: sock, Net: "unixgram"}}
	if v := getenv("WATCHDOG_USEC"); v != "" {
		usec, err := strconv.ParseUint(v, 10, 63)
		if err != nil || usec == 0 {
			return nil, fmt.Errorf("WATCHDOG_USEC %q: want a positive number of microseconds", v)
		}
		mine := true
		if p := getenv("WATCHDOG_PID"); p != "" {
			pid, err := strconv.Atoi(p)
			if err != nil {
				return nil, fmt.Errorf("WATCHDOG_PID %q: want a process id", p)
			}
			mine = pid == os.Getpid()
		}
		if mine {
			n.watchdog = time.Duration(usec) * time.Microsecond
		}
	}
	return n, nil
}

// WatchdogInterval is the interval systemd kills the service after when it
// has not pinged, or 0 when no pings are asked for.
func (n *Notifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Notify sends one state string (e.g. Ready, or several lines joined by
// "\n") as one datagram.
func (n *Notifier) Notify(state string) error {
	if n == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notify systemd at %q: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd at %q: %w", n.addr.Name, err)
	}
	return nil
}

// readyPoll is how often Start asks ready() before it first answers true.
const readyPoll = 50 * time.Millisecond

// Start runs the protocol in a goroutine until ctx ends: READY=1 as soon as
// ready reports true, then WATCHDOG=1 every half watchdog interval for as
// long as ready still reports true, and STOPPING=1 when ctx ends. ready runs
// on the goroutine, so a ready() that hangs on a stuck lock stops the pings
// and systemd restarts the service, which is the point of the watchdog.
//
// The returned stop ends the goroutine (sending STOPPING=1 if ctx has not
// already) and waits for it; call it before the process exits. Errors are
// logged once each kind, never returned: a service must not fail because
// its supervisor stopped listening.
func (n *Notifier) Start(ctx context.Context, log *slog.Logger, ready func() bool) (stop func()) {
	if n == nil {
		return func() {}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		logged := map[string]bool{}
		send := func(state string) {
			if err := n.Notify(state); err != nil && !logged[state] {
				logged[state] = true
				log.Warn("systemd notification failed", "state", state, "err", err)
			}
		}
		defer send(Stopping)

		poll := time.NewTicker(readyPoll)
		for !ready() {
			select {
			case <-ctx.Done():
				poll.Stop()
				return
			case <-poll.C:
			}
		}
		poll.Stop()
		send(Ready)
		if n.watchdog <= 0 {
			<-ctx.Done()
			return
		}
		tick := time.NewTicker(n.watchdog / 2)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if ready() {
					send(Watchdog)
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// Start is New(os.Getenv) followed by Notifier.Start, for a main: a
// malformed environment is logged and notifications stay off.
func Start(ctx context.Context, log *slog.Logger, ready func() bool) (stop func()) {
	n, err := New(os.Getenv)
	if err != nil {
		if log != nil {
			log.Warn("systemd notifications off", "err", err)
		}
		return func() {}
	}
	return n.Start(ctx, log, ready)
}
