package sta

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/enrich/schema"
	"github.com/citysense/citysense/enrich/units"
	"github.com/citysense/citysense/protocols"
)

// setDef describes one entity set.
type setDef struct {
	name   string // Things
	single string // Thing
	props  []string
	objs   []string // props that are JSON objects (a path may name a key)
	navs   []*navDef
}

type navDef struct {
	name   string
	target *setDef
	many   bool
}

func (s *setDef) hasProp(p string) bool    { return slices.Contains(s.props, p) }
func (s *setDef) objectProp(p string) bool { return slices.Contains(s.objs, p) }

func (s *setDef) nav(name string) *navDef {
	for _, n := range s.navs {
		if n.name == name {
			return n
		}
	}
	return nil
}

// The entity sets. Their navigations are filled in by init, since they
// refer to each other.
var (
	setThings = &setDef{name: "Things", single: "Thing",
		props: []string{"name", "description", "properties"}, objs: []string{"properties"}}
	setLocations = &setDef{name: "Locations", single: "Location",
		props: []string{"name", "description", "encodingType", "location", "properties"}, objs: []string{"properties"}}
	setHistoricalLocations = &setDef{name: "HistoricalLocations", single: "HistoricalLocation",
		props: []string{"time"}}
	setDatastreams = &setDef{name: "Datastreams", single: "Datastream",
		props: []string{"name", "description", "unitOfMeasurement", "observationType", "properties"},
		objs:  []string{"unitOfMeasurement", "properties"}}
	setSensors = &setDef{name: "Sensors", single: "Sensor",
		props: []string{"name", "description", "encodingType", "metadata", "properties"}, objs: []string{"properties"}}
	setObservedProperties = &setDef{name: "ObservedProperties", single: "ObservedProperty",
		props: []string{"name", "definition", "description", "properties"}, objs: []string{"properties"}}
	setObservations = &setDef{name: "Observations", single: "Observation",
		props: []string{"phenomenonTime", "resultTime", "result"}}
	setFeatures = &setDef{name: "FeaturesOfInterest", single: "FeatureOfInterest",
		props: []string{"name", "description", "encodingType", "feature", "properties"}, objs: []string{"properties"}}

	// allSets in the order of the landing page.
	allSets = []*setDef{setThings, setLocations, setHistoricalLocations, setDatastreams, setSensors,
		setObservedProperties, setObservations, setFeatures}
)

func init() {
	many := func(t *setDef) *navDef { return &navDef{name: t.name, target: t, many: true} }
	one := func(t *setDef) *navDef { return &navDef{name: t.single, target: t} }
	setThings.navs = []*navDef{many(setLocations), many(setHistoricalLocations), many(setDatastreams)}
	setLocations.navs = []*navDef{many(setThings), many(setHistoricalLocations)}
	setHistoricalLocations.navs = []*navDef{one(setThings), many(setLocations)}
	setDatastreams.navs = []*navDef{one(setThings), one(setSensors), one(setObservedProperties), many(setObservations)}
	setSensors.navs = []*navDef{many(setDatastreams)}
	setObservedProperties.navs = []*navDef{many(setDatastreams)}
	setObservations.navs = []*navDef{one(setDatastreams), one(setFeatures)}
	setFeatures.navs = []*navDef{many(setObservations)}
}

func setByName(name string) *setDef {
	for _, s := range allSets {
		if s.name == name {
			return s
		}
	}
	return nil
}

// Observation types of the O&M model, by value kind.
const (
	omMeasurement = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
	omCount       = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CountObservation"
	omTruth       = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_TruthObservation"
	omObservation = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Observation"
)

// station is a Thing with its Location, HistoricalLocation, Sensor and
// FeatureOfInterest, which share its id.
type station struct {
	id, name  string
	props     obj
	hasLoc    bool
	loc       geometry
	coarsened bool
	lastSeen  int64 // ns; 0 when never seen in the data
	model     string
	dss       []*dstream // sorted by id
}

// dstream is one station × measurement × field.
type dstream struct {
	id   string
	st   *station
	op   *obsProp
	refs []store.SeriesRef // usually one; more when other tags changed
}

