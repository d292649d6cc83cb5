// Package ingest moves data through the collector's two JetStream stages:
//
//	CS_RAW ──(decode, enrich, partition)──▶ CS_SERIES ──(decode)──▶ store
//
// Both stages are the same loop, an Ingester: a durable pull consumer fetches
// messages, decompresses each according to its Content-Encoding header
// (zstd, s2 or none), decodes it as line protocol, and hands the whole fetch
// to a Sink as one Batch per message; only when the sink returns are the
// messages acknowledged. The first stage's sink is a SeriesPublisher (enrich,
// split by ring.Partition, publish to cs.series.<p>, wait for every ack); the
// second's is the store (Points adapts its point-level Write).
//
// What happens to a message:
//   - handled (some lines may have been bad: those are counted and logged,
//     the rest passed on): Ack;
//   - cannot be decompressed or has an unknown encoding: Term, since no
//     retry can succeed; counted and logged with its Nats-Msg-Id;
//   - the sink failed (store error, enrichment error, CS_SERIES unavailable):
//     NakWithDelay, JetStream redelivers it later.
//
// A sink that is a DeferredSink (the store, through DeferredPoints) takes the
// points into memory and reports later, per fetch, when they are on disk;
// only then are the fetch's messages acknowledged. The stream is then the
// store's write-ahead log: the consumer's AckWait must outlast the store's
// longest hold (store.Options.AckWait) and MaxAckPending is unlimited, and at
// start the consumer is reset to its ack floor so that whatever a previous
// run held and never acknowledged is replayed at once.
//
// A message processed twice is harmless: partition messages carry the id
// <raw-batch-id>-p<partition>, dropped by CS_SERIES's duplicate window, and
// the store writes a series+timestamp once however often it sees it.
//
// It talks to the bus only through nats.go's jetstream client. It must not
// import nats-server (bus owns it), the api or the portal.
package ingest
