package privacy

import (
	"strings"
	"testing"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/protocols"
)

type stations map[string]enrich.Station

func (s stations) Get(id string) (enrich.Station, bool) { st, ok := s[id]; return st, ok }
func (s stations) All() []enrich.Station                { return nil }

var reg = stations{
	"home": {ID: "home", Lat: 48.21234, Lon: 16.37891, Located: true},
	"city": {ID: "city", Lat: 48.21234, Lon: 16.37891, Located: true, Public: true},
}

func newPrivacy(t *testing.T, grid float64) *Privacy {
	t.Helper()
	p := New()
	if grid != 0 {
		p.Grid = grid
	}
	if err := p.Init(enrich.Env{Name: "privacy", Stations: reg}); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrivacy_PublicLocation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		grid     float64
		st       enrich.Station
		lat, lon float64
	}{
		{"public station unchanged", 0, reg["city"], 48.21234, 16.37891},
		{"private station on the default 0.01° grid", 0, reg["home"], 48.21, 16.38},
		{"coarser grid", 0.05, reg["home"], 48.2, 16.4},
		{"grid that is not 1/n", 0.3, reg["home"], 48.3, 16.5},
		{"negative and near zero", 0.01, enrich.Station{Lat: -0.004, Lon: -33.3351}, 0, -33.34},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lat, lon := newPrivacy(t, tc.grid).PublicLocation(tc.st)
			if !near(lat, tc.lat) || !near(lon, tc.lon) {
				t.Fatalf("got %v,%v want %v,%v", lat, lon, tc.lat, tc.lon)
			}
		})
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestPrivacy_Enrich(t *testing.T) {
	p := newPrivacy(t, 0)
	mk := func(station string) protocols.Point {
		return protocols.Point{Measurement: "station", Tags: []protocols.Tag{{Key: "station", Value: station}},
			Fields: []protocols.Field{{Key: "lat", Value: protocols.Float(48.21234)}, {Key: "lon", Value: protocols.Float(16.37891)}, {Key: "x", Value: protocols.Float(1.23456)}}}
	}
	out, _ := p.Enrich([]protocols.Point{mk("home"), mk("city"), mk("unknown")})
	want := []string{"lat=48.21 lon=16.38 x=1.23456", "lat=48.21234 lon=16.37891 x=1.23456", "lat=48.21234 lon=16.37891 x=1.23456"}
	for i := range out {
		var parts []string
		for _, f := range out[i].Fields {
			parts = append(parts, f.Key+"="+f.Value.String())
		}
		if got := strings.Join(parts, " "); got != want[i] {
			t.Errorf("point %d: %s, want %s", i, got, want[i])
		}
	}
}

func TestPrivacy_Init_Problems(t *testing.T) {
	p := New()
	p.Grid = 0
	err := p.Init(enrich.Env{})
	for _, w := range []string{"grid: want degrees in (0, 1]", "privacy needs a registry stage before it"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in %v", w, err)
		}
	}
}