// obsProp is one measurement × field.
type obsProp struct {
	id, measurement, field string
	unit, typ, desc        string
	dss                    []*dstream
}

// model is a snapshot of every entity but Observations.
type model struct {
	stations []*station // sorted by id
	byID     map[string]*station
	dss      []*dstream // sorted by id
	dsByID   map[string]*dstream
	ops      []*obsProp // sorted by id
	opByID   map[string]*obsProp
	built    time.Time
}

// escID escapes ':' and '%' in one part of a composite id.
func escID(s string) string {
	if !strings.ContainsAny(s, ":%") {
		return s
	}
	return strings.NewReplacer("%", "%25", ":", "%3A").Replace(s)
}

func joinID(parts ...string) string {
	for i, p := range parts {
		parts[i] = escID(p)
	}
	return strings.Join(parts, ":")
}

// Registry is the station registry as SensorThings needs it.
// collector's registryView implements it.
type Registry interface {
	All() []enrich.Station
	PublicLocation(st enrich.Station) (lat, lon float64, ok bool)
}

// buildModel reads the registry, the store's stations and series, and the
// contracts into a snapshot.
func buildModel(src Store, reg Registry, contracts []schema.Contract, rules []units.Rule, now time.Time) (*model, error) {
	m := &model{byID: map[string]*station{}, dsByID: map[string]*dstream{}, opByID: map[string]*obsProp{}, built: now}
	seen, err := src.Stations()
	if err != nil {
		return nil, fmt.Errorf("stations: %w", err)
	}
	add := func(id string) *station {
		st := m.byID[id]
		if st == nil {
			st = &station{id: id, name: id}
			m.byID[id] = st
			m.stations = append(m.stations, st)
		}
		return st
	}
	regByID := map[string]enrich.Station{}
	if reg != nil {
		for _, rs := range reg.All() {
			regByID[rs.ID] = rs
			st := add(rs.ID)
			if rs.Name != "" {
				st.name = rs.Name
			}
			st.model = rs.Model
			if lat, lon, ok := reg.PublicLocation(rs); ok {
				st.hasLoc, st.loc, st.coarsened = true, pointGeo(lon, lat), !rs.Public
			}
		}
	}
	seenByID := map[string]store.Station{}
	for _, s := range seen {
		seenByID[s.ID] = s
		st := add(s.ID)
		st.lastSeen = s.LastSeen
		if _, registered := regByID[s.ID]; !registered && s.HasPosition {
			// An unregistered station is placed where it reports to be:
			// the privacy stage coarsened that before it was stored. A
			// registered one only ever where PublicLocation allows.
			st.hasLoc, st.loc = true, pointGeo(s.Lon, s.Lat)
		}
	}
	for _, st := range m.stations {
		rs, registered := regByID[st.id]
		ss := seenByID[st.id]
		p := obj{{"station", st.id}}
		district := rs.District
		if district == "" {
			district = ss.District
		}
		if district != "" {
			p = append(p, kv{"district", district})
		}
		for _, f := range [][2]string{{"model", rs.Model}, {"owner", rs.Owner}, {"licence", rs.Licence}} {
			if f[1] != "" {
				p = append(p, kv{f[0], f[1]})
			}
		}
		if rs.Altitude != 0 {
			p = append(p, kv{"altitude", rs.Altitude})
		}
		p = append(p, kv{"registered", registered})
		if st.lastSeen != 0 {
			p = append(p, kv{"last_seen", tval(st.lastSeen)})
		}
		st.props = p
	}

	contract := map[[2]string]schema.FieldSpec{}
	for _, r := range rules {
		f := r.Field
		if r.Rename != "" {
			f = r.Rename
		}
		contract[[2]string{r.Measurement, f}] = schema.FieldSpec{Name: f, Unit: r.To}
	}
	for _, c := range contracts {
		for _, f := range c.Fields {
			k := [2]string{c.Measurement, f.Name}
			if f.Unit == "" {
				f.Unit = contract[k].Unit // the units stage's target
			}
			contract[k] = f
		}
	}
	groups, err := src.Groups()
	if err != nil {
		return nil, fmt.Errorf("groups: %w", err)
	}
	for _, g := range groups {
		if g.Field == enrich.PointFlagKey || strings.HasSuffix(g.Field, enrich.FlagSuffix) {
			continue
		}
		refs, err := src.Lookup(store.Selector{Measurement: g.Measurement, Field: g.Field})
		if err != nil {
			return nil, fmt.Errorf("lookup %s %s: %w", g.Measurement, g.Field, err)
		}
		var op *obsProp
		for _, r := range refs {
			sid := r.Tag("station")
			if sid == "" {
				continue
			}
			if op == nil {
				fs := contract[[2]string{g.Measurement, g.Field}]
				op = &obsProp{id: joinID(g.Measurement, g.Field), measurement: g.Measurement, field: g.Field,
					unit: fs.Unit, typ: fs.Type, desc: fs.Description}
				m.ops = append(m.ops, op)
				m.opByID[op.id] = op
			}
			id := joinID(sid, g.Measurement, g.Field)
			ds := m.dsByID[id]
			if ds == nil {
				ds = &dstream{id: id, st: add(sid), op: op}
				if ds.st.props == nil {
					ds.st.props = obj{{"station", sid}, {"registered", false}}
				}
				m.dsByID[id] = ds
				m.dss = append(m.dss, ds)
				ds.st.dss = append(ds.st.dss, ds)
				op.dss = append(op.dss, ds)
			}
			ds.refs = append(ds.refs, r)
		}
	}
	byID := func(a, b *dstream) int { return strings.Compare(a.id, b.id) }
	slices.SortFunc(m.stations, func(a, b *station) int { return strings.Compare(a.id, b.id) })
	slices.SortFunc(m.dss, byID)
	slices.SortFunc(m.ops, func(a, b *obsProp) int { return strings.Compare(a.id, b.id) })
	for _, st := range m.stations {
		slices.SortFunc(st.dss, byID)
	}
	for _, op := range m.ops {
		slices.SortFunc(op.dss, byID)
	}
	return m, nil
}

