package schema

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed sample.yaml
var sampleConfig string

func init() {
	enrich.Register("schema", func() enrich.Stage { return New() })
}

// Actions on a contract violation.
const (
	ActionFlag       = "flag"
	ActionQuarantine = "quarantine"
)

// Schema is the "schema" stage. Its exported fields are its YAML
// configuration.
type Schema struct {
	// Action is flag (keep and flag the point) or quarantine (remove it
	// from the batch and hand it to the quarantine sink).
	Action string `yaml:"action"`
	// Measurements maps a measurement to its contract.
	Measurements map[string]ContractConfig `yaml:"contracts"`

	name       string
	log        *slog.Logger
	quarantine enrich.Quarantine
	contracts  []Contract // sorted by measurement, for the API
	byMeas     map[string]*compiled

	points      *metrics.Counter
	flagged     *metrics.Counter
	quarantined *metrics.Counter
}

// ContractConfig is a contract as written in YAML.
type ContractConfig struct {
	Description string                 `yaml:"description"`
	Tags        []string               `yaml:"tags"` // required tags
	Fields      map[string]FieldConfig `yaml:"fields"`
}

// FieldConfig is a field's contract as written in YAML.
type FieldConfig struct {
	Type        string   `yaml:"type"`
	Unit        string   `yaml:"unit"`
	Description string   `yaml:"description"`
	Min         *float64 `yaml:"min"`
	Max         *float64 `yaml:"max"`
	Required    bool     `yaml:"required"`
}

// Contract is one measurement's data contract as the public API serves it.
type Contract struct {
	Measurement  string      `json:"measurement"`
	Description  string      `json:"description,omitempty"`
	RequiredTags []string    `json:"required_tags"`
	Fields       []FieldSpec `json:"fields"` // sorted by name
}

// FieldSpec is one field of a Contract.
type FieldSpec struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"` // float, int, uint, bool or string
	Unit        string   `json:"unit,omitempty"`
	Description string   `json:"description,omitempty"`
	Min         *float64 `json:"min,omitempty"`
	Max         *float64 `json:"max,omitempty"`
	Required    bool     `json:"required,omitempty"`
}

// compiled is a contract prepared for the hot path.
type compiled struct {
	tags   []string
	fields []compiledField
}

type compiledField struct {
	name, flagKey string
	kind          protocols.Kind
	min, max      float64 // ±Inf when not set
	checkRange    bool
	required      bool
}

// New returns a Schema with the defaults: action flag, no contracts.
func New() *Schema { return &Schema{name: "schema", Action: ActionFlag} }

// SampleConfig returns the documented example configuration.
func (*Schema) SampleConfig() string { return sampleConfig }

// Name returns the stage's name in the chain.
func (s *Schema) Name() string { return s.name }

// Contracts returns the contracts sorted by measurement, for the API. The
// caller must not modify them.
func (s *Schema) Contracts() []Contract { return s.contracts }

// Contract returns the contract of one measurement.
func (s *Schema) Contract(measurement string) (Contract, bool) {
	i, ok := slices.BinarySearchFunc(s.contracts, measurement, func(c Contract, m string) int { return strings.Compare(c.Measurement, m) })
	if !ok {
		return Contract{}, false
	}
	return s.contracts[i], true
}

// ContractsOf returns the contracts of the first schema stage in c, or nil.
func ContractsOf(c *enrich.Chain) []Contract {
	if s, ok := enrich.Find[*Schema](c); ok {
		return s.Contracts()
	}
	return nil
}

var kinds = map[string]protocols.Kind{
	"float": protocols.KindFloat, "int": protocols.KindInt, "uint": protocols.KindUint,
	"bool": protocols.KindBool, "string": protocols.KindString,
}

