// Package aqi is the "aqi" enrichment stage: air-quality indices as derived
// points. From a station's pollutant readings (PM2.5, PM10, NO2, O3) it
// keeps rolling hourly state and, at most once per configured period,
// appends a point of measurement aqi with the station's tags and the fields
// us_epa, us_epa_category, us_epa_pollutant, eu_eaqi, eu_eaqi_category and
// eu_eaqi_pollutant.
//
// # Standards
//
// US EPA AQI with the breakpoints of May 2024 (EPA-454/B-24-002): PM2.5 and
// PM10 as 24-hour means, O3 as the 8-hour mean and, from 0.125 ppm, the
// 1-hour mean (the larger index wins), NO2 as the 1-hour mean.
// Concentrations are truncated before the table lookup as the EPA
// prescribes: PM2.5 to 0.1 µg/m³, PM10 to 1 µg/m³, O3 to 0.001 ppm, NO2 to
// 1 ppb; the sub-index is interpolated and rounded to the nearest integer;
// beyond the table it is 500 (8-hour O3 beyond 0.200 ppm: 300, the 1-hour
// table takes over). NO2 and O3 arriving in µg/m³ (the simulator sends NO2
// in µg/m³) are converted to ppb at 25 °C and 1 atm (1.88 and 1.96 µg/m³
// per ppb).
//
// European Air Quality Index of the EEA (bands published since 2017): PM as
// 24-hour running means, NO2 and O3 as hourly means, all in µg/m³, six
// bands from 1 Good to 6 Extremely poor; a value equal to a band limit is in
// the lower band.
//
// # State
//
// Per station and pollutant, the sum and count of readings in each of the
// last 24 clock hours: an n-hour mean is the mean of the hourly means of the
// n hours ending with the reading's hour, valid when min_coverage of them
// have data. Memory per station is fixed (about 2 KB), the number of
// stations is bounded by max_stations, and the state is locked per station,
// so concurrent batches are safe. Readings more than 24 hours older than
// what a slot holds are left out.
//
// The package imports enrich, enrich/internal/statemap, protocols and
// internal/confx only.
package aqi