// ent is one entity of any set; which fields mean something depends on
// the set.
type ent struct {
	set *setDef
	st  *station // Things, Locations, HistoricalLocations, Sensors, FeaturesOfInterest
	ds  *dstream // Datastreams, Observations
	op  *obsProp // ObservedProperties
	t   int64    // Observations: ns
	v   protocols.Value
}

func (e ent) id() string {
	switch e.set {
	case setDatastreams:
		return e.ds.id
	case setObservedProperties:
		return e.op.id
	case setObservations:
		return e.ds.id + ":" + strconv.FormatInt(e.t, 10)
	}
	return e.st.id
}

// all returns every entity of set s (not Observations).
func (m *model) all(s *setDef) []ent {
	var out []ent
	switch s {
	case setDatastreams:
		out = make([]ent, 0, len(m.dss))
		for _, ds := range m.dss {
			out = append(out, ent{set: s, ds: ds})
		}
	case setObservedProperties:
		out = make([]ent, 0, len(m.ops))
		for _, op := range m.ops {
			out = append(out, ent{set: s, op: op})
		}
	default:
		for _, st := range m.stations {
			if e, ok := stationEnt(s, st); ok {
				out = append(out, e)
			}
		}
	}
	return out
}

// stationEnt is the entity of set s that station st has, if any.
func stationEnt(s *setDef, st *station) (ent, bool) {
	switch s {
	case setLocations:
		return ent{set: s, st: st}, st.hasLoc
	case setHistoricalLocations:
		return ent{set: s, st: st}, st.hasLoc && st.lastSeen != 0
	}
	return ent{set: s, st: st}, true
}

// get returns the entity of set s with the given id (not Observations).
func (m *model) get(s *setDef, id string) (ent, bool) {
	switch s {
	case setDatastreams:
		ds, ok := m.dsByID[id]
		return ent{set: s, ds: ds}, ok
	case setObservedProperties:
		op, ok := m.opByID[id]
		return ent{set: s, op: op}, ok
	}
	st, ok := m.byID[id]
	if !ok {
		return ent{}, false
	}
	return stationEnt(s, st)
}

