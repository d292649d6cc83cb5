// Package agent is citysense-agent as a library: New builds an agent from a
// validated configuration, Run runs it until its context ends, Reload
// switches a running agent to a new configuration.
//
// # Basics
//
// Data flows one way: inputs → processors → buffer → outputs. Every input
// writes through its own accumulator, which passes the points through the
// input's processor chain, then the global chain, then appends them to the
// durable buffer and returns only after the fsync, so an input acknowledges
// its device only for readings that survive a power cut. A timer flushes
// the chains' completed windows into the buffer. Each output drains the
// buffer on its own schedule, live data first; a destination that is away
// for a day costs disk, not data.
//
// Run also serves /healthz, /readyz, /status (JSON) and /metrics
// (Prometheus text) on the configured address; see docs/agent-operations.md
// for what /readyz answers when.
//
// # Reload and shutdown
//
// Reload keeps the buffer open and keeps running whatever did not change;
// a changed input is stopped (its chain flushed into the buffer and its
// state saved) and started anew, a changed output finishes what it has in
// flight and starts again from the buffer's record of what it delivered. A
// configuration that fails validation changes nothing.
//
// When ctx ends, Run stops the inputs, flushes every chain into the buffer
// (Flush(true), then Close saves their state), lets the outputs finish what
// is in flight within their timeout, closes the buffer and returns nil.
// What is still buffered is sent by the next run.
//
// # Imports
//
// The agent imports protocols, internal/confx, internal/cli and its own
// internal packages. It must never import nats-server, the collector or any
// protocol sub-package (mains link those through protocols/all), so that
// the binary stays small enough for a router.
package agent
