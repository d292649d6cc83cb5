//go:build !unix

package auth

import "os"

// lockFile only creates the lock file: without flock, changes from two
// processes at the same moment may lose one of them. The collector ships
// for Linux only.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}