// navigate returns the entities e reaches by nav (not Observations).
func (m *model) navigate(e ent, nav *navDef) []ent {
	switch nav.target {
	case setDatastreams:
		switch e.set {
		case setObservations:
			return []ent{{set: setDatastreams, ds: e.ds}}
		case setObservedProperties:
			out := make([]ent, len(e.op.dss))
			for i, ds := range e.op.dss {
				out[i] = ent{set: setDatastreams, ds: ds}
			}
			return out
		}
		out := make([]ent, len(e.st.dss))
		for i, ds := range e.st.dss {
			out[i] = ent{set: setDatastreams, ds: ds}
		}
		return out
	case setObservedProperties:
		return []ent{{set: setObservedProperties, op: e.ds.op}}
	}
	st := e.st
	if e.ds != nil {
		st = e.ds.st
	}
	if x, ok := stationEnt(nav.target, st); ok {
		return []ent{x}
	}
	return nil
}

// prop returns property p of e as $filter sees it: strings, float64,
// bool, tval, geometry, obj or nil.
func (m *model) prop(e ent, p string) any {
	switch e.set {
	case setThings:
		switch p {
		case "name":
			return e.st.name
		case "description":
			return "Street station " + e.st.id
		case "properties":
			return e.st.props
		}
	case setLocations:
		switch p {
		case "name":
			return e.st.name
		case "description":
			if e.st.coarsened {
				return "Public position of station " + e.st.id + ", coarsened to the privacy grid"
			}
			return "Position of station " + e.st.id
		case "encodingType":
			return "application/geo+json"
		case "location":
			return e.st.loc
		case "properties":
			return obj{{"coarsened", e.st.coarsened}}
		}
	case setHistoricalLocations:
		if p == "time" {
			return tval(e.st.lastSeen)
		}
	case setSensors:
		switch p {
		case "name":
			if e.st.model != "" {
				return e.st.model
			}
			return "Sensors of station " + e.st.id
		case "description":
			return "The sensors of station " + e.st.id
		case "encodingType":
			return "text/plain"
		case "metadata":
			if e.st.model != "" {
				return e.st.model
			}
			return "unknown model"
		case "properties":
			return obj{{"station", e.st.id}}
		}
	case setFeatures:
		switch p {
		case "name":
			return e.st.name
		case "description":
			return "The surroundings of station " + e.st.id
		case "encodingType":
			return "application/geo+json"
		case "feature":
			if e.st.hasLoc {
				return e.st.loc
			}
			return nil
		case "properties":
			return obj{{"station", e.st.id}}
		}
	case setDatastreams:
		ds := e.ds
		switch p {
		case "name":
			return ds.st.name + " " + ds.op.field
		case "description":
			if ds.op.desc != "" {
				return ds.op.desc + " at " + ds.st.name
			}
			return ds.op.measurement + " " + ds.op.field + " at " + ds.st.name
		case "unitOfMeasurement":
			if ds.op.unit == "" {
				return obj{{"name", nil}, {"symbol", nil}, {"definition", nil}}
			}
			return obj{{"name", ds.op.unit}, {"symbol", ds.op.unit}, {"definition", "urn:citysense:unit:" + ds.op.unit}}
		case "observationType":
			switch ds.op.typ {
			case "float", "":
				return omMeasurement
			case "int", "uint":
				return omCount
			case "bool":
				return omTruth
			}
			return omObservation
		case "properties":
			return obj{{"station", ds.st.id}, {"measurement", ds.op.measurement}, {"field", ds.op.field}}
		}
	case setObservedProperties:
		op := e.op
		switch p {
		case "name":
			return op.field
		case "definition":
			return "urn:citysense:schema:" + op.measurement + ":" + op.field
		case "description":
			if op.desc != "" {
				return op.desc
			}
			return op.measurement + " " + op.field
		case "properties":
			props := obj{{"measurement", op.measurement}}
			if op.unit != "" {
				props = append(props, kv{"unit", op.unit})
			}
			if op.typ != "" {
				props = append(props, kv{"type", op.typ})
			}
			return props
		}
	case setObservations:
		switch p {
		case "phenomenonTime", "resultTime":
			return tval(e.t)
		case "result":
			return filterValue(e.v)
		}
	}
	return nil
}

