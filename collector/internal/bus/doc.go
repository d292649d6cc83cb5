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
// # Caveats
//
// Single node only: no cluster, routes or replicas yet. JetStream's default
// interval sync survives a process crash, not a power cut; Config.SyncAlways
// survives both at a large cost in throughput.
//
// It must not import ingest, store, api or portal: they consume the bus
// through nats.go, which is the narrow interface to it.
package bus
