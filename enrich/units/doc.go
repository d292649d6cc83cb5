// Package units is the "units" enrichment stage: it converts declared fields
// to one unit per quantity, so that the store and the public API never mix
// °F with °C or ppb with µg/m³ in one series.
//
// Each rule names a measurement, a field, the unit the devices send (from),
// the unit to store (to) and optionally a new field name. Supported units:
//
//	temperature   degC (°C), degF (°F), K
//	speed         m/s, km/h, mph, kn
//	pressure      Pa, hPa, kPa, mbar
//	gas           ug/m3 (µg/m³), mg/m3 (mg/m³), ppb, ppm
//
// Converting a gas between a mass concentration (µg/m³, mg/m³) and a mixing
// ratio (ppb, ppm) depends on the gas: rule key gas (no2, o3, so2, co), which
// defaults to the field name when that is one of them. The factors are the
// conventional ones for 25 °C and 1013.25 hPa (molar volume 24.45 l/mol, as
// used by the EEA and UK DEFRA; US EPA uses the same reference conditions):
// 1 ppb NO2 = 1.88 µg/m³, O3 = 1.96, SO2 = 2.62, and 1 ppm CO = 1.145 mg/m³.
//
// Integer and unsigned fields are converted to floats (a converted value is
// rarely whole); bool and string fields are left alone and flagged with
// enrich.FlagSchemaType, as is a field whose new name is already taken on
// the point. A unit pair that cannot be converted is an Init error.
//
// The package imports enrich, protocols and internal/confx only.
package units
