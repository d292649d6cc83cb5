package units

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed sample.yaml
var sampleConfig string

func init() {
	enrich.Register("units", func() enrich.Stage { return New() })
}

// Units is the "units" stage. Its exported fields are its YAML configuration.
type Units struct {
	Convert []Rule `yaml:"convert"`

	name   string
	log    *slog.Logger
	byMeas map[string][]compiled

	converted *metrics.Counter
	flagged   *metrics.Counter
}

// Rule converts one field of one measurement.
type Rule struct {
	Measurement string `yaml:"measurement"`
	Field       string `yaml:"field"`
	From        string `yaml:"from"`
	To          string `yaml:"to"`
	// Rename stores the converted value under a new field name.
	Rename string `yaml:"rename"`
	// Gas selects the molar mass for ppb/ppm ↔ µg/m³/mg/m³ conversions;
	// empty means the field name when it is a known gas.
	Gas string `yaml:"gas"`
}

type compiled struct {
	field, out, flagKey string
	scale, offset       float64 // out = in*scale + offset
}

// New returns a Units stage with no rules.
func New() *Units { return &Units{name: "units"} }

// SampleConfig returns the documented example configuration.
func (*Units) SampleConfig() string { return sampleConfig }

// Name returns the stage's name in the chain.
func (u *Units) Name() string { return u.name }

// Init compiles the rules into linear conversions.
func (u *Units) Init(env enrich.Env) error {
	u.name, u.log = env.Name, env.Logger()
	u.converted = env.Counter("units_converted_total")
	u.flagged = env.Counter("units_flagged_total")
	u.byMeas = map[string][]compiled{}
	var errs []error
	seen := map[[2]string]bool{}
	for i, r := range u.Convert {
		bad := func(key, format string, args ...any) {
			errs = append(errs, confx.Problem{Path: fmt.Sprintf("convert[%d].%s", i, key), Msg: fmt.Sprintf(format, args...)})
		}
		if r.Measurement == "" {
			bad("measurement", "must not be empty")
		}
		if r.Field == "" {
			bad("field", "must not be empty")
		}
		k := [2]string{r.Measurement, r.Field}
		if seen[k] {
			bad("field", "%s.%s is converted twice", r.Measurement, r.Field)
		}
		seen[k] = true
		scale, offset, err := Factor(r.From, r.To, gasOf(r))
		if err != nil {
			bad("to", "%v", err)
			continue
		}
		out := r.Field
		if r.Rename != "" {
			out = r.Rename
		}
		u.byMeas[r.Measurement] = append(u.byMeas[r.Measurement],
			compiled{field: r.Field, out: out, flagKey: enrich.FlagKey(r.Field), scale: scale, offset: offset})
	}
	return errors.Join(errs...)
}

func gasOf(r Rule) string {
	if r.Gas != "" {
		return r.Gas
	}
	return r.Field
}

// Enrich converts the declared fields in place.
func (u *Units) Enrich(pts []protocols.Point) ([]protocols.Point, error) {
	if len(u.byMeas) == 0 {
		return pts, nil
	}
	var sl enrich.Slab
	converted, flagged := 0, 0
	for i := range pts {
		p := &pts[i]
		rules := u.byMeas[p.Measurement]
		for _, r := range rules {
			j := enrich.FieldIndex(p, r.field)
			if j < 0 {
				continue
			}
			v := p.Fields[j].Value
			x, ok := v.AsFloat()
			if !ok || v.Kind() == protocols.KindBool || (r.out != r.field && enrich.FieldIndex(p, r.out) >= 0) {
				// Converting would mean guessing: flag the reading
				// instead of storing it in a unit nobody declared.
				sl.AddFlag(p, r.flagKey, enrich.FlagSchemaType)
				flagged++
				continue
			}
			p.Fields[j] = protocols.Field{Key: r.out, Value: protocols.Float(x*r.scale + r.offset)}
			converted++
		}
	}
	u.converted.Add(converted)
	u.flagged.Add(flagged)
	return pts, nil
}

// Molar-mass factors at 25 °C and 1 atm: µg/m³ per ppb (= mg/m³ per ppm).
var gasFactor = map[string]float64{"no2": 1.88, "o3": 1.96, "so2": 2.62, "co": 1.145}

type dim uint8

const (
	dimTemp dim = iota + 1
	dimSpeed
	dimPressure
	dimMass   // gas mass concentration, base µg/m³
	dimVolume // gas mixing ratio, base ppb
)

// unitDef maps a unit to its dimension and base: base = x*scale + offset.
type unitDef struct {
	dim           dim
	scale, offset float64
}

var unitDefs = map[string]unitDef{
	"degc": {dimTemp, 1, 0}, "°c": {dimTemp, 1, 0},
	"degf": {dimTemp, 5.0 / 9, -32 * 5.0 / 9}, "°f": {dimTemp, 5.0 / 9, -32 * 5.0 / 9},
	"k":   {dimTemp, 1, -273.15},
	"m/s": {dimSpeed, 1, 0}, "km/h": {dimSpeed, 1 / 3.6, 0}, "mph": {dimSpeed, 0.44704, 0}, "kn": {dimSpeed, 1852.0 / 3600, 0},
	"pa": {dimPressure, 1, 0}, "hpa": {dimPressure, 100, 0}, "kpa": {dimPressure, 1000, 0}, "mbar": {dimPressure, 100, 0},
	"ug/m3": {dimMass, 1, 0}, "µg/m³": {dimMass, 1, 0}, "µg/m3": {dimMass, 1, 0},
	"mg/m3": {dimMass, 1000, 0}, "mg/m³": {dimMass, 1000, 0},
	"ppb": {dimVolume, 1, 0}, "ppm": {dimVolume, 1000, 0},
}

// Factor returns the linear conversion from one unit to another (to =
// from*scale + offset). gas is needed only between mass concentrations and
// mixing ratios.
func Factor(from, to, gas string) (scale, offset float64, err error) {
	f, ok := unitDefs[strings.ToLower(from)]
	if !ok {
		return 0, 0, fmt.Errorf("unknown unit %q (known: %s)", from, knownUnits)
	}
	t, ok := unitDefs[strings.ToLower(to)]
	if !ok {
		return 0, 0, fmt.Errorf("unknown unit %q (known: %s)", to, knownUnits)
	}
	// Into the source's base unit: b = x*f.scale + f.offset.
	scale, offset = f.scale, f.offset
	if f.dim != t.dim {
		g, isGas := gasFactor[strings.ToLower(gas)]
		switch {
		case f.dim == dimVolume && t.dim == dimMass && isGas:
			scale, offset = scale*g, offset*g
		case f.dim == dimMass && t.dim == dimVolume && isGas:
			scale, offset = scale/g, offset/g
		case (f.dim == dimVolume || f.dim == dimMass) && (t.dim == dimVolume || t.dim == dimMass):
			return 0, 0, fmt.Errorf("%s → %s depends on the gas: set gas to no2, o3, so2 or co", from, to)
		default:
			return 0, 0, fmt.Errorf("cannot convert %s to %s", from, to)
		}
	}
	// Out of the target's base unit: y = (b - t.offset) / t.scale.
	return scale / t.scale, (offset - t.offset) / t.scale, nil
}

const knownUnits = "degC, degF, K, m/s, km/h, mph, kn, Pa, hPa, kPa, mbar, ug/m3, mg/m3, ppb, ppm"

// Interface guards.
var _ enrich.Stage = (*Units)(nil)
