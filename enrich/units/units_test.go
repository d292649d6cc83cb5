package units

import (
	"math"
	"strings"
	"testing"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/protocols"
)

func TestFactor(t *testing.T) {
	for _, tc := range []struct {
		from, to, gas string
		in, want      float64
	}{
		{"degF", "degC", "", 212, 100},
		{"degF", "degC", "", 32, 0},
		{"degC", "degF", "", -40, -40},
		{"K", "degC", "", 273.15, 0},
		{"°C", "K", "", 25, 298.15},
		{"km/h", "m/s", "", 36, 10},
		{"mph", "m/s", "", 1, 0.44704},
		{"m/s", "km/h", "", 1, 3.6},
		{"kn", "m/s", "", 1, 0.514444},
		{"hPa", "Pa", "", 1013.25, 101325},
		{"Pa", "hPa", "", 101325, 1013.25},
		{"mbar", "hPa", "", 1000, 1000},
		{"ppb", "ug/m3", "no2", 1, 1.88},
		{"ug/m3", "ppb", "no2", 188, 100},
		{"ppb", "µg/m³", "o3", 100, 196},
		{"ppb", "ug/m3", "so2", 10, 26.2},
		{"ppm", "mg/m3", "co", 1, 1.145},
		{"mg/m3", "ppm", "co", 1.145, 1},
		{"ppm", "ug/m3", "no2", 1, 1880},
		{"ppm", "ppb", "", 0.04, 40},
		{"mg/m3", "ug/m3", "", 0.5, 500},
	} {
		t.Run(tc.from+"→"+tc.to, func(t *testing.T) {
			scale, offset, err := Factor(tc.from, tc.to, tc.gas)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.in*scale + offset; math.Abs(got-tc.want) > 1e-6*math.Max(1, math.Abs(tc.want)) {
				t.Fatalf("%v %s = %v %s, want %v", tc.in, tc.from, got, tc.to, tc.want)
			}
		})
	}
}

func TestFactor_Errors(t *testing.T) {
	for _, tc := range []struct{ from, to, gas, err string }{
		{"degC", "m/s", "", "cannot convert degC to m/s"},
		{"ppb", "ug/m3", "", "depends on the gas"},
		{"ppb", "ug/m3", "pm25", "depends on the gas"},
		{"furlongs", "m/s", "", `unknown unit "furlongs"`},
		{"m/s", "", "", `unknown unit ""`},
	} {
		if _, _, err := Factor(tc.from, tc.to, tc.gas); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Factor(%s, %s, %s) = %v, want %q", tc.from, tc.to, tc.gas, err, tc.err)
		}
	}
}

func TestUnits_Init_Problems(t *testing.T) {
	u := New()
	u.Convert = []Rule{
		{Measurement: "air", Field: "no2", From: "ug/m3", To: "ppb"}, // gas from the field name
		{Measurement: "air", Field: "no2", From: "ug/m3", To: "ppb"},
		{Measurement: "air", Field: "x", From: "ppb", To: "ug/m3"},
		{Field: "t", From: "degC", To: "lightyears"},
	}
	err := u.Init(enrich.Env{Name: "units"})
	got := err.Error()
	for _, w := range []string{"convert[1].field: air.no2 is converted twice", "convert[2].to: ppb → ug/m3 depends on the gas",
		"convert[3].measurement: must not be empty", `convert[3].to: unknown unit "lightyears"`} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, got)
		}
	}
}

func TestUnits_Enrich(t *testing.T) {
	u := New()
	u.Convert = []Rule{
		{Measurement: "weather", Field: "temp_f", From: "degF", To: "degC", Rename: "temperature"},
		{Measurement: "weather", Field: "wind", From: "km/h", To: "m/s"},
		{Measurement: "air", Field: "o3", From: "ppb", To: "ug/m3"},
	}
	if err := u.Init(enrich.Env{Name: "units"}); err != nil {
		t.Fatal(err)
	}
	mk := func(m string, fs ...protocols.Field) protocols.Point {
		return protocols.Point{Measurement: m, Fields: fs[:len(fs):len(fs)], Time: 1}
	}
	f := func(k string, v protocols.Value) protocols.Field { return protocols.Field{Key: k, Value: v} }
	pts := []protocols.Point{
		mk("weather", f("temp_f", protocols.Float(212)), f("wind", protocols.Int(36))),
		mk("weather", f("temp_f", protocols.String("hot"))),
		mk("weather", f("temp_f", protocols.Float(50)), f("temperature", protocols.Float(10))),
		mk("air", f("o3", protocols.Uint(50))),
		mk("noise", f("temp_f", protocols.Float(1))),
	}
	out, err := u.Enrich(pts)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"temperature=100,wind=10",
		`temp_f="hot",temp_f_qc=16u`,
		"temp_f=50,temperature=10,temp_f_qc=16u",
		"o3=98",
		"temp_f=1",
	}
	for i := range out {
		var parts []string
		for _, fl := range out[i].Fields {
			parts = append(parts, fl.Key+"="+fl.Value.String())
		}
		if got := strings.Join(parts, ","); got != want[i] {
			t.Errorf("point %d: %s, want %s", i, got, want[i])
		}
	}
}
