// Package fanout lets any collector node answer any query over the
// cluster's data. Every series belongs to one of P partitions (by its
// measurement and tags, so all fields of a reading share one); each
// partition is owned by R nodes, each keeping the partition's series whole
// in its own store. A Source implements the query engine's Source (and the
// API's Stations and Groups) over the cluster: it asks one owner per
// partition and combines the per-series answers. Since a series lives
// whole on each owner, that is exact; the engine aggregates above it
// (group_by, steps) as it does on one node.
//
// # Basics
//
// For each request the Source takes, for every partition involved, its
// first candidate from the View (ready owners before rebuilding ones),
// groups the partitions by node and makes one call per node, in parallel.
// The node itself is read from Local directly; every other node gets one
// HTTP request to its internal endpoints (NewHandler, mounted at
// /internal/v1/) listing the partitions it is asked for. The answering
// node always filters by partition with PartitionOf, since it may still
// hold stale copies of partitions it no longer owns. Reads name series by
// measurement, field and tags; the answering node finds them again with
// store.Store.Resolve.
//
// Lookup answers are merged, de-duplicated and sorted by series key, the
// order the engine answers in and RawPage's cursors walk, so pages do not
// change when the node answering a partition does. Selector.MaxSeries
// bounds the merged set; a field found in several measurements across the
// nodes is an *store.AmbiguousFieldError as on one node. Stations merge by
// id (union of measurements; district and position of the node that saw
// the station last); Groups are the sorted union. Both ask every live
// owner and leave out a node that fails.
//
// The callbacks of ReadRaw, ReadRollups and Latest are never called
// concurrently.
//
// # Failures
//
// A node fails when it cannot be reached, answers 5xx or 401, sends an
// error frame of code internal, goes 30 s (IdleTimeout) without a byte, or
// its answer ends without an end frame or does not decode. Its partitions
// are then asked of their next candidate, within the same request;
// citysense_fanout_partition_retries_total counts them. A node that failed
// halfway through an answer may have delivered some of a series' data
// already: every node sends a series' samples and buckets in time order,
// so the Source remembers per series how far it got and drops what the
// replica sends again. When a partition has no candidate left, the request
// goes on without it and calls query.MarkPartial: the engine answers with
// "partial": true. An error of the caller's callback, the request's
// context, too many series or an ambiguous field end the request as they
// are; so does a 400 (a bad request is bad on every node).
//
// # Wire format
//
// Requests are JSON (POST lookup, raw, rollups, latest; GET stations,
// groups, export?partition=&before=), at most 16 MiB, with
// "Authorization: Bearer <hex HMAC-SHA256(secret, "citysense fanout v1")>",
// compared in constant time; without it 401, and 400 with a message for
// bad parameters. A read request lists the partitions and the series as
// {"m": measurement, "f": field, "t": [[key, value], ...]}; answers name
// series by their position in that list.
//
// An answer is streamed: "CSF1", then frames of a type byte, a uvarint
// payload length (at most 4 MiB) and the payload, written as the store
// reads, so neither side holds a whole answer:
//
//	r ref       str measurement, str field, uvarint n, n × (str key, str value)
//	m measurements  uvarint n, n × str (lookups without a measurement)
//	s samples   uvarint series, uvarint n, n × (time, value); the first time
//	            a zigzag varint, each later one the zigzag varint difference
//	            of its delta from the previous delta (a steady interval
//	            costs one byte); at most 4,096 per frame
//	b buckets   uvarint series, uvarint n, n × (varint start − previous
//	            start, varint count, 5 × float64 LE sum min max first last,
//	            varint first time − start, varint last time − start)
//	l latest    uvarint series, varint time, value
//	g group     str measurement, str field
//	t station   str id, str district, uvarint n, n × str measurement,
//	            varint last seen, byte has position, [float64 lat, lon]
//	e error     uvarint code (1 internal, 2 too many series, 3 ambiguous
//	            field, 4 bad request), str message; ends the answer
//	z end       uvarint count of items sent (refs, samples, buckets, ...)
//
// str is a uvarint length and the bytes; value is the kind byte of
// protocols.Kind, then a float64 LE, zigzag varint int, uvarint uint, one
// byte bool or str string. The decoder checks every length and count
// against the bytes there are: garbage is an error, never a panic or a
// large allocation. An answer without its end frame, or whose count
// differs, is truncated.
//
// An export (HandOff) is ref frames for every series of the partition,
// numbered from 0, then sample frames naming them.
//
// # Caveats
//
//   - HandOff carries raw points only: rollups of days whose raw points
//     retention already dropped stay behind on the old owner.
//   - Stations and Groups are not partitioned: a node's stale copies
//     contribute to them until it drops them.
//   - RawPage reads one series per ReadRaw call, so a page across nodes
//     costs a call per series it touches.
//
// It must not import the ring, cluster, bus, ingest, api or portal
// packages: the ring's partition function and the membership come in
// through Options.
package fanout
