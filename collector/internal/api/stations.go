package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/citysense/citysense/enrich"
)

// Registry is the station registry as the public API needs it: every
// registered station, and where each may be shown. PublicLocation's ok is
// false when a position must not be published at all.
type Registry interface {
	All() []enrich.Station
	PublicLocation(st enrich.Station) (lat, lon float64, ok bool)
}

type stationProperty struct {
	ID           string   `json:"id"`
	Name         string   `json:"name,omitempty"`
	District     *string  `json:"district"` // null when neither the registry nor the data names one
	Measurements []string `json:"measurements"`
	LastSeen     *string  `json:"last_seen"` // null for a registered station that has not reported
	Registered   bool     `json:"registered"`
	Model        string   `json:"model,omitempty"`
	Owner        string   `json:"owner,omitempty"`
	Licence      string   `json:"licence,omitempty"`
	Altitude     float64  `json:"altitude,omitempty"`
	// Coarsened is true when the position was rounded to protect a
	// private host (the privacy stage).
	Coarsened bool `json:"coarsened,omitempty"`
}

// stations serves every station as a GeoJSON Feature: registered stations
// with their metadata and public position, and stations seen in the data
// but unknown to the registry (registered: false), so that a misconfigured
// sensor is visible rather than silently missing.
func (a *API) stations(w http.ResponseWriter, r *http.Request) {
	seen, err := a.opts.Store.Stations()
	if err != nil {
		a.log.Error("api: stations", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	var reg []enrich.Station
	if a.opts.Registry != nil {
		reg = a.opts.Registry.All()
	}
	fc := featureCollection{Type: "FeatureCollection", Features: make([]feature, 0, len(seen)+len(reg))}
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
		fc.Features = append(fc.Features, f)
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
		fc.Features = append(fc.Features, f)
	}
	w.Header().Set("Content-Type", "application/geo+json")
	w.Header().Set("Cache-Control", "public, max-age=10")
	json.NewEncoder(w).Encode(fc)
}

// schema serves the data contracts: what each measurement's fields mean,
// their types, units and valid ranges.
func (a *API) schema(w http.ResponseWriter, r *http.Request) {
	var contracts any = []struct{}{}
	if a.opts.Contracts != nil {
		if c := a.opts.Contracts(); c != nil {
			contracts = c
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	json.NewEncoder(w).Encode(struct {
		Measurements any `json:"measurements"`
	}{contracts})
}
