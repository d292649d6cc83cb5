// Package ring decides where data lives: which partition a point belongs
// to and, in a cluster, which nodes own a partition. It is pure: no I/O, no
// clocks, no imports of the bus or the store, so every node computes the same
// answer from the same inputs.
package ring
