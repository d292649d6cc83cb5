// Package uplink forwards the agent's buffered batches to the collector.
//
// # Basics
//
// The nats output takes the oldest entries of the buffer, publishes each to
// JetStream on cs.raw.<agent-id> with the headers Nats-Msg-Id:
// <agent-id>-<seq> and Content-Encoding: zstd, and acknowledges an entry in
// the buffer only after the stream's PubAck. A failed publish is retried,
// with capped exponential backoff and jitter, with the same message id, so
// that a batch the stream did store (but whose ack was lost, or whose ack
// arrived after the agent crashed) is dropped by the stream's duplicate
// window instead of stored twice.
//
// The connection reconnects forever with jittered waits. Publishing while
// disconnected fails at once rather than queueing in the client: the
// durable buffer is the queue, and a second one in memory would only cost
// a gateway RAM. A reconnect cuts the current backoff short.
//
// On shutdown the publish in flight is allowed to finish (bounded by the
// publish timeout) and acknowledged, then Run returns.
//
// # Caveats
//
// Batches are published one at a time, each waiting for its ack; the
// acknowledgements to the buffer are committed once per round of entries.
// That is plenty for a gateway's rates and keeps the order of batches.
//
// This package imports github.com/nats-io/nats.go and its jetstream
// package; the agent must never link nats-server, which only the tests here
// start. It imports the agent's buffer package for its Entry type.
package uplink
