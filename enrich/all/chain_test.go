package all_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/citysense/citysense/enrich"
	_ "github.com/citysense/citysense/enrich/all"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

// chainYAML is the full chain in the order the collector documents. The
// units rule converts NO2 to ppb under a new name, and aqi reads that, so
// the benchmark exercises every stage's hot path.
const chainYAML = `
enrich:
  - type: schema
    contracts:
      air:
        tags: [station]
        fields:
          pm25: {type: float, unit: µg/m³, min: 0, max: 1000, required: true}
          pm10: {type: float, unit: µg/m³, min: 0, max: 2000}
          no2: {type: float, unit: µg/m³, min: 0, max: 2000}
          temperature: {type: float, unit: °C, min: -50, max: 60}
          humidity: {type: float, unit: "%", min: 0, max: 100}
      noise:
        tags: [station]
        fields:
          laeq: {type: float, unit: dB(A), min: 0, max: 140}
      traffic:
        tags: [station]
        fields:
          count: {type: int, min: 0}
  - type: registry
    file: stations.yaml
  - type: geo
    districts: districts.geojson
  - type: units
    convert:
      - {measurement: air, field: no2, from: ug/m3, to: ppb, rename: no2_ppb}
  - type: aqi
    fields: {no2: no2_ppb}
    units: {no2: ppb}
    min_coverage: 0
  - type: quality
    checks:
      - measurement: air
        fields: [pm25, pm10]
        min: 0
        max: 1000
        spike: 5
        flatline: {count: 30}
        stale: 1h
      - measurement: air
        fields: [temperature, humidity]
        spike: 1
      - measurement: noise
        field: laeq
        min: 20
        max: 130
  - type: privacy
`

// writeFixture writes the stations file (stations s0001…sN at the sim's
// positions, every 50th private, districts left to geo when noDistrict),
// copies the demo districts next to it and returns the built chain.
func writeFixture(tb testing.TB, n int, noDistrict bool) *enrich.Chain {
	tb.Helper()
	dir := tb.TempDir()
	var b strings.Builder
	b.WriteString("stations:\n")
	for i := 1; i <= n; i++ {
		lat, lon := sim.Position(1, i)
		fmt.Fprintf(&b, "  - {id: %s, lat: %v, lon: %v", sim.StationID(i), lat, lon)
		if !noDistrict {
			fmt.Fprintf(&b, ", district: %s", sim.District(lat, lon))
		}
		if i%50 == 0 {
			b.WriteString(", public: false")
		}
		b.WriteString("}\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "stations.yaml"), []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	geo, err := os.ReadFile("../../configs/demo/districts.geojson")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "districts.geojson"), geo, 0o644); err != nil {
		tb.Fatal(err)
	}
	var cfg struct {
		Enrich []yaml.Node `yaml:"enrich"`
	}
	doc, err := confx.Load(filepath.Join(dir, "collector.yaml"), []byte(chainYAML), &cfg)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := enrich.Build(doc, cfg.Enrich, "enrich", enrich.Env{Dir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// stripDistrict removes the district tags the simulator sets, as devices
// that do not know their district would send them.
func stripDistrict(pts []protocols.Point) {
	for i := range pts {
		tags := pts[i].Tags[:0]
		for _, t := range pts[i].Tags {
			if t.Key != enrich.DistrictTag {
				tags = append(tags, t)
			}
		}
		pts[i].Tags = tags
	}
}

var simStart = time.Date(2025, 1, 15, 6, 0, 0, 0, time.UTC)

func TestChain_Build_FullChainOverSim(t *testing.T) {
	const n = 60
	c := writeFixture(t, n, true)
	if got := strings.Join(c.Names(), ","); got != "schema,registry,geo,units,aqi,quality,privacy" {
		t.Fatalf("stages = %s", got)
	}
	p := sim.Params{Stations: n, Seed: 1, Interval: 10 * time.Second, Start: simStart}
	aqiPoints := 0
	for tick := 0; tick < 12; tick++ { // 0…110 s: two AQI periods
		in := sim.Generate(p, tick)
		stripDistrict(in)
		out, err := c.Enrich(in)
		if err != nil {
			t.Fatal(err)
		}
		for i := range out {
			pt := &out[i]
			id, _ := pt.Tag("station")
			var k int
			fmt.Sscanf(id, "s%d", &k)
			lat, lon := sim.Position(1, k)
			// geo restored the district from the demo polygons. Stations
			// in the d07 exclave inside d06 are the one deliberate
			// difference from the simulator's grid.
			if d, _ := pt.Tag("district"); d != sim.District(lat, lon) && !(d == "d07" && sim.District(lat, lon) == "d06") {
				t.Fatalf("%s: district %q, sim says %q", id, d, sim.District(lat, lon))
			}
			if pt.Measurement == "aqi" {
				aqiPoints++
				if v, ok := pt.Field("us_epa"); !ok || v.Kind() != protocols.KindInt {
					t.Fatalf("aqi point without us_epa: %+v", pt)
				}
			}
			if pt.Measurement == "air" {
				if _, ok := pt.Field("no2"); ok {
					t.Fatalf("no2 not renamed: %+v", pt)
				}
			}
			if pt.Measurement == "station" && k%50 == 0 {
				got, _ := pt.Field("lat")
				want := float64(int64(lat*100+0.5)) / 100
				if got.FloatV() != want {
					t.Fatalf("%s private lat = %v, want %v", id, got.FloatV(), want)
				}
			}
			if err := pt.Validate(); err != nil {
				t.Fatalf("enriched point invalid: %v", err)
			}
		}
	}
	if aqiPoints != 2*n {
		t.Fatalf("aqi points = %d, want %d (one per station and minute)", aqiPoints, 2*n)
	}
	if st := c.Stations(); st == nil || len(st.All()) != n {
		t.Fatalf("chain stations = %v", st)
	}
	st, _ := c.Stations().Get("s0050")
	if lat, lon, ok := c.PublicLocation(st); !ok || lat == st.Lat || lon == st.Lon {
		t.Fatalf("private station published at %v,%v (%v), exact %v,%v", lat, lon, ok, st.Lat, st.Lon)
	}
}

// BenchmarkChain_Enrich runs the whole chain over simulated ticks of 1,000
// stations (about 3,300 points each), one tick per op, in time order so
// that the stateful stages see a realistic stream. Run with -cpu 1 for
// the per-core figure.
func BenchmarkChain_Enrich(b *testing.B) {
	for _, bc := range []struct {
		name       string
		noDistrict bool
	}{
		{"sim", false},        // districts set by the devices: geo and registry skip
		{"no_district", true}, // districts added by geo (cached per station)
	} {
		b.Run(bc.name, func(b *testing.B) {
			const n = 1000
			c := writeFixture(b, n, bc.noDistrict)
			p := sim.Params{Stations: n, Seed: 1, Interval: 10 * time.Second, Start: simStart}
			points := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				in := sim.Generate(p, i)
				if bc.noDistrict {
					stripDistrict(in)
				}
				points += len(in)
				b.StartTimer()
				if _, err := c.Enrich(in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(points)/b.Elapsed().Seconds(), "points/s")
		})
	}
}
