package aqi

import "math"

// Pollutants, in the order ties between equal sub-indices are broken.
const (
	pm25 = iota
	pm10
	o3
	no2
	nPollutants
)

// pollutantNames are the names the standards use, reported in
// us_epa_pollutant and eu_eaqi_pollutant.
var pollutantNames = [nPollutants]string{"PM2.5", "PM10", "O3", "NO2"}

// breakpoint is one row of an EPA table. Concentrations are in the units the
// EPA truncates to, as integers: PM2.5 in tenths of µg/m³, PM10 in µg/m³,
// O3 and NO2 in ppb (0.001 ppm = 1 ppb). Integer rows make "truncate, then
// look up" exact: there is no value between 9.0 and 9.1 to fall through.
type breakpoint struct {
	cLo, cHi int64
	iLo, iHi int
}

// US EPA AQI breakpoints as revised in 2024 (Technical Assistance Document
// EPA-454/B-24-002, May 2024, table 6; 40 CFR 58 appendix G as amended by
// 89 FR 16202, effective 2024-05-06): PM2.5 "good" ends at 9.0 µg/m³, and
// the two hazardous rows are one 301–500 row for every pollutant.
var (
	// 24-hour PM2.5, tenths of µg/m³ (truncated to 0.1 µg/m³).
	epaPM25 = []breakpoint{{0, 90, 0, 50}, {91, 354, 51, 100}, {355, 554, 101, 150}, {555, 1254, 151, 200}, {1255, 2254, 201, 300}, {2255, 3254, 301, 500}}
	// 24-hour PM10, µg/m³ (truncated to integer).
	epaPM10 = []breakpoint{{0, 54, 0, 50}, {55, 154, 51, 100}, {155, 254, 101, 150}, {255, 354, 151, 200}, {355, 424, 201, 300}, {425, 604, 301, 500}}
	// 8-hour O3, ppb (0.001 ppm, truncated). 8-hour values above 200 ppb do
	// not define the AQI; the 1-hour table takes over.
	epaO38h = []breakpoint{{0, 54, 0, 50}, {55, 70, 51, 100}, {71, 85, 101, 150}, {86, 105, 151, 200}, {106, 200, 201, 300}}
	// 1-hour O3, ppb; defined from 125 ppb (AQI 101) up. The larger of the
	// 8-hour and 1-hour indices is reported.
	epaO31h = []breakpoint{{125, 164, 101, 150}, {165, 204, 151, 200}, {205, 404, 201, 300}, {405, 604, 301, 500}}
	// 1-hour NO2, ppb (truncated to integer).
	epaNO2 = []breakpoint{{0, 53, 0, 50}, {54, 100, 51, 100}, {101, 360, 101, 150}, {361, 649, 151, 200}, {650, 1249, 201, 300}, {1250, 2049, 301, 500}}
)

// truncEps keeps binary rounding from truncating a mean of 9.1 that came
// out as 9.0999999999 down to 9.0.
const truncEps = 1e-6

// truncate returns x in units of 1/scale, truncated as the EPA prescribes.
func truncate(x, scale float64) int64 {
	if x <= 0 {
		return 0
	}
	return int64(math.Floor(x*scale + truncEps))
}

// subIndex interpolates a truncated concentration in an EPA table (the
// EPA's equation, rounded to the nearest integer). Below the first row it
// reports false (1-hour O3 below 125 ppb defines nothing); above the last
// it returns the last row's top: 500 ("beyond the AQI" is reported as 500),
// or 300 for 8-hour O3, where higher values are the 1-hour table's.
func subIndex(c int64, table []breakpoint) (int, bool) {
	if c < table[0].cLo {
		return 0, false
	}
	for _, b := range table {
		if c <= b.cHi {
			return int(math.Round(float64(b.iHi-b.iLo)/float64(b.cHi-b.cLo)*float64(c-b.cLo))) + b.iLo, true
		}
	}
	return table[len(table)-1].iHi, true
}

// EPACategory returns the EPA's name for an AQI value.
func EPACategory(aqi int) string {
	switch {
	case aqi <= 50:
		return "Good"
	case aqi <= 100:
		return "Moderate"
	case aqi <= 150:
		return "Unhealthy for Sensitive Groups"
	case aqi <= 200:
		return "Unhealthy"
	case aqi <= 300:
		return "Very Unhealthy"
	}
	return "Hazardous"
}

// European Air Quality Index bands of the EEA (in use since November 2017),
// µg/m³: the upper limits of bands 1–5; above the last limit is band 6.
// The EEA publishes ranges such as 0–10, 10–20 without saying which band a
// shared limit belongs to; here a value equal to a limit is in the lower
// (better) band, so 10.0 µg/m³ PM2.5 is "Good" and 10.1 "Fair".
var eaqiLimits = [nPollutants][5]float64{
	pm25: {10, 20, 25, 50, 75},
	pm10: {20, 40, 50, 100, 150},
	o3:   {50, 100, 130, 240, 380},
	no2:  {40, 90, 120, 230, 340},
}

var eaqiCategories = [7]string{"", "Good", "Fair", "Moderate", "Poor", "Very poor", "Extremely poor"}

// eaqiBand returns the band, 1 (good) to 6 (extremely poor), of a
// concentration in µg/m³.
func eaqiBand(pollutant int, c float64) int {
	for i, limit := range eaqiLimits[pollutant] {
		if c <= limit {
			return i + 1
		}
	}
	return 6
}

// EAQICategory returns the EEA's name for a band.
func EAQICategory(band int) string {
	if band < 1 || band > 6 {
		return ""
	}
	return eaqiCategories[band]
}
