// Package httplp is the "http" input: an HTTP listener that accepts Influx
// line protocol on /write (InfluxDB v1) and /api/v2/write (v2), and JSON
// points on /api/v1/push, so that data loggers, scripts and Telegraf's
// outputs.influxdb / outputs.influxdb_v2 can write to the agent directly.
//
// # Basics
//
// A request is answered 204 only after its points were accepted by the
// accumulator (in the agent: fsync'd in the buffer). A body with bad lines
// is answered 400 naming each bad line (line:column), after the valid lines
// were stored, as InfluxDB's partial writes do. A body over max_body
// (compressed or not) is answered 413, a missing or wrong token 401, a
// refused write 503 with Retry-After, so the writer sends again.
//
// The package imports protocols and internal/confx only; it must not import
// anything of the agent or the collector.
package httplp
