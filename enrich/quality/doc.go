// Package quality is the "quality" enrichment stage: automatic plausibility
// checks on declared fields, per station. It flags and never drops: a
// reading that fails a check keeps its value and gets bits in its <F>_qc
// field (see package enrich), so users and charts can decide what to trust.
//
// Checks, each optional, with thresholds per measurement and field:
//
//   - range (enrich.FlagRange): the value is below min or above max;
//   - spike (enrich.FlagSpike): |Δvalue| / Δt in seconds, against the
//     station's previous reading of the same field, is above spike;
//   - flatline (enrich.FlagFlatline): the value has been exactly the same
//     for count readings in a row, or for the duration for; the reading
//     that completes the run and every identical one after it are flagged;
//   - stale (enrich.FlagStale): the reading is more than stale older than
//     the newest point seen from its station (any measurement).
//
// State (previous value, run length, newest time) is kept per station in a
// bounded table, is safe for concurrent batches and assumes one series per
// station, measurement and field. Readings that arrive out of order (Δt ≤ 0)
// are checked for range and staleness only and do not disturb the state of
// newer readings. Points without a station tag get the range check only.
//
// The package imports enrich, enrich/internal/statemap, protocols and
// internal/confx only.
package quality
