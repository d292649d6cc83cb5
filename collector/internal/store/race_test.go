//go:build race

package store

// raceEnabled shrinks the property tests: the race detector makes them
// about ten times slower.
const raceEnabled = true
