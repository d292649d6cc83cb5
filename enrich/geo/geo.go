package geo

import (
	_ "embed"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/planar"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/enrich/internal/statemap"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed sample.yaml
var sampleConfig string

func init() {
	enrich.Register("geo", func() enrich.Stage { return New() })
}

// Geo is the "geo" stage. Its exported fields are its YAML configuration.
type Geo struct {
	// Districts is the GeoJSON file, relative to the config file's directory.
	Districts string `yaml:"districts"`
	// Property is the feature property that names a district; empty means
	// "name", then "id", then the feature's id.
	Property string `yaml:"property"`
	// Tag is the tag the district goes into.
	Tag string `yaml:"tag"`
	// Overwrite replaces a district tag the point already has; by default
	// a district set by the device or the registry is kept.
	Overwrite bool `yaml:"overwrite"`
	// LatField and LonField are the position fields of mobile sensors.
	LatField string `yaml:"lat_field"`
	LonField string `yaml:"lon_field"`
	// MaxStations bounds the per-station cache; stations beyond it are
	// located point by point.
	MaxStations int `yaml:"max_stations"`

	name      string
	log       *slog.Logger
	districts []district
	stations  enrich.Stations
	cache     *statemap.Map[cached]

	points     *metrics.Counter
	unlocated  *metrics.Counter
	recomputed *metrics.Counter
}

// cached is a station's last answer: the position it was computed for and
// the district (or none) found there.
type cached struct {
	p atomic.Pointer[located]
}

type located struct {
	lat, lon float64
	district string
	ok       bool
}

// New returns a Geo with the defaults.
func New() *Geo {
	return &Geo{name: "geo", Tag: enrich.DistrictTag, LatField: "lat", LonField: "lon", MaxStations: 100000}
}

// SampleConfig returns the documented example configuration.
func (*Geo) SampleConfig() string { return sampleConfig }

// Name returns the stage's name in the chain.
func (g *Geo) Name() string { return g.name }

// Init loads the districts file.
func (g *Geo) Init(env enrich.Env) error {
	g.name, g.log, g.stations = env.Name, env.Logger(), env.Stations
	g.points = env.Counter("geo_points_total")
	g.unlocated = env.Counter("geo_unlocated_points_total")
	g.recomputed = env.Counter("geo_lookups_total")
	g.cache = statemap.New(g.MaxStations, func() *cached { return new(cached) })
	if g.Tag == "" {
		return confx.Problem{Path: "tag", Msg: "must not be empty"}
	}
	if g.LatField == "" || g.LonField == "" || g.LatField == g.LonField {
		return confx.Problem{Path: "lat_field", Msg: "lat_field and lon_field must be two different names"}
	}
	if g.Districts == "" {
		return confx.Problem{Path: "districts", Msg: "must name a GeoJSON file of districts"}
	}
	path := env.Resolve(g.Districts)
	data, err := os.ReadFile(path)
	if err != nil {
		return confx.Problem{Path: "districts", Msg: fmt.Sprintf("open districts %q: %v", path, err)}
	}
	ds, err := parseDistricts(data, g.Property)
	if err != nil {
		return confx.Problem{Path: "districts", Msg: fmt.Sprintf("districts %q: %v", path, err)}
	}
	g.districts = ds
	if g.stations == nil {
		g.log.Info("no registry stage before geo: only points with lat/lon fields are located")
	}
	return nil
}

// Locate returns the district at a position: the first feature in file
// order that contains it (edges and vertices count as inside, holes as
// outside).
func (g *Geo) Locate(lat, lon float64) (string, bool) {
	pt := orb.Point{lon, lat}
	for i := range g.districts {
		d := &g.districts[i]
		if d.bound.Contains(pt) && planar.MultiPolygonContains(d.shape, pt) {
			return d.name, true
		}
	}
	return "", false
}

// Enrich adds the district tag.
func (g *Geo) Enrich(pts []protocols.Point) ([]protocols.Point, error) {
	var sl enrich.Slab
	unlocated, lookups := 0, 0
	for i := range pts {
		p := &pts[i]
		_, hasDistrict := enrich.TagValue(p, g.Tag)
		if hasDistrict && !g.Overwrite {
			continue
		}
		id, hasStation := enrich.TagValue(p, enrich.StationTag)
		lat, lon, ok := g.position(p)
		if !ok && hasStation && g.stations != nil {
			if st, found := g.stations.Get(id); found && st.Located {
				lat, lon, ok = st.Lat, st.Lon, true
			}
		}
		if !ok {
			continue
		}
		var name string
		var found bool
		var entry *cached
		if hasStation {
			entry, _ = g.cache.Get(id)
		}
		if l := loadLocated(entry); l != nil && l.lat == lat && l.lon == lon {
			name, found = l.district, l.ok
		} else {
			name, found = g.Locate(lat, lon)
			lookups++
			if entry != nil {
				entry.p.Store(&located{lat: lat, lon: lon, district: name, ok: found})
			}
		}
		if !found {
			unlocated++
			continue
		}
		sl.SetTag(p, g.Tag, name)
	}
	g.points.Add(len(pts))
	g.unlocated.Add(unlocated)
	g.recomputed.Add(lookups)
	return pts, nil
}

func loadLocated(c *cached) *located {
	if c == nil {
		return nil
	}
	return c.p.Load()
}

// position returns the point's own lat/lon fields when it has both as
// numbers.
func (g *Geo) position(p *protocols.Point) (lat, lon float64, ok bool) {
	i, j := enrich.FieldIndex(p, g.LatField), enrich.FieldIndex(p, g.LonField)
	if i < 0 || j < 0 {
		return 0, 0, false
	}
	lat, ok1 := number(p.Fields[i].Value)
	lon, ok2 := number(p.Fields[j].Value)
	return lat, lon, ok1 && ok2
}

func number(v protocols.Value) (float64, bool) {
	switch v.Kind() {
	case protocols.KindFloat, protocols.KindInt, protocols.KindUint:
		x, _ := v.AsFloat()
		return x, true
	}
	return 0, false
}

// Interface guards.
var _ enrich.Stage = (*Geo)(nil)
