// Package bus runs the collector's embedded NATS server with JetStream and
// owns the streams on it. It is the only package of the module that imports
// github.com/nats-io/nats-server/v2, so the rest of the collector (and
// nothing of the agent) links the server.
//
// # Basics
//
// Start configures the server from a Config, routes its logging to slog,
// waits until it accepts clients, creates or updates the streams CS_RAW
// (agents' raw batches, work-queue retention, 2-minute duplicate window) and
// CS_SERIES (limits retention) and opens an in-process client connection
// for the collector's own consumers. Shutdown closes that connection and
// stops the server, waiting until it has.
//
// # Authentication
//
// Every client goes through one server.Authentication (CustomClientAuthentication)
// that asks Credentials on each connection, so an enrollment or a
// revocation applies to the next connection without reloading the server:
//
//   - an agent proves its NKey by signing the server's nonce; it may publish
//     to cs.raw.<agent-id> only and subscribe to _INBOX.> (for the PubAck);
//   - a token (nats.Token, a NATS password, or an MQTT password) may
//     publish to cs.raw.<device>, except enrolled agents' subjects and
//     cs.raw.http;
//   - without credentials, a client is accepted only in development mode:
//     every listener on loopback and no enrolled agent. It may publish to
//     cs.raw.>;
//   - the collector's own connection authenticates with an NKey created at
//     Start that exists only in this process, and may do everything. Its
//     inbox lies outside _INBOX.> so that no client can read the batches
//     the ingest consumer fetches.
//
// Revalidate closes the connections that the current credentials no
// longer allow. nats-server has no hook for permission violations; the
// logger adapter recognises its violation lines and counts them.
//
// # Caveats
//
// Single node only: no cluster, routes or replicas yet. JetStream's default
// interval sync survives a process crash, not a power cut; Config.SyncAlways
// survives both at a large cost in throughput. The MQTT listener is best
// effort: its PUBACK precedes the CS_RAW write. Token clients' permissions
// are fixed at connect time: an agent enrolled later is protected from
// them from their next connection on.
//
// It must not import ingest, store, api or portal: they consume the bus
// through nats.go, which is the narrow interface to it.
package bus
