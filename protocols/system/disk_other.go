//go:build !linux

package system

import "errors"

// diskUsage is implemented for Linux only, the agent's platform.
func diskUsage(string) (uint64, uint64, error) {
	return 0, 0, errors.New("disk usage is read on Linux only")
}
