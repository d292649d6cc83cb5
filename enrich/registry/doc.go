// Package registry is the "registry" enrichment stage: the station registry,
// loaded from a YAML or CSV file, that tells the rest of the system what a
// station id means (name, position, district, sensor model, owner, licence,
// whether its position may be published).
//
// On the ingest path it flags points whose station tag is unknown (point
// flag enrich.PointUnknownStation in field qc; the point is kept) and adds
// the district tag from the registry to points that have none. Points
// without a station tag are left alone: requiring one is the schema stage's
// job.
//
// The registry is also the chain's enrich.Stations: stages after it (geo,
// privacy) and the public API look stations up through it. The whole table
// is an immutable snapshot behind an atomic.Pointer; Reload, Replace and Put
// swap in a new one, so readers never lock and an admin API can add a
// station while ingest runs.
//
// The package imports enrich, protocols and internal/confx only.
package registry
