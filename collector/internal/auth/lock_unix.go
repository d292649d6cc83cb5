//go:build unix

package auth

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// lockTimeout bounds the wait for another process (a CLI command, the
// collector's admin API) to finish its change.
const lockTimeout = 5 * time.Second

// lockFile takes an exclusive flock on path, creating it. flock locks
// belong to the open file description, so two descriptors in one process
// exclude each other too. It polls instead of blocking so that a process
// that hangs while holding the lock gives an error, not a hang.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(lockTimeout)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, errors.New("held by another process for more than " + lockTimeout.String())
			}
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
