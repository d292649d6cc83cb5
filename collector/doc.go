// Package collector assembles one collector node: the bbolt store, the
// embedded NATS server with its streams (bus), the ingest consumer that
// moves agents' batches from CS_RAW into the store, and the HTTP server
// with the public API, the portal and the operations endpoints.
//
// # Basics
//
//	c, err := collector.New(cfg, log)
//	...
//	err = c.Run(ctx) // until ctx is cancelled
//
// Run starts the parts in data-flow order (store, bus, HTTP listener,
// ingest) and, when ctx is cancelled, stops them the other way round: HTTP
// first so no request reads a closing store, then ingest so every batch in
// hand is stored and acknowledged, then the NATS server, then the store.
//
// It is the only package that knows all the parts; they do not know each
// other except through the narrow interfaces each declares. It must not be
// imported by anything but the collector's main and tests, and it must not
// import the agent.
package collector
