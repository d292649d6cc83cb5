// Package api serves the collector's HTTP surface: the public read API
// (/api/v1/series, /api/v1/stations), the portal at /, and the operations
// endpoints /healthz, /readyz and /metrics.
//
// The public API is read-only and open to anyone, so it is defensive from
// the start: only GET and HEAD, a bound on the points in one answer, strict
// parameter parsing with 400 JSON errors instead of guesses, and an
// http.Server with every timeout set. JSON shapes follow
// docs/contracts-skeleton.md exactly.
//
// It reads data through the Store interface and knows the bus only as a
// readiness function. It must not import nats-server, nats.go, bbolt or the
// ingest package.
package api
