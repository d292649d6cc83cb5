// Package ingest moves agents' batches from the CS_RAW stream into the
// store: a durable pull consumer fetches messages, each is decompressed
// according to its Content-Encoding header (zstd, s2 or none), decoded as
// line protocol, and the points of a whole fetch are written to the store in
// one transaction before the messages are acknowledged.
//
// What happens to a message:
//   - stored (some lines may have been bad: those are counted and logged,
//     the rest stored): Ack, and JetStream's work queue forgets it;
//   - cannot be decompressed or has an unknown encoding: Term, since no
//     retry can succeed; counted and logged with its Nats-Msg-Id;
//   - the store failed: NakWithDelay, JetStream redelivers it later.
//
// It talks to the bus only through nats.go's jetstream client and to the
// store only through the Writer interface. It must not import
// nats-server (bus owns it), the api or the portal.
package ingest
