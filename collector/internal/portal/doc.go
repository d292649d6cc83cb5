// Package portal serves the public data portal: one HTML document whose
// views (map, station, district, about) are addressed by the URL fragment,
// the portal's own JavaScript and CSS, message catalogues (English,
// German) and the dist files of its npm dependencies (Leaflet,
// leaflet.markercluster, uPlot), all embedded with go:embed from static/.
// `make portal` installs the npm packages from web/package-lock.json and
// copies their dist files into static/vendor, which is not committed:
// `make build` and `make test` run it first (once per lock file). A Go
// build without it serves the portal without its libraries.
//
// The pages read only the public API (/api/v1/...), like any other
// client. Everything shown comes from sensors and agents, so the scripts
// put text into the page with textContent, never as markup, and the
// handler sends a Content-Security-Policy without 'unsafe-inline': scripts
// and styles come only from the portal's own files.
//
// It must not import the store, the bus, ingest or api packages.
package portal
