// Package sim is a simulated smart-city input: a deterministic generator of
// air-quality, noise, traffic and station-position readings for any number of
// stations, and the "sim" Input that feeds them to the agent tick by tick.
//
// It exists so that every part downstream of the inputs (buffer, uplink,
// collector, store, portal, end-to-end tests) can be exercised without
// hardware, and so that a test can recompute exactly what should have
// arrived: Generate is pure, the same Params and tick give the same points
// bit for bit.
//
// # Basics
//
// Every value is derived from a hash of (seed, station, field, tick) plus
// smooth daily cycles in Vienna local time (UTC+1, no DST so that no tzdata
// is needed on the edge): particulates, NO2, noise and traffic rise at the
// morning and evening rush hours, temperature follows the sun and the season,
// humidity moves against temperature. Floats are rounded to one decimal,
// positions to five (about a metre).
//
// Per station and tick, at time Start + tick*Interval:
//
//	air      district, station  pm25, pm10, no2, temperature, humidity (float)
//	noise    district, station  laeq (float)
//	traffic  district, station  count (int), every third station: s0001, s0004, …
//	station  district, station  lat, lon (float), at tick 0 only
//
// Station ids are s0001, s0002, …; districts d01…d08 are a 4×2 grid over the
// box the stations are placed in (48.12–48.28 N, 16.22–16.52 E).
//
// The package imports protocols and internal/confx only; it must not import
// anything of the agent or the collector.
package sim
