package geo_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/enrich/geo"
	"github.com/citysense/citysense/enrich/registry"
	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

type stations map[string]enrich.Station

func (s stations) Get(id string) (enrich.Station, bool) { st, ok := s[id]; return st, ok }
func (s stations) All() []enrich.Station                { return nil }

func newGeo(t *testing.T, dir, file string, st enrich.Stations, set func(*geo.Geo)) (*geo.Geo, error) {
	t.Helper()
	g := geo.New()
	g.Districts = file
	if set != nil {
		set(g)
	}
	return g, g.Init(enrich.Env{Dir: dir, Name: "geo", Stations: st})
}

// TestGeo_Locate_EdgeSemantics pins down the documented edge rules.
func TestGeo_Locate_EdgeSemantics(t *testing.T) {
	g, err := newGeo(t, "testdata", "shapes.geojson", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		lat, lon float64
		want     string
	}{
		{"interior", 2, 5, "sq"},
		{"vertex", 0, 0, "sq"},
		{"bottom edge", 0, 5, "sq"},
		{"left edge", 5, 0, "sq"},
		{"top edge", 10, 5, "sq"},
		{"inside the hole", 5, 5, ""},
		{"on the hole's edge is in the hole", 4, 5, ""},
		{"on the hole's vertex", 4, 4, ""},
		{"shared edge goes to the first feature", 5, 10, "sq"},
		{"shared edge sq2/mp", 5, 20, "sq2"},
		{"first polygon of a multipolygon", 5, 25, "mp"},
		{"second polygon of a multipolygon", 5, 45, "mp"},
		{"between a multipolygon's parts", 5, 35, ""},
		{"oblique edge", 5, 65, "tri"},
		{"just outside the oblique edge", 5, 65.000001, ""},
		{"outside everything", -1, 5, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := g.Locate(tc.lat, tc.lon)
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("Locate(%v, %v) = %q, %v; want %q", tc.lat, tc.lon, got, ok, tc.want)
			}
		})
	}
}

func TestGeo_Init_PropertyAndErrors(t *testing.T) {
	poly := `{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}`
	for _, tc := range []struct {
		name, property, file, want, err string
	}{
		{name: "name property", file: `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"n","id":"i"},"geometry":` + poly + `}]}`, want: "n"},
		{name: "id property", file: `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":7},"geometry":` + poly + `}]}`, want: "7"},
		{name: "feature id", file: `{"type":"FeatureCollection","features":[{"type":"Feature","id":"f","properties":null,"geometry":` + poly + `}]}`, want: "f"},
		{name: "configured property", property: "BEZ", file: `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"n","BEZ":"Wieden"},"geometry":` + poly + `}]}`, want: "Wieden"},
		{name: "configured property missing", property: "BEZ", file: `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"n"},"geometry":` + poly + `}]}`, err: `feature 0: no property "BEZ"`},
		{name: "no name at all", file: `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":` + poly + `}]}`, err: `no "name" or "id" property`},
		{name: "unclosed ring", file: `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"x"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}}]}`, err: "ring 0 is not closed"},
		{name: "line string", file: `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"x"},"geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]}}]}`, err: `geometry type "LineString"`},
		{name: "not a collection", file: `{"type":"Feature"}`, err: "want a FeatureCollection"},
		{name: "not json", file: `{`, err: "not GeoJSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "d.geojson"), []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			g, err := newGeo(t, dir, "d.geojson", nil, func(g *geo.Geo) { g.Property = tc.property })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := g.Locate(0.2, 0.5); got != tc.want {
				t.Fatalf("district = %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := newGeo(t, t.TempDir(), "missing.geojson", nil, nil); err == nil || !strings.Contains(err.Error(), "open districts") {
		t.Fatalf("missing file: %v", err)
	}
}

func point(tags map[string]string, fields ...protocols.Field) protocols.Point {
	if len(fields) == 0 {
		fields = []protocols.Field{{Key: "v", Value: protocols.Float(1)}}
	}
	p, _ := protocols.NewPoint("air", tags, fields, 1)
	p.Tags = p.Tags[:len(p.Tags):len(p.Tags)]
	return p
}

func TestGeo_Enrich(t *testing.T) {
	reg := stations{
		"in-sq":  {ID: "in-sq", Lat: 2, Lon: 5, Located: true},
		"mobile": {ID: "mobile"},
	}
	latlon := func(lat, lon float64) []protocols.Field {
		return []protocols.Field{{Key: "lat", Value: protocols.Float(lat)}, {Key: "lon", Value: protocols.Float(lon)}}
	}
	for _, tc := range []struct {
		name      string
		overwrite bool
		p         protocols.Point
		want      string
	}{
		{"registry position", false, point(map[string]string{"station": "in-sq"}), "sq"},
		{"own lat/lon win over the registry", false, point(map[string]string{"station": "in-sq"}, latlon(5, 45)...), "mp"},
		{"mobile station with lat/lon", false, point(map[string]string{"station": "mobile"}, latlon(5, 65)...), "tri"},
		{"mobile station without position", false, point(map[string]string{"station": "mobile"}), ""},
		{"unknown station without position", false, point(map[string]string{"station": "zz"}), ""},
		{"no station, lat/lon", false, point(nil, latlon(2, 15)...), "sq2"},
		{"existing district kept", false, point(map[string]string{"station": "in-sq", "district": "mine"}), "mine"},
		{"existing district overwritten", true, point(map[string]string{"station": "in-sq", "district": "mine"}), "sq"},
		{"outside every district", false, point(map[string]string{"station": "x"}, latlon(-5, -5)...), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := newGeo(t, "testdata", "shapes.geojson", reg, func(g *geo.Geo) { g.Overwrite = tc.overwrite })
			if err != nil {
				t.Fatal(err)
			}
			out, _ := g.Enrich([]protocols.Point{tc.p})
			if got, _ := out[0].Tag("district"); got != tc.want {
				t.Fatalf("district = %q, want %q", got, tc.want)
			}
			if err := out[0].Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestGeo_Enrich_CacheFollowsAMovingStation(t *testing.T) {
	g, err := newGeo(t, "testdata", "shapes.geojson", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				for _, c := range []struct {
					lon  float64
					want string
				}{{5, "sq"}, {15, "sq2"}, {45, "mp"}, {5, "sq"}} {
					p := point(map[string]string{"station": "bus-12"},
						protocols.Field{Key: "lat", Value: protocols.Float(2)}, protocols.Field{Key: "lon", Value: protocols.Float(c.lon)})
					out, _ := g.Enrich([]protocols.Point{p})
					if got, _ := out[0].Tag("district"); got != c.want {
						t.Errorf("at lon %v: district %q, want %q", c.lon, got, c.want)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestGeo_Locate_DemoDistricts checks that configs/demo/districts.geojson
// puts every demo station in the district the simulator gives it.
func TestGeo_Locate_DemoDistricts(t *testing.T) {
	sts, err := registry.LoadFile("../../configs/demo/stations.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	g, err := newGeo(t, "../../configs/demo", "districts.geojson", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, st := range sts {
		got, ok := g.Locate(st.Lat, st.Lon)
		if want := sim.District(st.Lat, st.Lon); !ok || got != want {
			t.Errorf("%s at %v,%v: geo %q, sim %q", st.ID, st.Lat, st.Lon, got, want)
		}
		seen[got]++
	}
	if len(seen) != 8 {
		t.Errorf("districts used: %v, want all 8", seen)
	}
	// The exclave of d07 inside d06 and the hole it fills.
	for _, c := range []struct {
		lat, lon float64
		want     string
	}{{48.17, 16.35, "d07"}, {48.15, 16.31, "d06"}, {48.16, 16.40, "d07"}} {
		if got, _ := g.Locate(c.lat, c.lon); got != c.want {
			t.Errorf("%v,%v: %q, want %q", c.lat, c.lon, got, c.want)
		}
	}
	// Every corner of the simulator's box is in some district.
	for _, c := range [][2]float64{{48.12, 16.22}, {48.28, 16.52}, {48.12, 16.52}, {48.28, 16.22}} {
		if _, ok := g.Locate(c[0], c[1]); !ok {
			t.Errorf("corner %v is in no district", c)
		}
	}
}
