// Package buffer is the agent's durable queue between the inputs and the
// uplink: every reading an input hands over is fsync'd here before the input
// may acknowledge its device, and leaves only after the uplink confirmed that
// the collector stored it.
//
// # Basics
//
// The queue is one bbolt file, <data_dir>/buffer.db. Append encodes points as
// line protocol (nanosecond precision), compresses them with zstd and stores
// them as one or more entries under new sequence numbers, big-endian so that
// bbolt's key order is the queue order. Concurrent Appends share one
// transaction and so one fsync (bbolt's DB.Batch: group commit), and each
// returns only after that commit. Peek returns the oldest entries, Ack deletes
// them. The sequence number never repeats, not even after a restart with an
// empty queue, because the uplink uses it as the deduplication id of the
// batch (<agent-id>-<seq>): a reused number would make the collector drop new
// data as a resend of old.
//
// The pending counts (entries, points, compressed bytes) live in a meta
// bucket updated in the same transaction as the entries, so they are exact
// and survive restarts.
//
// # Caveats
//
// One process at a time: a second Open of the same directory fails after a
// second instead of waiting for the file lock forever.
//
// MaxBytes bounds the compressed bytes pending; Append returns ErrFull above
// it and the input decides what to do (the sim retries, a device would be
// refused and resend). Dropping old data is a later policy.
//
// This package is the only importer of go.etcd.io/bbolt in the agent. It
// imports protocols and nothing else of CitySense.
package buffer
