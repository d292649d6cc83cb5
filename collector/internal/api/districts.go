package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/citysense/citysense/enrich/aqi"
)

// district is one feature of the districts file.
type district struct {
	name       string
	geometry   json.RawMessage
	properties map[string]any
}

// parseDistricts reads a GeoJSON FeatureCollection of districts, naming
// each as the geo stage does: property (when set), else the name
// property, else id, else the feature's id.
func parseDistricts(data []byte, property string) ([]district, error) {
	var fc struct {
		Type     string `json:"type"`
		Features []struct {
			ID         any             `json:"id"`
			Properties map[string]any  `json:"properties"`
			Geometry   json.RawMessage `json:"geometry"`
		} `json:"features"`
	}
	if err := json.Unmarshal(data, &fc); err != nil {
		return nil, fmt.Errorf("districts: %w", err)
	}
	if fc.Type != "FeatureCollection" {
		return nil, errors.New("districts: not a GeoJSON FeatureCollection")
	}
	out := make([]district, 0, len(fc.Features))
	seen := map[string]bool{}
	for i, f := range fc.Features {
		var name string
		keys := []string{"name", "id"}
		if property != "" {
			keys = []string{property}
		}
		for _, k := range keys {
			if name = scalar(f.Properties[k]); name != "" {
				break
			}
		}
		if name == "" && property == "" {
			name = scalar(f.ID)
		}
		if name == "" {
			return nil, fmt.Errorf("districts: feature %d has no name", i)
		}
		if seen[name] {
			continue // the geo stage lets the first feature win too
		}
		seen[name] = true
		if f.Properties == nil {
			f.Properties = map[string]any{}
		}
		out = append(out, district{name: name, geometry: f.Geometry, properties: f.Properties})
	}
	return out, nil
}

func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return ""
}

// districtStats are the aggregates of one district's stations.
type districtStats struct {
	District    string   `json:"district"`
	Stations    int      `json:"stations"`
	WithAQI     int      `json:"stations_with_aqi"`
	AQIMean     *float64 `json:"aqi_mean"` // null when no station has a current AQI
	AQIMax      *int64   `json:"aqi_max"`
	AQICategory string   `json:"aqi_category,omitempty"` // of the mean
	PM25Mean    *float64 `json:"pm25_mean"`
}

// districts answers GET /api/v1/districts: the districts file's features
// with, in their properties, the number of stations in each and the mean
// and maximum of their current AQI.
func (a *API) districts(w http.ResponseWriter, r *http.Request) {
	if a.districtsErr != nil {
		a.internalError(w, "districts", a.districtsErr)
		return
	}
	snap, err := a.stationSnapshot(r.Context())
	if err != nil {
		a.internalError(w, "districts", err)
		return
	}
	stats := make(map[string]*districtStats, len(a.districtList))
	type sums struct {
		aqi, pm25 float64
		npm       int
	}
	acc := map[string]*sums{}
	for _, d := range a.districtList {
		stats[d.name] = &districtStats{District: d.name}
		acc[d.name] = &sums{}
	}
	for _, f := range snap.features {
		p := f.Properties
		if p.District == nil {
			continue
		}
		st, ok := stats[*p.District]
		if !ok {
			continue
		}
		s := acc[*p.District]
		st.Stations++
		if p.AQI != nil {
			st.WithAQI++
			s.aqi += float64(*p.AQI)
			if st.AQIMax == nil || *p.AQI > *st.AQIMax {
				v := *p.AQI
				st.AQIMax = &v
			}
		}
		if raw, ok := p.Latest["pm25"]; ok {
			if v, err := strconv.ParseFloat(string(raw), 64); err == nil {
				s.pm25 += v
				s.npm++
			}
		}
	}
	round1 := func(x float64) *float64 { v := math.Round(x*10) / 10; return &v }
	type outFeature struct {
		Type       string          `json:"type"`
		ID         string          `json:"id"`
		Geometry   json.RawMessage `json:"geometry"`
		Properties map[string]any  `json:"properties"`
	}
	fc := struct {
		Type     string       `json:"type"`
		Features []outFeature `json:"features"`
	}{Type: "FeatureCollection", Features: make([]outFeature, 0, len(a.districtList))}
	for _, d := range a.districtList {
		st, s := stats[d.name], acc[d.name]
		if st.WithAQI > 0 {
			st.AQIMean = round1(s.aqi / float64(st.WithAQI))
			st.AQICategory = aqi.EPACategory(int(math.Round(*st.AQIMean)))
		}
		if s.npm > 0 {
			st.PM25Mean = round1(s.pm25 / float64(s.npm))
		}
		props := make(map[string]any, len(d.properties)+7)
		for k, v := range d.properties {
			props[k] = v
		}
		props["district"] = st.District
		props["stations"] = st.Stations
		props["stations_with_aqi"] = st.WithAQI
		props["aqi_mean"] = st.AQIMean
		props["aqi_max"] = st.AQIMax
		props["pm25_mean"] = st.PM25Mean
		if st.AQICategory != "" {
			props["aqi_category"] = st.AQICategory
		}
		geom := d.geometry
		if len(geom) == 0 {
			geom = json.RawMessage("null")
		}
		fc.Features = append(fc.Features, outFeature{Type: "Feature", ID: d.name, Geometry: geom, Properties: props})
	}
	a.serveJSON(w, r, "districts", fc, "application/geo+json", "public, max-age=10")
}
