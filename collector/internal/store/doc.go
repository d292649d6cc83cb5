// Package store is the collector's time-series store on bbolt
// (go.etcd.io/bbolt); it is the only package of the collector that imports
// bbolt. docs/storage.md describes the format and its reasons at length.
//
// # Basics
//
// A store is a directory:
//
//	index.db          series ids, measurement+field groups, stations
//	raw/2026-11-23.db raw points of one UTC day
//	1m/2026-11-19.db  1-minute rollups of a week, written as raw days expire
//	1h/2026-11-05.db  1-hour rollups of four weeks
//
// Writes go to an in-memory head: per 2-hour window (Options.Window), one
// column of samples per series, packed as varint deltas as they arrive
// (headCol, 2–3 bytes a reading). When a window is due — the newest data is
// past its end plus a grace period, or it went quiet, or it was held
// MaxHold — its series are encoded into chunks (delta-of-delta times;
// floats that are short decimals as scaled integers, zigzag differences
// from a prediction; other floats XOR'd; ints, uints, bools and strings in
// forms of their own), the chunks of one measurement+field packed into
// blocks of about 64 KB, each block compressed with zstd and stored under
// one key, merged with whatever the window held on disk already. The
// window's hours (count, sum, min, max, first, last, with their times) are
// recomputed from the merged chunks and written beside; when the day
// closes its hours are rewritten as one chunk per series.
//
// Append takes points and a done callback, which runs once everything the
// call wrote is on disk — for a live window, when the window is written.
// The ingest stage acknowledges the JetStream messages the points came from
// only then: the stream (CS_SERIES) is the write-ahead log, and a crash
// loses nothing acknowledged, since what was not is replayed. Write is
// Append followed by Flush, for callers that need the points on disk when
// it returns.
//
// Writing the same series and time again is idempotent: the last write
// wins (in stream order, so a replay leaves the same state). Points may
// arrive in any order.
//
// Retention deletes whole partition files: bbolt never shrinks a file, so
// deleting files is the only way to give space back. Before a raw day is
// deleted its 1-minute rollups are written.
//
// Lookup, ReadRaw, ReadRollups and Latest merge disk and head; the query
// package plans which to use. Select and Stations keep the walking
// skeleton's API.
//
//	s, err := store.OpenDir(dir, store.DefaultOptions())
//	...
//	n, err := s.Append(points, func(err error) { /* acknowledge */ })
//	...
//	err = s.Close() // writes the head first
//
// # Caveats
//
//   - The head is not on disk: after a crash, what was not yet written
//     comes back only if the writer replays it (ingest does, from
//     JetStream). An Append caller that cannot replay must wait for done.
//   - A consumer that acknowledges on done holds messages up to MaxHold:
//     its AckWait must be above Options.AckWait and its MaxAckPending
//     unlimited, and the stream must keep messages longer.
//   - Points older than the raw retention are refused and counted
//     (citysense_store_points_rejected_total), since their partition would
//     be deleted at once.
//   - A late point rewrites the blocks of its window and measurement+field
//     (about 64 KB each); a steady trickle of very late points costs CPU.
//   - 1-minute aggregates of days whose raw points are kept are computed
//     from the raw points when read; for one reading a minute that is the
//     same work as reading stored 1-minute rollups.
//   - Strings have no rollups.
//   - The whole series index lives in memory (about 150 bytes a series).
//   - Stations' last-seen times are written when they moved a day and at a
//     clean close; after a crash a station's next point moves it on.
//
// It must not import the bus, ingest, api or portal packages: data flows into
// it from ingest and out of it to the query side.
package store
