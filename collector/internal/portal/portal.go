package portal

import (
	"bytes"
	_ "embed"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/internal/cli"
)

// Stations is where the portal reads the station list from.
type Stations interface {
	Stations() ([]store.Station, error)
}

//go:embed index.html
var indexHTML string

// The template is parsed once at init; a broken template is a build error
// in effect, caught by the package's tests.
var indexTmpl = template.Must(template.New("index").Parse(indexHTML))

// Handler serves the portal pages.
type Handler struct {
	src Stations
	log *slog.Logger
	now func() time.Time
}

// New returns the portal handler. A nil log discards.
func New(src Stations, log *slog.Logger) *Handler {
	if log == nil {
		log = cli.Discard()
	}
	return &Handler{src: src, log: log, now: time.Now}
}

type stationView struct {
	ID           string
	District     string
	Measurements []string
	LastSeen     string
}

// ServeHTTP renders the station list.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sts, err := h.src.Stations()
	if err != nil {
		h.log.Error("portal: list stations", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	data := struct {
		Stations []stationView
		Now      string
	}{Now: h.now().UTC().Format(time.RFC3339)}
	for _, s := range sts {
		data.Stations = append(data.Stations, stationView{
			ID:           s.ID,
			District:     s.District,
			Measurements: s.Measurements,
			LastSeen:     time.Unix(0, s.LastSeen).UTC().Format(time.RFC3339),
		})
	}
	// Render fully before writing so that a failure is a clean 500, not a
	// half page with status 200.
	var buf bytes.Buffer
	if err := indexTmpl.Execute(&buf, data); err != nil {
		h.log.Error("portal: render", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(buf.Len()))
	// No scripts, no foreign content: even markup that slipped past the
	// escaping could not run.
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	hdr.Set("Cache-Control", "public, max-age=10")
	w.Write(buf.Bytes())
}
