// Package enrich turns raw readings into public data: ordered stages that add
// place (station, district), consistent units, derived air-quality indices and
// quality flags to a batch of points.
//
// # Basics
//
// A stage is an Enricher; a Chain runs stages in order. Stages register by
// type name (Register, from an init function; package enrich/all imports
// them all) and Build creates a chain from the `enrich:` list of
// collector.yaml: each item is a mapping with a type key, an optional name
// key and the stage's own keys, decoded strictly, then checked by the
// stage's Init. Build reports every problem of every stage at once as
// confx.Problems with file:line.
//
// Stages are pure once built: Init may read files (stations, districts),
// Enrich does no I/O and is safe for concurrent use by several ingest
// workers. State that depends on the order batches arrive in (AQI averaging
// windows, quality spike and flatline detection) is kept per station,
// bounded in size, and documented by the stage that keeps it.
//
// Stages share lookups through Env: once a stage that provides the station
// registry (a StationSource, the registry stage) is initialised, Build hands
// it to the stages after it as Env.Stations (geo and privacy use it). The
// collector reaches read-only views the same way: Chain.Stations for the
// registry, Chain.PublicLocation for where a station may be shown, and
// Find[T] for any stage by type, e.g. Find[*schema.Schema] for contracts.
//
// # Flags
//
// Checks flag and never drop (except the schema stage with action:
// quarantine, which hands the point to the Quarantine sink with a reason).
// For a field F that fails a check, a stage adds the uint field F_qc, a
// bitmask:
//
//	1  FlagRange        quality: outside min/max
//	2  FlagSpike        quality: rate of change above the limit
//	4  FlagFlatline     quality: the same value too often / too long
//	8  FlagStale        quality: far older than the station's newest point
//	16 FlagSchemaType   schema: wrong type (also units: cannot convert)
//	32 FlagSchemaRange  schema: outside the contract's min/max
//
// Problems of the point as a whole go in the uint field qc:
//
//	1  PointUnknownStation  registry: the station tag is not in the registry
//	2  PointMissingTag      schema: a required tag is missing
//	4  PointMissingField    schema: a required field is missing
//
// No flag field means no finding. Bits OR together across stages (AddFlag),
// so one field can carry, say, 1|2 from quality and 32 from schema.
//
// # Performance
//
// Enrich runs on every point the collector ingests. Stages avoid per-point
// allocations: keys such as "pm25_qc" are built once in Init, per-station
// state is found with one lookup by the station tag's value, and points
// that grow (a district tag, a flag field, a derived point) take their
// slices from a per-batch Slab. BenchmarkChain_Enrich in enrich/all measures
// the full chain.
//
// enrich and its sub-packages import protocols, internal/confx and small
// libraries (orb for geometry, VictoriaMetrics/metrics); they must not
// import the collector, the agent, nats or bbolt.
package enrich
