package registry

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed sample.yaml
var sampleConfig string

func init() {
	enrich.Register("registry", func() enrich.Stage { return New() })
}

// Station is the registry's entry type.
type Station = enrich.Station

// Registry is the "registry" stage and the chain's station lookup. Its
// exported fields are its YAML configuration.
type Registry struct {
	// File is the stations file, .yaml/.yml or .csv, relative to the
	// config file's directory.
	File string `yaml:"file"`
	// Format overrides the format the file's extension implies: yaml or csv.
	Format string `yaml:"format"`

	name    string
	path    string // File resolved
	log     *slog.Logger
	snap    atomic.Pointer[snapshot]
	writeMu sync.Mutex // serialises Reload, Replace and Put

	points  *metrics.Counter
	unknown *metrics.Counter
	count   *metrics.Gauge
}

// snapshot is one immutable version of the table.
type snapshot struct {
	byID map[string]*Station
	all  []Station // sorted by id
}

// New returns an empty registry with the defaults.
func New() *Registry {
	r := &Registry{name: "registry", log: slog.New(slog.DiscardHandler)}
	r.snap.Store(&snapshot{byID: map[string]*Station{}})
	return r
}

// SampleConfig returns the documented example configuration.
func (*Registry) SampleConfig() string { return sampleConfig }

// Name returns the stage's name in the chain.
func (r *Registry) Name() string { return r.name }

// Init loads the stations file. Problems inside the file are reported at
// their own file:line.
func (r *Registry) Init(env enrich.Env) error {
	r.name, r.log = env.Name, env.Logger()
	r.points = env.Counter("registry_points_total")
	r.unknown = env.Counter("registry_unknown_station_points_total")
	r.count = env.Gauge("registry_stations")
	if r.File == "" {
		return confx.Problem{Path: "file", Msg: "must name a stations file (.yaml or .csv)"}
	}
	if r.Format != "" && r.Format != "yaml" && r.Format != "csv" {
		return confx.Problem{Path: "format", Msg: fmt.Sprintf("want yaml or csv, got %q", r.Format)}
	}
	r.path = env.Resolve(r.File)
	return r.Reload()
}

// Reload reads the stations file again and replaces the whole table; on
// error the table in use stays as it was.
func (r *Registry) Reload() error {
	sts, err := LoadFile(r.path, r.Format)
	if err != nil {
		return err
	}
	return r.Replace(sts)
}

// Replace validates sts and makes them the whole table at once.
func (r *Registry) Replace(sts []Station) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	s, err := newSnapshot(sts)
	if err != nil {
		return err
	}
	r.swap(s)
	return nil
}

