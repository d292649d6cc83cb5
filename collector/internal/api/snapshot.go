package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/enrich/schema"
	"github.com/citysense/citysense/protocols"
)

// The station list is computed at most once per snapshotTTL and served
// from memory, gzipped once, with a strong ETag: ten thousand stations
// cost one pass over the store's newest points, not one per visitor.
const snapshotTTL = 10 * time.Second

// DefaultLatestWindow is how old a station's newest value may be to be
// shown as its current one.
const DefaultLatestWindow = 3 * time.Hour

// stationDetailWindow is how far back /api/v1/stations/{id} looks for the
// newest value of each of the station's fields.
const stationDetailWindow = 30 * 24 * time.Hour

// The AQI stage's output (package enrich/aqi): measurement aqi with these
// fields.
const (
	aqiMeasurement = "aqi"
	aqiField       = "us_epa"
	aqiCatField    = "us_epa_category"
	eaqiField      = "eu_eaqi"
	eaqiCatField   = "eu_eaqi_category"
)

// fieldSpec is a field whose newest value the station list carries.
type fieldSpec struct {
	Measurement string
	Field       string
	Unit        string
	Key         string // the key in properties.latest
}

// stationField is one field of one station in /api/v1/stations/{id}.
type stationField struct {
	Measurement string          `json:"measurement"`
	Field       string          `json:"field"`
	Unit        string          `json:"unit,omitempty"`
	Time        *string         `json:"time"`  // null when nothing within 30 days
	Value       json.RawMessage `json:"value"` // null likewise
	QC          uint64          `json:"qc"`    // flag bits of that value, 0 when clean
}

// latestFields lists the headline fields: every numeric field of the data
// contracts (the schema stage), keyed by name, or by measurement.field
// where two measurements share a name.
func (a *API) latestFields() []fieldSpec {
	var out []fieldSpec
	if a.opts.Contracts != nil {
		if cs, ok := a.opts.Contracts().([]schema.Contract); ok {
			for _, c := range cs {
				for _, f := range c.Fields {
					switch f.Type {
					case "float", "int", "uint":
						out = append(out, fieldSpec{Measurement: c.Measurement, Field: f.Name, Unit: f.Unit, Key: f.Name})
					}
				}
			}
		}
	}
	count := map[string]int{}
	for _, f := range out {
		count[f.Field]++
	}
	for i := range out {
		if count[out[i].Field] > 1 {
			out[i].Key = out[i].Measurement + "." + out[i].Field
		}
	}
	return out
}

// latestBy returns the newest sample of measurement.field per station
// within [from, at], for the stations ms select.
func (a *API) latestBy(ctx context.Context, measurement, field string, ms []store.Matcher, from, at int64) (map[string]store.Sample, error) {
	refs, err := a.opts.Store.Lookup(store.Selector{Measurement: measurement, Field: field, Matchers: ms})
	if err != nil {
		var amb *store.AmbiguousFieldError
		if errors.As(err, &amb) {
			return nil, nil
		}
		return nil, err
	}
	out := make(map[string]store.Sample, len(refs))
	if len(refs) == 0 {
		return out, nil
	}
	err = a.opts.Store.Latest(ctx, refs, from, at, func(i int, smp store.Sample) error {
		st := refs[i].Tag("station")
		if st == "" {
			return nil
		}
		// Several series of one station (other tags differ): the newest wins.
		if old, ok := out[st]; !ok || smp.Time > old.Time {
			out[st] = smp
		}
		return nil
	})
	return out, err
}

// buildFeatures returns every station as a GeoJSON Feature (or, with only,
// the station of that id): registered stations with their metadata and
// public position, and stations seen in the data but unknown to the
// registry (registered: false), so that a misconfigured sensor is visible
// rather than silently missing; each with its latest headline values.
func (a *API) buildFeatures(ctx context.Context, only string) ([]feature, error) {
	seen, err := a.opts.Store.Stations()
	if err != nil {
		return nil, err
	}
	var reg []enrich.Station
	if a.opts.Registry != nil {
		reg = a.opts.Registry.All()
	}
	if only != "" {
		seen = slices.DeleteFunc(slices.Clone(seen), func(s store.Station) bool { return s.ID != only })
		reg = slices.DeleteFunc(slices.Clone(reg), func(s enrich.Station) bool { return s.ID != only })
	}
	features := make([]feature, 0, len(seen)+len(reg))
	byID := make(map[string]int, len(seen))
	for i, s := range seen {
		byID[s.ID] = i
	}
	used := make([]bool, len(seen))
	str := func(s string) *string { return &s }
	for _, st := range reg {
		f := feature{Type: "Feature", Properties: stationProperty{
			ID: st.ID, Name: st.Name, Registered: true, Model: st.Model, Owner: st.Owner,
			Licence: st.Licence, Altitude: st.Altitude, Measurements: []string{},
		}}
		if st.District != "" {
			f.Properties.District = str(st.District)
		}
		if lat, lon, ok := a.opts.Registry.PublicLocation(st); ok {
			f.Geometry = &pointGeometry{Type: "Point", Coordinates: [2]float64{lon, lat}}
			f.Properties.Coarsened = !st.Public
		}
		if i, ok := byID[st.ID]; ok {
			used[i] = true
			s := seen[i]
			if s.Measurements != nil {
				f.Properties.Measurements = s.Measurements
			}
			f.Properties.LastSeen = str(time.Unix(0, s.LastSeen).UTC().Format(time.RFC3339))
			if f.Properties.District == nil && s.District != "" {
				f.Properties.District = str(s.District)
			}
		}
		features = append(features, f)
	}
	for i, s := range seen {
		if used[i] {
			continue
		}
		f := feature{Type: "Feature", Properties: stationProperty{
			ID:           s.ID,
			Measurements: s.Measurements,
			LastSeen:     str(time.Unix(0, s.LastSeen).UTC().Format(time.RFC3339)),
		}}
		if f.Properties.Measurements == nil {
			f.Properties.Measurements = []string{}
		}
		if s.District != "" {
			f.Properties.District = str(s.District)
		}
		// Unregistered stations are placed by the position they report;
		// the privacy stage has already coarsened it where it must.
		if s.HasPosition {
			f.Geometry = &pointGeometry{Type: "Point", Coordinates: [2]float64{s.Lon, s.Lat}}
		}
		features = append(features, f)
	}
	if len(features) == 0 {
		return features, nil
	}
	return features, a.addLatest(ctx, features, only)
}

