// Package store is the collector's time-series store on bbolt
// (go.etcd.io/bbolt); it is the only package of the collector that imports
// bbolt.
//
// # Basics
//
// One file, <data_dir>/store.db, holds two top-level buckets:
//
//   - "series": one nested bucket per series, named by its
//     protocols SeriesKey (`air,district=d01,station=s0001 pm25`). Keys are
//     the point's time in nanoseconds as 8 bytes big-endian with the sign bit
//     flipped, so that byte order is time order also before 1970; values are
//     one kind byte (protocols.Kind) followed by 8 bytes (float bits, int,
//     uint, or 0/1 for bool) or by the bytes of a string.
//   - "stations": station id → JSON with district, measurements seen,
//     last seen and the latest position from the `station` measurement's
//     lat/lon fields.
//
// Write commits each call as one fsync'd transaction, so a caller may
// acknowledge its input once Write returned nil. Writing the same
// series+timestamp again overwrites the value: replays are idempotent.
//
// # Caveats
//
// This is the walking skeleton's store: one value per key, no compression, no
// rollups, no retention. Select finds series by walking every series name,
// which is fine for thousands of series and not for millions. The on-disk
// layout will change; nothing outside this package may depend on it.
//
// It must not import the bus, ingest, api or portal packages: data flows into
// it from ingest and out of it to the query side.
package store