// Put adds a station or replaces the one with its id, for an admin API.
func (r *Registry) Put(st Station) error {
	if err := validate(st); err != nil {
		return fmt.Errorf("station %q: %w", st.ID, err)
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	old := r.snap.Load().all
	sts := make([]Station, 0, len(old)+1)
	for _, o := range old {
		if o.ID != st.ID {
			sts = append(sts, o)
		}
	}
	s, err := newSnapshot(append(sts, st))
	if err != nil {
		return err
	}
	r.swap(s)
	return nil
}

func (r *Registry) swap(s *snapshot) {
	r.snap.Store(s)
	if r.count != nil {
		r.count.Set(float64(len(s.all)))
	}
	r.log.Info("station registry loaded", "stations", len(s.all))
}

func newSnapshot(sts []Station) (*snapshot, error) {
	s := &snapshot{byID: make(map[string]*Station, len(sts)), all: slices.Clone(sts)}
	slices.SortFunc(s.all, func(a, b Station) int { return strings.Compare(a.ID, b.ID) })
	var errs []error
	for i := range s.all {
		st := &s.all[i]
		if err := validate(*st); err != nil {
			errs = append(errs, fmt.Errorf("station %q: %w", st.ID, err))
			continue
		}
		if _, dup := s.byID[st.ID]; dup {
			errs = append(errs, fmt.Errorf("station %q appears twice", st.ID))
			continue
		}
		s.byID[st.ID] = st
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func validate(st Station) error {
	switch {
	case st.ID == "":
		return errors.New("empty id")
	case st.Located && (math.IsNaN(st.Lat) || st.Lat < -90 || st.Lat > 90):
		return fmt.Errorf("lat %v outside -90…90", st.Lat)
	case st.Located && (math.IsNaN(st.Lon) || st.Lon < -180 || st.Lon > 180):
		return fmt.Errorf("lon %v outside -180…180", st.Lon)
	}
	return nil
}

// Stations returns the registry as the chain's station lookup.
func (r *Registry) Stations() enrich.Stations { return r }

// Get returns the station with the given id.
func (r *Registry) Get(id string) (Station, bool) {
	st, ok := r.snap.Load().byID[id]
	if !ok {
		return Station{}, false
	}
	return *st, true
}

// All returns every station sorted by id.
func (r *Registry) All() []Station { return slices.Clone(r.snap.Load().all) }

// Len returns the number of stations.
func (r *Registry) Len() int { return len(r.snap.Load().all) }

// Enrich flags points of unknown stations and adds the registry's district
// to points that have none.
func (r *Registry) Enrich(pts []protocols.Point) ([]protocols.Point, error) {
	s := r.snap.Load()
	var sl enrich.Slab
	unknown := 0
	for i := range pts {
		p := &pts[i]
		id, ok := enrich.TagValue(p, enrich.StationTag)
		if !ok {
			continue
		}
		st, ok := s.byID[id]
		if !ok {
			sl.AddFlag(p, enrich.PointFlagKey, enrich.PointUnknownStation)
			unknown++
			continue
		}
		if st.District != "" {
			if _, has := enrich.TagValue(p, enrich.DistrictTag); !has {
				sl.SetTag(p, enrich.DistrictTag, st.District)
			}
		}
	}
	if r.points != nil {
		r.points.Add(len(pts))
		r.unknown.Add(unknown)
	}
	return pts, nil
}

// LoadFile reads a stations file. format is "yaml", "csv" or empty to go by
// the extension. Problems in the file are confx.Problems with file:line.
func LoadFile(path, format string) ([]Station, error) {
	if format == "" {
		switch strings.ToLower(filepath.Ext(path)) {
		case ".csv":
			format = "csv"
		default:
			format = "yaml"
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("open registry %q: %w", path, err)
	}
	if format == "csv" {
		return ParseCSV(path, data)
	}
	return ParseYAML(path, data)
}

// yamlFile is the YAML form of a stations file.
type yamlFile struct {
	Stations []yamlStation `yaml:"stations"`
}

type yamlStation struct {
	ID       string   `yaml:"id"`
	Name     string   `yaml:"name"`
	Lat      *float64 `yaml:"lat"`
	Lon      *float64 `yaml:"lon"`
	Altitude float64  `yaml:"altitude"`
	District string   `yaml:"district"`
	Model    string   `yaml:"model"`
	Owner    string   `yaml:"owner"`
	Licence  string   `yaml:"licence"`
	Public   *bool    `yaml:"public"`
}

// ParseYAML reads the YAML form: a top-level stations list. file names the
// data in problems.
func ParseYAML(file string, data []byte) ([]Station, error) {
	var f yamlFile
	doc, err := confx.Load(file, data, &f)
	var probs confx.Problems
	if err != nil && !errors.As(err, &probs) {
		return nil, err
	}
	out := make([]Station, 0, len(f.Stations))
	seen := make(map[string]int, len(f.Stations))
	for i, y := range f.Stations {
		at := func(key, format string, args ...any) {
			probs = append(probs, doc.At(fmt.Sprintf("stations[%d].%s", i, key), format, args...))
		}
		st := Station{ID: y.ID, Name: y.Name, Altitude: y.Altitude, District: y.District,
			Model: y.Model, Owner: y.Owner, Licence: y.Licence, Public: y.Public == nil || *y.Public}
		switch {
		case y.ID == "":
			at("id", "must not be empty")
		case seen[y.ID] > 0:
			at("id", "%q appears twice (first at line %d)", y.ID, seen[y.ID])
		default:
			seen[y.ID] = doc.Line(fmt.Sprintf("stations[%d].id", i))
		}
		if (y.Lat == nil) != (y.Lon == nil) {
			at("lat", "give both lat and lon, or neither for a mobile station")
		}
		if y.Lat != nil && y.Lon != nil {
			st.Lat, st.Lon, st.Located = *y.Lat, *y.Lon, true
			if st.Lat < -90 || st.Lat > 90 {
				at("lat", "%v is outside -90…90", st.Lat)
			}
			if st.Lon < -180 || st.Lon > 180 {
				at("lon", "%v is outside -180…180", st.Lon)
			}
		}
		out = append(out, st)
	}
	if len(probs) > 0 {
		slices.SortStableFunc(probs, func(a, b confx.Problem) int { return a.Line - b.Line })
		return nil, probs
	}
	return out, nil
}

// csvColumns are the columns of the CSV form; only id is required.
var csvColumns = []string{"id", "name", "lat", "lon", "altitude", "district", "model", "owner", "licence", "public"}

// ParseCSV reads the CSV form: a header row naming columns from id, name,
// lat, lon, altitude, district, model, owner, licence, public (any order,
// id required), then one station per row. Empty public means true.
func ParseCSV(file string, data []byte) ([]Station, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	var probs confx.Problems
	bad := func(line int, format string, args ...any) {
		probs = append(probs, confx.Problem{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	header, err := r.Read()
	if err != nil {
		if err == io.EOF {
			err = errors.New("no header row")
		}
		return nil, confx.Problems{{File: file, Line: 1, Msg: err.Error()}}
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case !slices.Contains(csvColumns, h):
			bad(1, "unknown column %q (known: %s)", h, strings.Join(csvColumns, ", "))
		case col[h] > 0:
			bad(1, "column %q appears twice", h)
		default:
			col[h] = i + 1 // 0 means absent
		}
	}
	if col["id"] == 0 {
		bad(1, "missing column id")
	}
	if (col["lat"] == 0) != (col["lon"] == 0) {
		bad(1, "give both lat and lon columns, or neither")
	}
	if len(probs) > 0 {
		return nil, probs
	}
	get := func(rec []string, name string) string {
		if i := col[name]; i > 0 && i <= len(rec) {
			return strings.TrimSpace(rec[i-1])
		}
		return ""
	}
	var out []Station
	seen := map[string]int{}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		line, _ := r.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				bad(pe.Line, "%v", pe.Err)
			} else {
				bad(line, "%v", err)
			}
			break
		}
		st := Station{ID: get(rec, "id"), Name: get(rec, "name"), District: get(rec, "district"),
			Model: get(rec, "model"), Owner: get(rec, "owner"), Licence: get(rec, "licence"), Public: true}
		switch {
		case st.ID == "":
			bad(line, "empty id")
		case seen[st.ID] > 0:
			bad(line, "station %q appears twice (first at line %d)", st.ID, seen[st.ID])
		default:
			seen[st.ID] = line
		}
		num := func(name string, lo, hi float64) (float64, bool) {
			s := get(rec, name)
			if s == "" {
				return 0, false
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || v < lo || v > hi {
				bad(line, "%s %q: want a number between %v and %v", name, s, lo, hi)
				return 0, false
			}
			return v, true
		}
		if (get(rec, "lat") == "") != (get(rec, "lon") == "") {
			bad(line, "give both lat and lon, or neither for a mobile station")
		}
		lat, okLat := num("lat", -90, 90)
		lon, okLon := num("lon", -180, 180)
		if okLat && okLon {
			st.Lat, st.Lon, st.Located = lat, lon, true
		}
		st.Altitude, _ = num("altitude", -1000, 10000)
		if s := get(rec, "public"); s != "" {
			b, err := strconv.ParseBool(s)
			if err != nil {
				bad(line, "public %q: want true or false", s)
			}
			st.Public = b
		}
		out = append(out, st)
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return out, nil
}

// Interface guards.
var (
	_ enrich.Stage         = (*Registry)(nil)
	_ enrich.Stations      = (*Registry)(nil)
	_ enrich.StationSource = (*Registry)(nil)
)
