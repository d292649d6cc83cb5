// Package api serves the collector's HTTP surface: the public read API
// (/api/v1/series, /api/v1/stations), the portal at /, the operations
// endpoints /healthz, /readyz and /metrics, the Influx write endpoints
// (/write, /api/v2/write) and the admin API (/admin/v1/agents,
// /admin/v1/tokens).
//
// The public API is read-only and open to anyone, so it is defensive from
// the start: only GET and HEAD, a bound on the points in one answer, strict
// parameter parsing with 400 JSON errors instead of guesses, and an
// http.Server with every timeout set. JSON shapes follow
// docs/contracts-skeleton.md exactly.
//
// Only the write and admin endpoints take other methods, and only with a
// token. The write endpoints speak InfluxDB's protocol (precision, gzip,
// token auth, partial writes with a 400 naming the rejected lines, 413 over
// the size limit measured after decompression too) and answer 204 only once
// the bus acknowledged every valid point: they decode with the protocols
// codec, re-encode as nanosecond line protocol and publish through the
// Publisher interface to cs.raw.http.<token-name>.
//
// It reads data through the Store interface, checks tokens and enrolls
// agents through the Credentials interface and knows the bus only as a
// readiness function and a Publisher. It must not import nats-server,
// nats.go, bbolt or the ingest package (its tests use them to run the
// whole path).
package api
