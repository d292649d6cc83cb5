// Package quarantine keeps the payloads the agent's inputs could not read,
// raw and bounded, so that an installer can see exactly what a device sent.
//
// # Basics
//
// The store is one bbolt file, <data_dir>/quarantine.db, apart from the
// buffer's segments so that its size never counts against buffer.max_bytes
// and a garbage flood can never push out readings. Each Add is one fsync'd
// transaction holding one entry: an id (increasing), the time, the input,
// where the payload came from ("mqtt sensors/d01/s0001/air"), why it was
// refused, its size and its bytes (the first MaxEntryBytes of them). The
// store is bounded by count (MaxEntries) and by bytes (MaxBytes): adding
// beyond either evicts the oldest entries, and evictions are counted in the
// file, so `citysense-agent quarantine list` can say what was lost.
//
// # Caveats
//
// bbolt holds an exclusive flock on an open file: while the agent runs,
// Open in another process fails with ErrLocked after Options.LockTimeout.
// The CLI then asks the running agent over its local HTTP API instead
// (see agent.Handler). The file does not shrink after a purge; bbolt
// reuses the freed pages.
//
// Besides internal/buffer this is the only importer of bbolt in the agent.
// It imports nothing of CitySense.
package quarantine
