// Package agent is citysense-agent as a library: New builds an agent from a
// validated configuration, Run runs it until its context ends.
//
// # Basics
//
// Data flows one way: inputs → buffer → uplink. Every input writes through
// one accumulator that appends to the durable buffer and returns only after
// the fsync, so an input acknowledges its device only for readings that
// survive a power cut. The uplink drains the buffer to the collector on its
// own schedule; a collector that is away for a day costs disk, not data.
//
// Run also serves /healthz, /readyz, /status (JSON counters) and /metrics
// (Prometheus text) on the configured address.
//
// # Shutdown
//
// When ctx ends, Run stops the inputs and waits for them, then lets the
// uplink finish the publish in flight, stops it, closes the buffer and
// returns nil. What is still buffered is sent by the next run.
//
// # Imports
//
// The agent imports protocols, internal/confx, internal/cli and its own
// internal packages. It must never import nats-server, the collector or any
// protocol sub-package (mains link those through protocols/all), so that
// the binary stays small enough for a router.
package agent
