//go:build !unix

package buffer

import "os"

// flock is a no-op where flock(2) does not exist; the agent runs on Linux.
func flock(*os.File, bool) error { return nil }
