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
// CS_SERIES (interest retention on a single node, limits in a cluster)
// and opens an in-process client connection
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
//   - the collector's own connection authenticates with a random token
//     created at Start that exists only in this process, and may do
//     everything. Its inbox lies outside _INBOX.> so that no client can
//     read the batches the ingest consumer fetches.
//
// Revalidate closes the connections that the current credentials no
// longer allow. nats-server has no hook for permission violations; the
// logger adapter recognises its violation lines and counts them.
//
// # Cluster mode
//
// With Config.Cluster set, the node's server is one of a NATS cluster with
// clustered JetStream; without it the server configures no cluster at all
// (a one-node "cluster" never elects a JetStream meta leader).
//
//   - Identity: Config.Name is the server name and JetStream's raft
//     identity; it must be unique in the cluster and stable across
//     restarts. The store directory must be kept with it.
//   - Routes: the route listener (ClusterConfig.Listen) accepts only
//     servers that present the route password, HMAC-SHA256 of a fixed label
//     under ClusterConfig.Secret; a server with another secret is refused
//     and stays alone. Routes do not go through the client authenticator,
//     and clients cannot use the route port. Optional route TLS verifies
//     peers in both directions when a CA is set.
//   - Joining: the seeds (ClusterConfig.Routes), the persisted peers file
//     and the node's own URL (JetStream needs a configured route) are the
//     explicit routes at start. AddRoutes makes every peer memberlist
//     reports an explicit route (nats-server retries a gossiped route only
//     once, an explicit one for ever) and persists the list atomically, so
//     a restart needs no seed.
//   - Streams: created at R1 in the background as soon as JetStream has a
//     meta leader (which needs a second node); Ready reports not ready
//     until then, WaitReady waits. CS_SERIES uses limits retention with
//     ClusterConfig.SeriesMaxAge, since a new partition owner replays it.
//   - Replicas: SetReplicas raises every stream to min(3, live, servers
//     JetStream knows) and never lowers them: a node that leaves may come
//     back, and an R3 stream keeps accepting writes with one node of three
//     gone. Retiring a node for good is an operator's step.
//
// What each setting survives: R1 (a single node, or a cluster before
// SetReplicas) loses the stream's availability with its node and, with the
// default interval sync, the last seconds of acknowledged data at a power
// cut. R3 survives the loss of any one node, crash or power cut, without
// losing acknowledged data (an ack means a quorum holds the message) and
// without stopping writes for longer than a leader election (4–8 s after a
// kill -9; a graceful Shutdown hands leadership over in well under a
// second). Two nodes survive no loss (R2 needs both for a quorum). Losing
// two nodes of three stops writes until one is back.
//
// A reload closes clients: nats-server's ReloadOptions, which AddRoutes
// uses, closes every client that CustomClientAuthentication accepted (it
// finds them in no configured user list). The collector's own connection
// reconnects at once in cluster mode; agents and devices reconnect with
// their own back-off and resend unacknowledged batches, which the
// duplicate window drops. AddRoutes reloads only when a route is new.
//
// # Caveats
//
// JetStream's default interval sync survives a process crash, not a power
// cut; Config.SyncAlways survives both at a large cost in throughput, and
// so does R3. The MQTT listener is best effort: its PUBACK precedes the
// CS_RAW write (in a cluster its own streams' replicas follow the number
// of configured routes). Token clients' permissions are fixed at connect
// time: an agent enrolled later is protected from them from their next
// connection on.
//
// It must not import ingest, store, api or portal: they consume the bus
// through nats.go, which is the narrow interface to it.
package bus