// filterValue is a stored value as $filter compares it: numbers as
// float64.
func filterValue(v protocols.Value) any {
	switch v.Kind() {
	case protocols.KindFloat:
		return v.FloatV()
	case protocols.KindInt:
		return float64(v.IntV())
	case protocols.KindUint:
		return float64(v.UintV())
	case protocols.KindBool:
		return v.BoolV()
	case protocols.KindString:
		return v.StringV()
	}
	return nil
}

// entEnv resolves $filter paths from one entity.
type entEnv struct {
	m *model
	e ent
}

func (x entEnv) resolve(segs []string) any { return x.m.resolve(x.e, segs) }

func (m *model) resolve(e ent, segs []string) any {
	seg := segs[0]
	if seg == "@iot.id" || seg == "id" {
		return e.id()
	}
	if e.set.hasProp(seg) {
		v := m.prop(e, seg)
		if len(segs) == 2 {
			if o, ok := v.(obj); ok {
				x, _ := o.get(segs[1])
				return x
			}
			return nil
		}
		return v
	}
	nav := e.set.nav(seg)
	if nav == nil || nav.target == setObservations {
		return nil // checkPath refused these already
	}
	targets := m.navigate(e, nav)
	if !nav.many {
		if len(targets) == 0 {
			return nil
		}
		return m.resolve(targets[0], segs[1:])
	}
	out := make(multi, 0, len(targets))
	for _, t := range targets {
		v := m.resolve(t, segs[1:])
		if mv, ok := v.(multi); ok {
			out = append(out, mv...)
		} else {
			out = append(out, v)
		}
	}
	return out
}

// kv and obj are a JSON object that keeps its keys in order.
type kv struct {
	k string
	v any
}

type obj []kv

func (o obj) get(k string) (any, bool) {
	for _, x := range o {
		if x.k == k {
			return x.v, true
		}
	}
	return nil, false
}

func (o obj) MarshalJSON() ([]byte, error) { return appendJSON(nil, o) }

// appendJSON writes v as JSON without HTML escaping. The types answers
// are built of are written directly (encoding/json would re-parse every
// nested MarshalJSON); anything else goes through marshal.
func appendJSON(b []byte, v any) ([]byte, error) {
	var err error
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case float64:
		return appendFloat(b, v), nil
	case json.Number:
		return append(b, v...), nil
	case tval:
		return appendString(b, formatTime(int64(v))), nil
	case geometry:
		return appendJSON(b, v.geoJSON())
	case obj:
		b = append(b, '{')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, x.k)
			b = append(b, ':')
			if b, err = appendJSON(b, x.v); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []obj:
		return appendArray(b, v)
	case []any:
		return appendArray(b, v)
	case [][]any:
		return appendArray(b, v)
	}
	m, err := marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, m...), nil
}

// appendArray writes vs as a JSON array, each element by appendJSON.
func appendArray[T any](b []byte, vs []T) ([]byte, error) {
	b = append(b, '[')
	for i, x := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendJSON(b, x); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// appendString writes s as a JSON string; only what JSON requires is
// escaped (no HTML escaping, see marshal).
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			switch {
			case r == utf8.RuneError:
				b = append(b, `\ufffd`...)
			default:
				b = append(b, '\\', 'u', '2', '0', '2', hex[r&15])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendFloat writes f as encoding/json does; non-finite values (which
// the store never holds) as null so the document stays valid.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9, as encoding/json writes it
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// marshal is json.Marshal without HTML escaping: links hold '&', and the
// answers are served as application/json with nosniff.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func (t tval) MarshalJSON() ([]byte, error) { return appendJSON(nil, t) }

func (g geometry) MarshalJSON() ([]byte, error) { return marshal(g.geoJSON()) }

// formatTime writes ns as RFC 3339 in UTC with as many fraction digits as
// needed.
func formatTime(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }
