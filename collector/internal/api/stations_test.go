package api

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/citysense/citysense/enrich"
)

// fakeRegistry rounds private stations to a 0.01° grid, as the privacy
// stage does, and withholds the position of s0099 entirely.
type fakeRegistry []enrich.Station

func (r fakeRegistry) All() []enrich.Station { return r }
func (r fakeRegistry) PublicLocation(st enrich.Station) (float64, float64, bool) {
	if st.ID == "s0099" {
		return 0, 0, false
	}
	if !st.Public {
		return math.Round(st.Lat*100) / 100, math.Round(st.Lon*100) / 100, true
	}
	return st.Lat, st.Lon, true
}

func TestAPI_stations_registryMerged(t *testing.T) {
	reg := fakeRegistry{
		{ID: "s0001", Name: "Market Square", Lat: 48.2101, Lon: 16.3702, Located: true, District: "d05", Model: "SPS30", Public: true},
		{ID: "s0002", Name: "Backyard", Lat: 48.123456, Lon: 16.654321, Located: true, Public: false},
		{ID: "s0099", Name: "Hidden", Lat: 48.3, Lon: 16.3, Located: true, Public: false},
	}
	a := newTestAPI(t, Options{Registry: reg})
	rec := do(a, "GET", "/api/v1/stations")
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var fc struct {
		Features []struct {
			Geometry *struct {
				Coordinates [2]float64 `json:"coordinates"`
			} `json:"geometry"`
			Properties struct {
				ID           string   `json:"id"`
				Name         string   `json:"name"`
				District     *string  `json:"district"`
				Measurements []string `json:"measurements"`
				LastSeen     *string  `json:"last_seen"`
				Registered   bool     `json:"registered"`
				Coarsened    bool     `json:"coarsened"`
			} `json:"properties"`
		} `json:"features"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &fc); err != nil {
		t.Fatal(err)
	}
	if len(fc.Features) != 3 {
		t.Fatalf("%d features, want 3 (s0001 and s0002 merged with the data, s0099 registered only)", len(fc.Features))
	}
	s1, s2, s99 := fc.Features[0], fc.Features[1], fc.Features[2]
	// The registry's position and district win over what the data says.
	if s1.Properties.ID != "s0001" || s1.Properties.Name != "Market Square" || *s1.Properties.District != "d05" ||
		s1.Geometry == nil || s1.Geometry.Coordinates != [2]float64{16.3702, 48.2101} || !s1.Properties.Registered ||
		s1.Properties.LastSeen == nil || *s1.Properties.LastSeen != "2025-01-01T11:00:20Z" || len(s1.Properties.Measurements) != 3 {
		t.Errorf("s0001 = %+v %+v", s1.Properties, s1.Geometry)
	}
	// A private station is shown on the grid only, and says so; its
	// district comes from the data when the registry has none.
	if s2.Geometry == nil || s2.Geometry.Coordinates != [2]float64{16.65, 48.12} || !s2.Properties.Coarsened || *s2.Properties.District != "d02" {
		t.Errorf("s0002 = %+v %+v", s2.Properties, s2.Geometry)
	}
	if s99.Geometry != nil || s99.Properties.LastSeen != nil || s99.Properties.Measurements == nil {
		t.Errorf("s0099 = %+v %+v, want no geometry, null last_seen, empty measurements", s99.Properties, s99.Geometry)
	}
}

func TestAPI_schema(t *testing.T) {
	a := newTestAPI(t, Options{Contracts: func() any {
		return []map[string]string{{"measurement": "air"}}
	}})
	rec := do(a, "GET", "/api/v1/schema")
	if rec.Code != 200 || rec.Body.String() != `{"measurements":[{"measurement":"air"}]}`+"\n" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	rec = do(newTestAPI(t, Options{}), "GET", "/api/v1/schema")
	if rec.Code != 200 || rec.Body.String() != `{"measurements":[]}`+"\n" {
		t.Fatalf("no contracts: %d %s", rec.Code, rec.Body)
	}
}
