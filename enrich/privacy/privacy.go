package privacy

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed sample.yaml
var sampleConfig string

func init() {
	enrich.Register("privacy", func() enrich.Stage { return New() })
}

// Privacy is the "privacy" stage. Its exported fields are its YAML
// configuration.
type Privacy struct {
	// Grid is the spacing, in degrees, that private positions are rounded to.
	Grid     float64 `yaml:"grid"`
	LatField string  `yaml:"lat_field"`
	LonField string  `yaml:"lon_field"`

	name     string
	log      *slog.Logger
	stations enrich.Stations
	inv      float64 // 1/Grid when that is a whole number, else 0

	coarsened *metrics.Counter
}

// New returns a Privacy stage with the defaults.
func New() *Privacy { return &Privacy{name: "privacy", Grid: 0.01, LatField: "lat", LonField: "lon"} }

// SampleConfig returns the documented example configuration.
func (*Privacy) SampleConfig() string { return sampleConfig }

// Name returns the stage's name in the chain.
func (p *Privacy) Name() string { return p.name }

// Init checks the grid and takes the chain's registry.
func (p *Privacy) Init(env enrich.Env) error {
	p.name, p.log, p.stations = env.Name, env.Logger(), env.Stations
	p.coarsened = env.Counter("privacy_coarsened_points_total")
	var errs []error
	if !(p.Grid > 0 && p.Grid <= 1) {
		errs = append(errs, confx.Problem{Path: "grid", Msg: fmt.Sprintf("want degrees in (0, 1], got %v", p.Grid)})
	}
	if p.LatField == "" || p.LonField == "" || p.LatField == p.LonField {
		errs = append(errs, confx.Problem{Path: "lat_field", Msg: "lat_field and lon_field must be two different names"})
	}
	if p.stations == nil {
		errs = append(errs, confx.Problem{Msg: "privacy needs a registry stage before it: only the registry says which stations are private"})
	}
	// Dividing by a whole inverse gives the correctly rounded decimal
	// (4812/100 = 48.12), where multiplying by the grid would not
	// (4812*0.01 = 48.120000000000005).
	if inv := 1 / p.Grid; math.Abs(inv-math.Round(inv)) < 1e-9*inv {
		p.inv = math.Round(inv)
	}
	return errors.Join(errs...)
}

// PublicLocation returns where st may be shown: its position when it is
// public, else the position rounded to the grid.
func (p *Privacy) PublicLocation(st enrich.Station) (lat, lon float64) {
	if st.Public {
		return st.Lat, st.Lon
	}
	return p.coarsen(st.Lat), p.coarsen(st.Lon)
}

func (p *Privacy) coarsen(x float64) float64 {
	var r float64
	if p.inv > 0 {
		r = math.Round(x*p.inv) / p.inv
	} else {
		r = math.Round(x/p.Grid) * p.Grid
	}
	if r == 0 {
		return 0 // not -0
	}
	return r
}

// Enrich rounds the position fields of private stations' points.
func (p *Privacy) Enrich(pts []protocols.Point) ([]protocols.Point, error) {
	n := 0
	for i := range pts {
		pt := &pts[i]
		// Most points carry no position: look for one before paying for
		// a registry lookup.
		li, lj := enrich.FieldIndex(pt, p.LatField), enrich.FieldIndex(pt, p.LonField)
		if li < 0 && lj < 0 {
			continue
		}
		id, ok := enrich.TagValue(pt, enrich.StationTag)
		if !ok {
			continue
		}
		st, ok := p.stations.Get(id)
		if !ok || st.Public {
			continue
		}
		for _, j := range [2]int{li, lj} {
			if j >= 0 && pt.Fields[j].Value.Kind() == protocols.KindFloat {
				pt.Fields[j].Value = protocols.Float(p.coarsen(pt.Fields[j].Value.FloatV()))
			}
		}
		n++
	}
	p.coarsened.Add(n)
	return pts, nil
}

// Interface guards.
var (
	_ enrich.Stage         = (*Privacy)(nil)
	_ enrich.PublicLocator = (*Privacy)(nil)
)
