package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// 100 on every Linux this runs on.
const clockTick = 10 * time.Millisecond

// proc is a server process the bench started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProc(name, bin string, args []string, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so that a Ctrl-C of the bench reaches it
	// only through the bench's clean stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cpu is the user+system CPU time the process used so far.
func (p *proc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s cpu: %w", p.name, err)
	}
	// The command name (field 2) may hold spaces; fields count from the
	// closing parenthesis on: state is field 3, utime 14, stime 15.
	rest := b[bytes.LastIndexByte(b, ')')+2:]
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return 0, fmt.Errorf("%s cpu: short /proc stat", p.name)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%s cpu: %w", p.name, err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// peakRSS is the process's high-water mark of resident memory.
func (p *proc) peakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s rss: %w", p.name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s rss: %w", p.name, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s rss: no VmHWM", p.name)
}

// waitIdle waits until the process used under 2% of a CPU for three
// seconds running: its merges, compactions and flushes are done.
func (p *proc) waitIdle(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	prev, err := p.cpu()
	if err != nil {
		return err
	}
	quiet := 0
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		cur, err := p.cpu()
		if err != nil {
			return err
		}
		if cur-prev <= 20*time.Millisecond {
			if quiet++; quiet == 3 {
				return nil
			}
		} else {
			quiet = 0
		}
		prev = cur
	}
	return fmt.Errorf("%s still busy after %s", p.name, timeout)
}

// stop asks the process to shut down cleanly and returns the CPU time it
// used over its life (wait4's rusage, which includes the shutdown).
func (p *proc) stop(timeout time.Duration) (time.Duration, error) {
	if !p.exited() {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return 0, err
		}
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		return 0, fmt.Errorf("%s did not stop within %s (log %s)", p.name, timeout, p.log)
	}
	st := p.cmd.ProcessState
	if !st.Success() {
		return st.UserTime() + st.SystemTime(), fmt.Errorf("%s exited with %s (log %s)", p.name, st, p.log)
	}
	return st.UserTime() + st.SystemTime(), nil
}

// kill ends the process if it still runs; for cleanup after errors.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
