// Package buffer is the agent's durable queue between the inputs and the
// outputs: every reading an input hands over is fsync'd here before the
// input may acknowledge its device, and it leaves only after every output
// confirmed that its destination stored it.
//
// # Basics
//
// The queue lives in <data_dir>/buffer as segment files, each a bbolt
// database named seg-<first sequence number>.db. Append checks that line
// protocol can carry the points, the commit cuts them into batches of at
// most BatchPoints points, encodes each batch as columns (columnar.go:
// series blocks, delta-of-delta times, decimals as scaled integers),
// compresses it (zstd, or s2) and stores it under the next sequence number
// in the newest segment. When a segment reaches SegmentSize it is sealed
// and a new one begun. Batches of earlier versions, line protocol, are
// read as they are: each index entry names its batch's format. Outputs
// turn batches into line protocol with a Transcoder when they send them.
//
// Group commit: a single committer goroutine writes. It gathers the Appends
// that arrive until FlushInterval has passed since its previous commit, or
// until FlushPoints points wait, and stores them all in one transaction,
// one fsync. Appends from small writers (an MQTT message is often one
// point) share batches, which is what makes compression pay. Append returns
// only after the commit holding its points: that is the durability promise
// the inputs pass on to their devices. A lone Append after a quiet spell is
// committed at once.
//
// Outputs: each output reads under its own id (Read) and records what its
// destination confirmed (Ack) as ranges of sequence numbers, persisted in
// the segment they belong to. Outputs may confirm out of order (the uplink
// sends new data before the backlog). A batch every current output has
// acknowledged is deleted; a sealed segment left without batches is deleted
// whole, which is how disk space comes back (a bbolt file never shrinks).
// An output id not seen before starts at the oldest batch kept; removing an
// output releases what only it was waiting for.
//
// Sequence numbers increase and are never reused, because the uplink sends
// each batch under the id <agent-id>-<seq> and the collector drops a known
// id as a resend. They survive the loss of every segment: a small file
// (buffer/seq, replaced atomically) holds a mark above every number handed
// out, raised in steps before it is reached; on start the next number is
// the larger of the mark and what the surviving segments hold.
//
// # Bounds
//
// MaxBytes bounds the bytes of the segment files. When an Append does not
// fit, the Policy decides: DropOldest deletes the oldest sealed segments
// (a segment is at most MaxBytes/8, so at most an eighth goes at once),
// DropNewest refuses the Append with ErrFull, Block makes it wait for the
// outputs to free space or for its context. MaxAge deletes batches buffered
// longer ago. Every drop is counted in
// citysense_agent_points_dropped_total{reason} and logged with the number
// of points.
//
// # Recovery
//
// Open loads every segment and checks its structure and index. A segment
// that bbolt cannot open, or whose pages or index do not read back, is
// moved to <data_dir>/quarantine with a .txt note, an ERROR log and the
// metric citysense_agent_buffer_segments_quarantined_total; the rest of the
// queue is kept. A batch whose body later fails its CRC-32C checksum is
// moved there alone. Open never fails because of the data: only an unusable
// directory or another process holding its lock stops it.
//
// # Caveats
//
// One process at a time: buffer/LOCK is flock'd and holds the owner's pid.
// Inspect opens a stopped agent's buffer read-only (for `citysense-agent
// buffer stats|export`) and refuses while an agent holds it.
//
// This package is the only importer of go.etcd.io/bbolt in the agent. It
// imports protocols and nothing else of CitySense.
package buffer