// Init validates and compiles the contracts.
func (s *Schema) Init(env enrich.Env) error {
	s.name, s.log, s.quarantine = env.Name, env.Logger(), env.Quarantine
	s.points = env.Counter("schema_points_total")
	s.flagged = env.Counter("schema_flagged_points_total")
	s.quarantined = env.Counter("schema_quarantined_points_total")
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, confx.Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	switch s.Action {
	case ActionFlag:
	case ActionQuarantine:
		if s.quarantine == nil {
			bad("action", "quarantine needs a quarantine sink, and this program provides none")
		}
	default:
		bad("action", "want flag or quarantine, got %q", s.Action)
	}
	s.byMeas = make(map[string]*compiled, len(s.Measurements))
	s.contracts = make([]Contract, 0, len(s.Measurements))
	for meas, cc := range s.Measurements {
		base := "contracts." + meas
		c := Contract{Measurement: meas, Description: cc.Description, RequiredTags: slices.Clone(cc.Tags)}
		if c.RequiredTags == nil {
			c.RequiredTags = []string{}
		}
		cp := &compiled{tags: c.RequiredTags}
		for i, t := range cc.Tags {
			if t == "" {
				bad(fmt.Sprintf("%s.tags[%d]", base, i), "empty tag name")
			}
		}
		if len(cc.Fields) == 0 {
			bad(base, "declares no fields")
		}
		for name, fc := range cc.Fields {
			path := base + ".fields." + name
			kind, ok := kinds[fc.Type]
			if !ok {
				bad(path+".type", "want float, int, uint, bool or string, got %q", fc.Type)
			}
			if name == enrich.PointFlagKey || strings.HasSuffix(name, enrich.FlagSuffix) {
				bad(path, "%q is a flag field, set by the pipeline", name)
			}
			numeric := kind == protocols.KindFloat || kind == protocols.KindInt || kind == protocols.KindUint
			if (fc.Min != nil || fc.Max != nil) && ok && !numeric {
				bad(path, "min and max apply to numeric types, not %s", fc.Type)
			}
			if fc.Min != nil && fc.Max != nil && *fc.Min > *fc.Max {
				bad(path+".min", "min %v is above max %v", *fc.Min, *fc.Max)
			}
			c.Fields = append(c.Fields, FieldSpec{Name: name, Type: fc.Type, Unit: fc.Unit, Description: fc.Description,
				Min: fc.Min, Max: fc.Max, Required: fc.Required})
			f := compiledField{name: name, flagKey: enrich.FlagKey(name), kind: kind, required: fc.Required,
				min: math.Inf(-1), max: math.Inf(1)}
			if fc.Min != nil {
				f.min, f.checkRange = *fc.Min, true
			}
			if fc.Max != nil {
				f.max, f.checkRange = *fc.Max, true
			}
			cp.fields = append(cp.fields, f)
		}
		slices.SortFunc(c.Fields, func(a, b FieldSpec) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(cp.fields, func(a, b compiledField) int { return strings.Compare(a.name, b.name) })
		s.contracts = append(s.contracts, c)
		s.byMeas[meas] = cp
	}
	slices.SortFunc(s.contracts, func(a, b Contract) int { return strings.Compare(a.Measurement, b.Measurement) })
	return errors.Join(errs...)
}

// Enrich checks every point that has a contract.
func (s *Schema) Enrich(pts []protocols.Point) ([]protocols.Point, error) {
	s.points.Add(len(pts))
	if s.Action == ActionQuarantine {
		return s.sieve(pts), nil
	}
	var sl enrich.Slab
	flagged := 0
	for i := range pts {
		if c := s.byMeas[pts[i].Measurement]; c != nil && c.flag(&sl, &pts[i]) {
			flagged++
		}
	}
	s.flagged.Add(flagged)
	return pts, nil
}

// sieve moves the points that break their contract to the quarantine,
// compacting the batch in place.
func (s *Schema) sieve(pts []protocols.Point) []protocols.Point {
	out := pts[:0]
	for i := range pts {
		p := &pts[i]
		if c := s.byMeas[p.Measurement]; c != nil {
			if reason := c.violation(p); reason != "" {
				s.quarantine.Quarantine(s.name, *p, reason)
				s.quarantined.Inc()
				continue
			}
		}
		out = append(out, *p)
	}
	// Clear the tail so that the batch's backing array does not keep the
	// quarantined points' slices alive.
	clear(pts[len(out):])
	return out
}

// flag adds the flags for every violation and reports whether there was one.
func (c *compiled) flag(sl *enrich.Slab, p *protocols.Point) bool {
	found := false
	for _, t := range c.tags {
		if _, ok := enrich.TagValue(p, t); !ok {
			sl.AddFlag(p, enrich.PointFlagKey, enrich.PointMissingTag)
			found = true
			break
		}
	}
	for k := range c.fields {
		f := &c.fields[k]
		j := enrich.FieldIndex(p, f.name)
		if j < 0 {
			if f.required {
				sl.AddFlag(p, enrich.PointFlagKey, enrich.PointMissingField)
				found = true
			}
			continue
		}
		v := p.Fields[j].Value
		switch {
		case v.Kind() != f.kind:
			sl.AddFlag(p, f.flagKey, enrich.FlagSchemaType)
			found = true
		case f.checkRange:
			if x, _ := v.AsFloat(); !(x >= f.min && x <= f.max) {
				sl.AddFlag(p, f.flagKey, enrich.FlagSchemaRange)
				found = true
			}
		}
	}
	return found
}

// violation returns why p breaks the contract, or "" when it does not. It
// builds the reason only on the failure path, where allocating is fine.
func (c *compiled) violation(p *protocols.Point) string {
	var reasons []string
	for _, t := range c.tags {
		if _, ok := enrich.TagValue(p, t); !ok {
			reasons = append(reasons, "missing required tag "+strconv.Quote(t))
		}
	}
	for k := range c.fields {
		f := &c.fields[k]
		j := enrich.FieldIndex(p, f.name)
		if j < 0 {
			if f.required {
				reasons = append(reasons, "missing required field "+strconv.Quote(f.name))
			}
			continue
		}
		v := p.Fields[j].Value
		switch {
		case v.Kind() != f.kind:
			reasons = append(reasons, fmt.Sprintf("field %q is %s, want %s", f.name, v.Kind(), f.kind))
		case f.checkRange:
			if x, _ := v.AsFloat(); x < f.min {
				reasons = append(reasons, fmt.Sprintf("field %q = %v is below the minimum %v", f.name, x, f.min))
			} else if !(x <= f.max) {
				reasons = append(reasons, fmt.Sprintf("field %q = %v is above the maximum %v", f.name, x, f.max))
			}
		}
	}
	return strings.Join(reasons, "; ")
}

// Interface guards.
var _ enrich.Stage = (*Schema)(nil)
