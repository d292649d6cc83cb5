// Package ring decides where data lives: which partition a point belongs
// to and, in a cluster, which nodes own a partition. It is pure: no I/O, no
// clocks, no imports of the bus or the store, so every node computes the same
// answer from the same inputs.
//
// Partition and SeriesPartition place a series (measurement and tag set)
// in one of n partitions; PointHash is part of the on-disk contract.
// Owners, Assign and Owned give a partition's r owners among a set of node
// names by rendezvous hashing: deterministic, independent of the order of
// the names, and a node joining or leaving moves only the partitions it
// gains or loses. With few partitions the shares are uneven the way random
// draws are (16 partitions over 3 nodes at r=2: 11, 7 and 14 for one name
// set); 64 partitions keep every node within ±30 % of the mean.
package ring