// addLatest fills the latest values, AQI and flags of features.
func (a *API) addLatest(ctx context.Context, features []feature, only string) error {
	at := a.opts.Now().UnixNano()
	from := at - int64(a.opts.LatestWindow)
	var ms []store.Matcher
	if only != "" {
		ms = []store.Matcher{store.MustMatcher("station", store.MatchEqual, only)}
	}
	idx := make(map[string]int, len(features))
	for i := range features {
		idx[features[i].Properties.ID] = i
	}
	for _, fs := range a.latestFields() {
		vals, err := a.latestBy(ctx, fs.Measurement, fs.Field, ms, from, at)
		if err != nil {
			return err
		}
		if len(vals) == 0 {
			continue
		}
		flags, err := a.latestBy(ctx, fs.Measurement, enrich.FlagKey(fs.Field), ms, from, at)
		if err != nil {
			return err
		}
		for st, smp := range vals {
			i, ok := idx[st]
			if !ok {
				continue
			}
			p := &features[i].Properties
			if p.Latest == nil {
				p.Latest = map[string]json.RawMessage{}
			}
			p.Latest[fs.Key] = appendValue(nil, smp.Value)
			if fl, ok := flags[st]; ok && fl.Time == smp.Time && flagBits(fl.Value) != 0 {
				p.Flagged = append(p.Flagged, fs.Key)
			}
		}
	}
	set := func(field string, fn func(p *stationProperty, v protocols.Value)) error {
		vals, err := a.latestBy(ctx, aqiMeasurement, field, ms, from, at)
		if err != nil {
			return err
		}
		for st, smp := range vals {
			if i, ok := idx[st]; ok {
				fn(&features[i].Properties, smp.Value)
			}
		}
		return nil
	}
	intOf := func(v protocols.Value) *int64 {
		if f, ok := v.AsFloat(); ok {
			n := int64(f)
			return &n
		}
		return nil
	}
	return errors.Join(
		set(aqiField, func(p *stationProperty, v protocols.Value) { p.AQI = intOf(v) }),
		set(aqiCatField, func(p *stationProperty, v protocols.Value) { p.AQICategory = v.StringV() }),
		set(eaqiField, func(p *stationProperty, v protocols.Value) { p.EAQI = intOf(v) }),
		set(eaqiCatField, func(p *stationProperty, v protocols.Value) { p.EAQICategory = v.StringV() }),
	)
}

func flagBits(v protocols.Value) uint64 {
	switch v.Kind() {
	case protocols.KindUint:
		return v.UintV()
	case protocols.KindInt:
		return uint64(v.IntV())
	}
	if f, ok := v.AsFloat(); ok && f > 0 {
		return uint64(f)
	}
	return 0
}

// snapshot is one rendering of the station list.
type snapshot struct {
	built    time.Time
	features []feature
	body     []byte // GeoJSON
	gz       []byte // body gzipped
	etag     string // of body; the gzip variant's ends in -gz
}

// representation is a cached document served with ETag, gzip and 304s.
type representation struct {
	body, gz []byte
	etag     string
}

func newRepresentation(body []byte) (representation, error) {
	sum := sha256.Sum256(body)
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if _, err := zw.Write(body); err != nil {
		return representation{}, err
	}
	if err := zw.Close(); err != nil {
		return representation{}, err
	}
	return representation{body: body, gz: buf.Bytes(), etag: `"` + hex.EncodeToString(sum[:16]) + `"`}, nil
}

