package api

import (
	"encoding/json"
	"net/http"

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

	// Latest holds the newest value of each headline field (see
	// latestFields) within the latest window, keyed by field name.
	Latest map[string]json.RawMessage `json:"latest,omitempty"`
	// AQI is the newest US EPA index and its category, EAQI the European
	// band and its category, when the aqi stage computes them.
	AQI          *int64 `json:"aqi,omitempty"`
	AQICategory  string `json:"aqi_category,omitempty"`
	EAQI         *int64 `json:"eaqi,omitempty"`
	EAQICategory string `json:"eaqi_category,omitempty"`
	// Flagged lists the headline fields whose newest value carries
	// quality flags (<field>_qc at the same instant).
	Flagged []string `json:"flagged,omitempty"`
	// Fields is set by /api/v1/stations/{id} only: every field the
	// station has, with its newest value.
	Fields []stationField `json:"fields,omitempty"`
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
