// Package query answers range and latest-value queries over the store:
// series selected by measurement, field and tag matchers; raw points, or
// buckets of a step aligned to the Unix epoch aggregated by mean, min, max,
// sum, count, first, last, p50 or p95; optionally grouped by tags.
//
// # Planning
//
// The step and aggregation pick the data read:
//
//   - percentiles, and steps that are not whole minutes: raw points;
//   - steps of whole hours: 1-hour rollups (the store aggregates the current
//     day and late points from raw points itself);
//   - other whole-minute steps: 1-minute rollups, which the store computes
//     from raw points while it keeps them and reads from the 1m tier after.
//
// Rollups carry count, sum, min, max, first and last (with their times), so
// every aggregation but the percentiles combines buckets exactly as it would
// combine the points: a mean is Σsum/Σcount, never a mean of means.
//
// # Limits
//
// Engine.MaxSeries bounds the series a query selects, MaxPoints the points
// an answer holds (checked before reading for bucketed queries: buckets ×
// series), MaxScan the raw points an aggregation over raw points reads. Each
// gives an error naming the limit and what to change; ErrBadRequest marks
// mistakes in the request.
//
// It reads through the Source interface (implemented by *store.Store) and
// must not import bus, ingest, api or portal.
package query
