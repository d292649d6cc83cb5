// Command bench measures CitySense against VictoriaMetrics and InfluxDB 1.x
// on one deterministic smart-city data set, in one run, and prints the
// figures side by side with their ratios. `make bench` runs it after the Go
// benchmarks.
//
// For each system in turn it starts the server on loopback with a fresh
// data directory, writes the data set over the Influx write API (CitySense:
// /api/v2/write with a token it issues; VictoriaMetrics: /write; InfluxDB:
// /write), waits until every point is queryable and the server is idle
// again, stops it cleanly and measures the data directory. Then it starts
// every system again on its directory, waits until they idle, and times
// three queries with the systems interleaved (each round asks every
// system once, going through every order of them in turn), so that the
// machine's drift over a minute falls on all of them alike and each
// follows each other equally often:
//
//	Q1  hourly mean of one field of one station over the whole span
//	Q2  latest value of one field for every station
//	Q3  daily maximum of one field per district over the whole span
//
// Figures, per point (one field value):
//
//   - ingest CPU: user+system CPU seconds of the server process from before
//     the first write to its exit after the clean stop (so background
//     merges, compactions and the final flush count), from /proc and
//     wait4's rusage — steadier than wall-clock time on a shared machine;
//   - bytes on disk: blocks allocated under the data directory after the
//     clean stop (for CitySense also the store alone: the rest is
//     JetStream, whose CS_SERIES stream keeps a replay copy for its max
//     age);
//   - peak RSS: VmHWM of the server process at the end of ingest;
//   - query latency: median wall-clock time of each query over -runs runs
//     (31 by default: a query of a few hundred µs on loopback varies by
//     ±30% from one request to the next here, so the median of 15 moved
//     by 20% between runs) after two warm-up runs, HTTP included, from
//     the request to the answer's last byte (the bench's own check of the
//     answer, a JSON decode, is not timed). Timed
//     one system after the other, the same server's median moved from
//     0.30 to 0.53 ms within a minute: that drift is why they interleave.
//
// It reports and never asserts: speed is not a test. The Debian packages
// victoria-metrics and influxdb are installed with apt-get when their
// binaries are missing. The data set is protocols/sim's city: -stations
// stations (1,000 × -scale), each with five air-quality fields and a noise
// level every -interval, a traffic counter on every third, over -days days
// ending at the current minute (or at -end).
//
// With -query-only it skips ingest and only times the queries, on the data
// directories a run with -keep -dir DIR left: give the same -dir, -scale,
// -days and -interval, and that run's end (the data set's "to") as -end.
// Query latency moves from run to run more than the other figures; this
// repeats the query phase in under a minute.
package main
