package enrich

// Station is one entry of the station registry: the fixed facts about a
// sensor site that readings do not carry. Its JSON form is what the public
// API serves (after PublicLocation for non-public stations).
type Station struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Lat and Lon are WGS 84 degrees; they mean something only when
	// Located is true (a mobile sensor has no fixed position and reports
	// lat/lon fields on its points instead).
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
	Located  bool    `json:"located"`
	Altitude float64 `json:"altitude,omitempty"` // metres above sea level
	District string  `json:"district,omitempty"`
	Model    string  `json:"model,omitempty"` // sensor model
	Owner    string  `json:"owner,omitempty"`
	Licence  string  `json:"licence,omitempty"` // of the station's data, e.g. CC-BY-4.0
	// Public false means the operator (often a resident hosting a sensor
	// at home) does not want the exact position published: the privacy
	// stage coarsens it.
	Public bool `json:"public"`
}

// Stations looks stations up. Implementations must be safe for concurrent
// use; Get is on the hot path of several stages and must not allocate.
type Stations interface {
	// Get returns the station with the given id.
	Get(id string) (Station, bool)
	// All returns every station sorted by id; the caller may keep the slice.
	All() []Station
}

// PublicLocator is implemented by the stage that decides where a station may
// be shown to the public (privacy).
type PublicLocator interface {
	PublicLocation(st Station) (lat, lon float64)
}
