// Package e2e runs the built binaries against each other and against real
// peers (mosquitto, pymodbus, Chromium, qemu-user) as separate processes on
// loopback ports, the way an operator would. Nothing here is mocked.
//
// The binaries come from $CITYSENSE_BIN (set by `make e2e`) or are built into a
// temporary directory by TestMain. Under CI=true a missing peer fails the test
// that needs it; it never skips.
package e2e
