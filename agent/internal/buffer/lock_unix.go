//go:build unix

package buffer

import (
	"errors"
	"os"
	"syscall"
)

// flock takes an advisory lock on f without waiting: exclusive for the
// agent, shared for the offline inspection commands, so that neither runs
// against a buffer the other is changing.
func flock(f *os.File, exclusive bool) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errLockHeld
	}
	return err
}
