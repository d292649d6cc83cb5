package portal

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/citysense/citysense/internal/cli"
)

// static holds the built portal: index.html, the portal's own JS and CSS,
// the message catalogues and the npm packages' dist files under vendor/
// (copied there by `make portal`).
//
//go:embed static
var static embed.FS

// DefaultLicence is the data licence shown when none is configured.
const (
	DefaultLicence    = "CC BY 4.0"
	DefaultLicenceURL = "https://creativecommons.org/licenses/by/4.0/"
)

// Options configure the portal's pages.
type Options struct {
	// TileURL is a slippy-map tile template such as
	// https://tiles.example/{z}/{x}/{y}.png; empty (the default) draws the
	// map without a base layer: districts and stations still render.
	TileURL string
	// TileAttribution is shown in the map's corner when TileURL is set.
	TileAttribution string
	// Licence and LicenceURL name the data's licence; empty means CC BY 4.0.
	Licence    string
	LicenceURL string
	// Attribution is how users should credit the data, e.g. "City of X,
	// environment department"; empty means "CitySense contributors".
	Attribution string
}

// Handler serves the portal.
type Handler struct {
	opts   Options
	log    *slog.Logger
	csp    string
	config []byte

	mu    sync.Mutex
	etags map[string]string
}

// New returns the portal handler. A nil log discards.
func New(opts Options, log *slog.Logger) *Handler {
	if log == nil {
		log = cli.Discard()
	}
	if opts.Licence == "" {
		opts.Licence, opts.LicenceURL = DefaultLicence, DefaultLicenceURL
	}
	if opts.Attribution == "" {
		opts.Attribution = "CitySense contributors"
	}
	h := &Handler{opts: opts, log: log, etags: map[string]string{}}
	imgSrc := "'self' data:"
	if origin := tileOrigin(opts.TileURL); origin != "" {
		imgSrc += " " + origin
	} else if opts.TileURL != "" {
		log.Warn("portal: tile URL is not an http(s) URL; the map is drawn without tiles", "tile_url", opts.TileURL)
		h.opts.TileURL = ""
	}
	// Scripts and styles only from the portal's own files: no inline
	// code, no eval, nothing from elsewhere.
	h.csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src " + imgSrc +
		"; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
	h.config, _ = json.Marshal(map[string]string{
		"tile_url": h.opts.TileURL, "tile_attribution": opts.TileAttribution,
		"licence": opts.Licence, "licence_url": opts.LicenceURL, "attribution": opts.Attribution,
	})
	return h
}

// tileOrigin is scheme://host of an http(s) tile template, or "".
func tileOrigin(tmpl string) string {
	if tmpl == "" {
		return ""
	}
	u, err := url.Parse(strings.NewReplacer("{", "", "}", "").Replace(tmpl))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// ServeHTTP serves index.html at / (the pages are views of one document,
// addressed by the URL fragment: #/station/s0001), the portal's
// configuration at /portal/config.json and the assets under /assets/.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", h.csp)
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("X-Frame-Options", "DENY")
	switch p := r.URL.Path; {
	case p == "/" || p == "/index.html":
		h.file(w, r, "static/index.html", "no-cache")
	case p == "/portal/config.json":
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Cache-Control", "no-cache")
		w.Write(h.config)
	case strings.HasPrefix(p, "/assets/"):
		name := path.Clean(strings.TrimPrefix(p, "/assets/"))
		if name == "." || strings.HasPrefix(name, "..") || name == "index.html" {
			http.NotFound(w, r)
			return
		}
		h.file(w, r, "static/"+name, "public, max-age=300")
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) file(w http.ResponseWriter, r *http.Request, name, cc string) {
	b, err := fs.ReadFile(static, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h.mu.Lock()
	etag, ok := h.etags[name]
	if !ok {
		sum := sha256.Sum256(b)
		etag = `"` + hex.EncodeToString(sum[:12]) + `"`
		h.etags[name] = etag
	}
	h.mu.Unlock()
	hdr := w.Header()
	hdr.Set("Cache-Control", cc)
	hdr.Set("ETag", etag)
	// ServeContent answers If-None-Match from the ETag and takes the
	// content type from the name's extension.
	http.ServeContent(w, r, path.Base(name), time.Time{}, bytes.NewReader(b))
}