// serve writes r with contentType and Cache-Control cc: 304 when the
// client's If-None-Match names the variant it would get, gzip when it
// accepts gzip. Each encoding has its own strong ETag.
func (rep representation) serve(w http.ResponseWriter, r *http.Request, contentType, cc string) {
	h := w.Header()
	h.Set("Vary", "Accept-Encoding")
	h.Set("Cache-Control", cc)
	body, etag := rep.body, rep.etag
	gz := acceptsGzip(r)
	if gz {
		body, etag = rep.gz, strings.TrimSuffix(rep.etag, `"`)+`-gz"`
	}
	h.Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", contentType)
	if gz {
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// acceptsGzip reads Accept-Encoding: gzip with any q-value but 0.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}

// etagMatch is If-None-Match's weak comparison against etag.
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// stationSnapshot returns the current station list, rebuilding it when it
// is older than snapshotTTL. Concurrent callers wait for one rebuild.
func (a *API) stationSnapshot(ctx context.Context) (*snapshot, error) {
	a.snapMu.Lock()
	defer a.snapMu.Unlock()
	if a.snap != nil && time.Since(a.snap.built) < snapshotTTL {
		return a.snap, nil
	}
	features, err := a.buildFeatures(ctx, "")
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(featureCollection{Type: "FeatureCollection", Features: features})
	if err != nil {
		return nil, err
	}
	rep, err := newRepresentation(append(body, '\n'))
	if err != nil {
		return nil, err
	}
	a.snap = &snapshot{built: time.Now(), features: features, body: rep.body, gz: rep.gz, etag: rep.etag}
	return a.snap, nil
}

// stations answers GET /api/v1/stations.
func (a *API) stations(w http.ResponseWriter, r *http.Request) {
	snap, err := a.stationSnapshot(r.Context())
	if err != nil {
		a.internalError(w, "stations", err)
		return
	}
	representation{body: snap.body, gz: snap.gz, etag: snap.etag}.serve(w, r, "application/geo+json", "public, max-age=10")
}

// station answers GET /api/v1/stations/{id}: the station's Feature with
// every field it has and the newest value of each.
func (a *API) station(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxParamLen {
		writeError(w, http.StatusBadRequest, "station id must be 1 to 256 bytes")
		return
	}
	features, err := a.buildFeatures(r.Context(), id)
	if err != nil {
		a.internalError(w, "station", err)
		return
	}
	if len(features) == 0 {
		writeError(w, http.StatusNotFound, "no station "+strconv.Quote(id))
		return
	}
	f := features[0]
	at := a.opts.Now().UnixNano()
	ms := []store.Matcher{store.MustMatcher("station", store.MatchEqual, id)}
	f.Properties.Fields = []stationField{}
	specs := a.latestFields()
	specs = append(specs,
		fieldSpec{Measurement: aqiMeasurement, Field: aqiField},
		fieldSpec{Measurement: aqiMeasurement, Field: aqiCatField},
		fieldSpec{Measurement: aqiMeasurement, Field: eaqiField},
		fieldSpec{Measurement: aqiMeasurement, Field: eaqiCatField})
	for _, fs := range specs {
		refs, err := a.opts.Store.Lookup(store.Selector{Measurement: fs.Measurement, Field: fs.Field, Matchers: ms})
		if err != nil || len(refs) == 0 {
			continue
		}
		sf := stationField{Measurement: fs.Measurement, Field: fs.Field, Unit: fs.Unit, Value: json.RawMessage("null")}
		vals, err := a.latestBy(r.Context(), fs.Measurement, fs.Field, ms, at-int64(stationDetailWindow), at)
		if err != nil {
			a.internalError(w, "station", err)
			return
		}
		if smp, ok := vals[id]; ok {
			t := time.Unix(0, smp.Time).UTC().Format(time.RFC3339Nano)
			sf.Time, sf.Value = &t, appendValue(nil, smp.Value)
			flags, err := a.latestBy(r.Context(), fs.Measurement, enrich.FlagKey(fs.Field), ms, smp.Time, smp.Time)
			if err != nil {
				a.internalError(w, "station", err)
				return
			}
			if fl, ok := flags[id]; ok {
				sf.QC = flagBits(fl.Value)
			}
		}
		f.Properties.Fields = append(f.Properties.Fields, sf)
	}
	a.serveJSON(w, r, "station", f, "application/geo+json", "public, max-age=10")
}

// serveJSON answers v as a JSON document with an ETag, gzip when the
// client takes it and 304 to a matching If-None-Match; what names the
// endpoint in the log of an internal error.
func (a *API) serveJSON(w http.ResponseWriter, r *http.Request, what string, v any, contentType, cacheControl string) {
	body, err := json.Marshal(v)
	if err != nil {
		a.internalError(w, what, err)
		return
	}
	rep, err := newRepresentation(append(body, '\n'))
	if err != nil {
		a.internalError(w, what, err)
		return
	}
	rep.serve(w, r, contentType, cacheControl)
}

func (a *API) internalError(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if errors.Is(err, context.DeadlineExceeded) {
		writeError(w, http.StatusServiceUnavailable, what+": took too long; try again")
		return
	}
	a.log.Error("api: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error")
}
