// Package uplink drains the agent's buffer to its destinations: the nats
// output publishes to the collector's JetStream, the influx output writes to
// any InfluxDB-compatible HTTP API (InfluxDB 1.x/2.x, VictoriaMetrics, the
// collector's /write and /api/v2/write).
//
// # Basics
//
// An Output reads batches under its own id from the buffer, sends up to
// MaxInflight of them at once and acknowledges each to the buffer only
// after the destination confirmed it (a JetStream PubAck, an HTTP 2xx). A
// batch keeps its buffer number for life and is sent under the id
// <agent-id>-<seq> (the Nats-Msg-Id header; X-Request-Id over HTTP), so a
// resend after a lost confirmation or a crash is dropped by the stream's
// duplicate window instead of stored twice. The buffer stores batches as
// columns; both outputs send line protocol, which a buffer.Transcoder
// writes from them at send time (nats: compressed with the batch's codec,
// influx: gzip'd when configured).
//
// Live first, backfill gently: after an outage (or at start) the output
// sends new batches as they arrive and drains the backlog piled up before
// at BackfillRate points/s (a token bucket), so that fresh readings are on
// the public map at once and a fleet of gateways coming back together does
// not flatten the collector. See Output.Run.
//
// A failed delivery stops sending; once what is in flight has settled the
// output waits a capped exponential backoff with jitter (cut short when the
// NATS connection comes back) and starts again from the buffer's record of
// what was acknowledged. NATS reconnects forever with jittered waits; while
// disconnected nothing is queued in the client: the buffer on disk is the
// queue. An HTTP 429 or 5xx is retried, honouring Retry-After; a 400, 413
// or 422 means the server refuses that data for good, so the batch goes to
// the buffer's quarantine directory with the server's answer and the
// output moves on.
//
// # Credentials and TLS
//
// The nats output's creds file may hold a user NKey seed (as `citysense-
// collector agent add` writes it) or a standard NATS .creds file with a
// user JWT; DetectCreds tells them apart. TLS takes a CA bundle, a client
// certificate and key, and the expected server name.
//
// # Imports
//
// This package imports nats.go and its jetstream package, never
// nats-server (only its tests start one), and the agent's buffer package
// for the Batch type.
package uplink
