package aqi

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

var t0 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

func newAQI(t *testing.T, set func(*AQI)) *AQI {
	t.Helper()
	a := New()
	a.MinCoverage = 0
	if set != nil {
		set(a)
	}
	if err := a.Init(enrich.Env{Name: "aqi"}); err != nil {
		t.Fatal(err)
	}
	return a
}

// air is one reading of station s at t0+at with the given fields.
func air(s string, at time.Duration, kv ...any) protocols.Point {
	var fs []protocols.Field
	for i := 0; i+1 < len(kv); i += 2 {
		var v protocols.Value
		switch x := kv[i+1].(type) {
		case float64:
			v = protocols.Float(x)
		case uint64:
			v = protocols.Uint(x)
		}
		fs = append(fs, protocols.Field{Key: kv[i].(string), Value: v})
	}
	return protocols.Point{Measurement: "air",
		Tags:   []protocols.Tag{{Key: "district", Value: "d01"}, {Key: "station", Value: s}},
		Fields: fs[:len(fs):len(fs)], Time: t0.Add(at).UnixNano()}
}

// derived returns the derived points of one Enrich call, as text.
func derived(t *testing.T, a *AQI, in ...protocols.Point) []string {
	t.Helper()
	out, err := a.Enrich(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < len(in) {
		t.Fatalf("points lost: %d in, %d out", len(in), len(out))
	}
	var s []string
	for _, p := range out[len(in):] {
		if p.Measurement != "aqi" {
			t.Fatalf("derived point %+v", p)
		}
		var parts []string
		for _, tg := range p.Tags {
			parts = append(parts, tg.Key+"="+tg.Value)
		}
		for _, f := range p.Fields {
			parts = append(parts, f.Key+"="+f.Value.String())
		}
		parts = append(parts, fmt.Sprint((p.Time-t0.UnixNano())/int64(time.Second)))
		s = append(s, strings.Join(parts, " "))
	}
	return s
}

func TestAQI_Enrich_DerivedPoint(t *testing.T) {
	a := newAQI(t, nil)
	got := derived(t, a, air("s1", 90*time.Second, "pm25", 40.0, "pm10", 20.0, "no2", 188.0))
	want := `district=d01 station=s1 us_epa=112i us_epa_category="Unhealthy for Sensitive Groups" us_epa_pollutant="PM2.5" ` +
		`eu_eaqi=4i eu_eaqi_category="Poor" eu_eaqi_pollutant="PM2.5" 90`
	if len(got) != 1 || got[0] != want {
		t.Fatalf("derived:\n%v\nwant:\n%s", got, want)
	}
}

func TestAQI_Enrich_OnePointPerPeriod(t *testing.T) {
	a := newAQI(t, func(a *AQI) { a.Every = confx.Duration(time.Minute) })
	var n []int
	for _, at := range []time.Duration{0, 10 * time.Second, 59 * time.Second, 60 * time.Second, 30 * time.Second, 185 * time.Second} {
		n = append(n, len(derived(t, a, air("s1", at, "pm25", 5.0))))
	}
	// A late reading (30 s) does not go back to an older period.
	if fmt.Sprint(n) != "[1 0 0 1 0 1]" {
		t.Fatalf("derived per reading: %v", n)
	}
	// Two stations in one batch get one point each.
	if got := derived(t, a, air("s1", time.Hour, "pm25", 5.0), air("s2", time.Hour, "pm25", 5.0), air("s1", time.Hour+time.Second, "pm25", 5.0)); len(got) != 2 {
		t.Fatalf("derived %v", got)
	}
}

func TestAQI_Enrich_AveragingPeriods(t *testing.T) {
	a := newAQI(t, func(a *AQI) {
		a.Standards = []string{USEPA2024}
		a.Every = confx.Duration(time.Hour)
	})
	// 23 hours at 8 µg/m³ then an hour at 80: the 24-hour mean is 11 and
	// the AQI follows the mean, not the last reading.
	for h := 0; h < 23; h++ {
		derived(t, a, air("s1", time.Duration(h)*time.Hour, "pm25", 8.0))
	}
	got := derived(t, a, air("s1", 23*time.Hour, "pm25", 80.0))
	if len(got) != 1 || !strings.Contains(got[0], "us_epa=55i ") {
		t.Fatalf("after 24 h: %v", got)
	}
	// Two readings in one hour: that hour's mean counts once.
	got = derived(t, a, air("s1", 24*time.Hour, "pm25", 8.0), air("s1", 24*time.Hour+time.Minute, "pm25", 8.0))
	if len(got) != 1 || !strings.Contains(got[0], "us_epa=55i ") {
		// Hours 1…24: (22×8 + 80 + 8) / 24 = 11.0 µg/m³ again.
		t.Fatalf("next hour: %v", got)
	}
}

func TestAQI_Enrich_Coverage(t *testing.T) {
	a := newAQI(t, func(a *AQI) {
		a.MinCoverage = 0.75
		a.Every = confx.Duration(time.Hour)
		a.Fields = Fields{PM25: "pm25"}
	})
	var got []int
	for h := 0; h < 19; h++ {
		got = append(got, len(derived(t, a, air("s1", time.Duration(h)*time.Hour, "pm25", 8.0))))
	}
	// 18 of 24 hours are needed for a 24-hour mean.
	want := strings.Repeat("0 ", 17) + "1 1"
	if s := strings.Trim(fmt.Sprint(got), "[]"); s != want {
		t.Fatalf("derived per hour: %s\nwant             %s", s, want)
	}
}

func TestAQI_Enrich_GasesAndUnits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   func(*AQI)
		hours int
		in    []any
		want  string
	}{
		{"NO2 µg/m³ converted to ppb for the EPA", nil, 1, []any{"pm25", 1.0, "no2", 188.0},
			`us_epa=100i us_epa_category="Moderate" us_epa_pollutant="NO2" eu_eaqi=4i eu_eaqi_category="Poor" eu_eaqi_pollutant="NO2"`},
		{"NO2 in ppb", func(a *AQI) { a.Units.NO2 = "ppb" }, 1, []any{"no2", 100.0},
			`us_epa=100i us_epa_category="Moderate" us_epa_pollutant="NO2" eu_eaqi=4i eu_eaqi_category="Poor" eu_eaqi_pollutant="NO2"`},
		{"O3 8-hour mean in ppb", func(a *AQI) { a.Units.O3 = "ppb" }, 8, []any{"o3", 75.0},
			`us_epa=115i us_epa_category="Unhealthy for Sensitive Groups" us_epa_pollutant="O3" eu_eaqi=4i eu_eaqi_category="Poor" eu_eaqi_pollutant="O3"`},
		// With one hour of data there is no 8-hour mean at 75 % coverage;
		// from 0.125 ppm the 1-hour table defines the index on its own.
		{"O3 1-hour from 0.125 ppm", func(a *AQI) { a.Units.O3, a.MinCoverage = "ppb", 0.75 }, 1, []any{"o3", 130.0},
			`us_epa=107i us_epa_category="Unhealthy for Sensitive Groups" us_epa_pollutant="O3" eu_eaqi=5i eu_eaqi_category="Very poor" eu_eaqi_pollutant="O3"`},
		{"only the EEA index", func(a *AQI) { a.Standards = []string{EUEAQI} }, 1, []any{"pm10", 45.0},
			`eu_eaqi=3i eu_eaqi_category="Moderate" eu_eaqi_pollutant="PM10"`},
		{"uint readings count", nil, 1, []any{"pm10", uint64(45)},
			`us_epa=42i us_epa_category="Good" us_epa_pollutant="PM10" eu_eaqi=3i eu_eaqi_category="Moderate" eu_eaqi_pollutant="PM10"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAQI(t, func(a *AQI) {
				a.Every = confx.Duration(time.Hour)
				if tc.set != nil {
					tc.set(a)
				}
			})
			var got []string
			for h := 0; h < tc.hours; h++ {
				got = derived(t, a, air("s1", time.Duration(h)*time.Hour, tc.in...))
			}
			want := "district=d01 station=s1 " + tc.want + fmt.Sprintf(" %d", (tc.hours-1)*3600)
			if len(got) != 1 || got[0] != want {
				t.Fatalf("got  %v\nwant %s", got, want)
			}
		})
	}
}

func TestAQI_Enrich_SkipsFlaggedAndForeign(t *testing.T) {
	a := newAQI(t, nil)
	flagged := air("s1", 0, "pm25", 900.0, "pm25_qc", uint64(enrich.FlagSchemaRange))
	other := air("s1", 0, "pm25", 900.0)
	other.Measurement = "indoor"
	noStation := air("s1", 0, "pm25", 900.0)
	noStation.Tags = nil
	if got := derived(t, a, flagged, other, noStation); len(got) != 0 {
		t.Fatalf("derived %v", got)
	}
	if got := derived(t, a, air("s1", time.Second, "pm25", 5.0)); len(got) != 1 || !strings.Contains(got[0], "us_epa=28i") {
		t.Fatalf("flagged reading leaked into the mean: %v", got)
	}
}

func TestAQI_Init_Problems(t *testing.T) {
	a := New()
	a.Standards = []string{"uk-daqi"}
	a.Units.NO2 = "ppm"
	a.MinCoverage = 2
	a.Every = 0
	a.Output = "air"
	err := a.Init(enrich.Env{})
	for _, w := range []string{`standards[0]: unknown standard "uk-daqi"`, `units.no2: want ug/m3 or ppb, got "ppm"`,
		"min_coverage: want a share between 0 and 1", "every: want at least 1s", `output: must be a measurement other than "air"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in\n%v", w, err)
		}
	}
}

// TestAQI_Enrich_Concurrent feeds one station from several goroutines;
// -race checks the state, and the index must match the single value fed.
func TestAQI_Enrich_Concurrent(t *testing.T) {
	a := newAQI(t, func(a *AQI) { a.Every = confx.Duration(time.Second) })
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				out, _ := a.Enrich([]protocols.Point{air("s1", time.Duration(w*200+i)*time.Second, "pm25", 20.0)})
				for _, p := range out[1:] {
					if v, _ := p.Field("us_epa"); v.IntV() != 71 {
						t.Errorf("us_epa = %v, want 71", v)
					}
				}
				mu.Lock()
				total += len(out) - 1
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if total < 200 || total > 800 {
		t.Fatalf("%d derived points", total)
	}
}
