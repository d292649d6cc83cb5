package aqi

import (
	"fmt"
	"testing"
)

// epa is the EPA index of a concentration in the table's natural unit:
// µg/m³ for PM, ppm for O3, ppb for NO2.
func epa(table []breakpoint, scale, c float64) (int, bool) {
	return subIndex(truncate(c, scale), table)
}

// TestSubIndex_EPABoundaries checks every published breakpoint of the 2024
// table and the value just above it (one truncation unit higher).
func TestSubIndex_EPABoundaries(t *testing.T) {
	type cse struct {
		c    float64
		want int
	}
	for _, tc := range []struct {
		name  string
		table []breakpoint
		scale float64
		cases []cse
	}{
		{"PM2.5 24h µg/m³", epaPM25, 10, []cse{
			{0, 0}, {9.0, 50}, {9.1, 51}, {35.4, 100}, {35.5, 101}, {55.4, 150}, {55.5, 151},
			{125.4, 200}, {125.5, 201}, {225.4, 300}, {225.5, 301}, {325.4, 500}, {325.5, 500},
			{9.09, 50}, {12.0, 56}, {-3, 0}, {1000, 500},
		}},
		{"PM10 24h µg/m³", epaPM10, 1, []cse{
			{0, 0}, {54, 50}, {55, 51}, {154, 100}, {155, 101}, {254, 150}, {255, 151},
			{354, 200}, {355, 201}, {424, 300}, {425, 301}, {604, 500}, {605, 500},
			{54.9, 50}, {100, 73},
		}},
		{"O3 8h ppm", epaO38h, 1000, []cse{
			{0, 0}, {0.054, 50}, {0.055, 51}, {0.070, 100}, {0.071, 101}, {0.085, 150}, {0.086, 151},
			{0.105, 200}, {0.106, 201}, {0.200, 300}, {0.201, 300},
			{0.0549, 50}, {0.075, 115},
		}},
		{"O3 1h ppm", epaO31h, 1000, []cse{
			{0.125, 101}, {0.164, 150}, {0.165, 151}, {0.204, 200}, {0.205, 201},
			{0.404, 300}, {0.405, 301}, {0.604, 500}, {0.605, 500},
		}},
		{"NO2 1h ppb", epaNO2, 1, []cse{
			{0, 0}, {53, 50}, {54, 51}, {100, 100}, {101, 101}, {360, 150}, {361, 151},
			{649, 200}, {650, 201}, {1249, 300}, {1250, 301}, {2049, 500}, {2050, 500},
			{53.9, 50},
		}},
	} {
		for _, c := range tc.cases {
			t.Run(fmt.Sprintf("%s/%v", tc.name, c.c), func(t *testing.T) {
				got, ok := epa(tc.table, tc.scale, c.c)
				if !ok || got != c.want {
					t.Fatalf("index of %v = %d (%v), want %d", c.c, got, ok, c.want)
				}
			})
		}
	}
	if _, ok := epa(epaO31h, 1000, 0.124); ok {
		t.Fatal("1-hour O3 below 0.125 ppm defines an index")
	}
}

func TestEPACategory(t *testing.T) {
	for aqi, want := range map[int]string{0: "Good", 50: "Good", 51: "Moderate", 100: "Moderate", 101: "Unhealthy for Sensitive Groups",
		150: "Unhealthy for Sensitive Groups", 151: "Unhealthy", 200: "Unhealthy", 201: "Very Unhealthy", 300: "Very Unhealthy", 301: "Hazardous", 500: "Hazardous"} {
		if got := EPACategory(aqi); got != want {
			t.Errorf("EPACategory(%d) = %q, want %q", aqi, got, want)
		}
	}
}

// TestEAQIBand_Boundaries checks every EEA band limit (in the lower band)
// and the value just above it (in the next).
func TestEAQIBand_Boundaries(t *testing.T) {
	for _, tc := range []struct {
		pollutant int
		limits    [5]float64
	}{
		{pm25, [5]float64{10, 20, 25, 50, 75}},
		{pm10, [5]float64{20, 40, 50, 100, 150}},
		{no2, [5]float64{40, 90, 120, 230, 340}},
		{o3, [5]float64{50, 100, 130, 240, 380}},
	} {
		name := pollutantNames[tc.pollutant]
		if got := eaqiBand(tc.pollutant, 0); got != 1 {
			t.Errorf("%s 0: band %d", name, got)
		}
		for i, l := range tc.limits {
			if got := eaqiBand(tc.pollutant, l); got != i+1 {
				t.Errorf("%s %v: band %d, want %d", name, l, got, i+1)
			}
			if got := eaqiBand(tc.pollutant, l+0.1); got != i+2 {
				t.Errorf("%s %v: band %d, want %d", name, l+0.1, got, i+2)
			}
		}
		if got := eaqiBand(tc.pollutant, 5000); got != 6 {
			t.Errorf("%s 5000: band %d, want 6", name, got)
		}
	}
	want := []string{"", "Good", "Fair", "Moderate", "Poor", "Very poor", "Extremely poor", ""}
	for band := 0; band <= 7; band++ {
		if got := EAQICategory(band); got != want[band] {
			t.Errorf("EAQICategory(%d) = %q, want %q", band, got, want[band])
		}
	}
}
