package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/collector/internal/portal"
	"github.com/citysense/citysense/collector/internal/query"
	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/protocols"
)

// DefaultMaxPoints is the most points one /api/v1/series answer may hold.
const DefaultMaxPoints = 1_000_000

// maxParamLen bounds every query parameter value; no legitimate station,
// field or time is longer.
const maxParamLen = 256

// Store is the data the API serves: the stations seen in the data, and
// what the query engine reads.
type Store interface {
	query.Source
	Stations() ([]store.Station, error)
}

// Options configure the API.
type Options struct {
	Store Store
	// Ready reports why the collector cannot take data, nil when it can;
	// nil means always ready.
	Ready func() error
	// Metrics are written at /metrics after the API's own, followed by the
	// process metrics.
	Metrics []*metrics.Set
	// MaxPoints bounds a series answer; zero means DefaultMaxPoints.
	MaxPoints int
	// MaxSeries bounds the series one query selects; zero means
	// query.DefaultMaxSeries.
	MaxSeries int
	// Now is the clock for default time ranges and the write endpoints'
	// timestamp limits; nil means time.Now.
	Now func() time.Time
	// Credentials check the tokens of the write and admin endpoints and
	// carry out the admin API's changes; nil refuses both with 401.
	Credentials Credentials
	// Bus takes the batches of the write endpoints; nil answers them 503.
	Bus Publisher
	// Write bounds the write endpoints; the zero value means
	// DefaultWriteLimits.
	Write WriteLimits
	// Registry is the station registry of the enrichment chain; nil lists
	// only the stations seen in the data.
	Registry Registry
	// Contracts are the measurement schemas served at /api/v1/schema;
	// nil serves an empty list. When they are the schema stage's
	// []schema.Contract, their numeric fields are the headline values of
	// /api/v1/stations.
	Contracts func() any
	// LatestWindow is how old a station's newest value may be to count as
	// current in /api/v1/stations; zero means DefaultLatestWindow.
	LatestWindow time.Duration
	// Districts is the GeoJSON FeatureCollection of the districts (the geo
	// stage's file), served with aggregates at /api/v1/districts; nil
	// serves an empty collection. DistrictProperty names the property
	// holding a district's name, as in the geo stage.
	Districts        []byte
	DistrictProperty string
	// Live is where /api/v1/live takes the enriched points from; nil
	// answers it 503. MaxLiveClients bounds the open streams (zero:
	// DefaultMaxLiveClients), LiveHeartbeat the idle time between comment
	// lines (zero: DefaultLiveHeartbeat).
	Live           LiveSource
	MaxLiveClients int
	LiveHeartbeat  time.Duration
	// RateLimit bounds each client address's requests to the public API;
	// the zero value means DefaultRateLimit, a negative PerSecond turns it
	// off.
	RateLimit RateLimit
	// Portal configures the data portal's pages; its licence and
	// attribution are also the archive's.
	Portal portal.Options
	// ArchiveDir holds the bulk archive that RunArchive produces; empty
	// turns the archive off (/api/v1/archive lists nothing). ArchiveDays
	// is how many closed days it keeps (zero: DefaultArchiveDays).
	ArchiveDir  string
	ArchiveDays int
	// STA serves OGC SensorThings under /sta/v1.1/; nil leaves it out.
	STA http.Handler
	// Internal serves the cluster's node-to-node queries under
	// /internal/v1/ (it checks its own token); nil leaves them out.
	Internal http.Handler
	// LocalStore is this node's own store when Store is the cluster's
	// fan-out: GET /admin/v1/local/series answers from it alone, so that
	// an operator can compare the nodes' copies. Nil: the same as Store.
	LocalStore Store
	// ClusterStatus answers GET /admin/v1/cluster; nil answers 404 (a
	// single node).
	ClusterStatus func(ctx context.Context) (any, error)
}

// API is the collector's HTTP handler.
type API struct {
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux
	set  *metrics.Set

	query      *query.Engine
	localQuery *query.Engine // this node's store alone (admin)

	snapMu sync.Mutex
	snap   *snapshot

	districtList []district
	districtsErr error

	openapiDoc  representation
	hub         *liveHub
	sumMu       sync.Mutex
	sums        map[string]string // archive file checksums by path and size
	liveStop    chan struct{}     // closed on shutdown: ends the live streams
	stopOnce    sync.Once
	limiter     *limiter
	rateLimited *metrics.Counter
	requests    sync.Map // routeCode → *metrics.Counter

	writeSlots        chan struct{} // one per write request being processed
	writePoints       *metrics.Counter
	writeRejected     *metrics.Counter
	writeBytes        *metrics.Counter
	writeUnauthorized *metrics.Counter
}

// New builds the handler. A nil log discards.
func New(opts Options, log *slog.Logger) *API {
	if log == nil {
		log = cli.Discard()
	}
	if opts.MaxPoints <= 0 {
		opts.MaxPoints = DefaultMaxPoints
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Ready == nil {
		opts.Ready = func() error { return nil }
	}
	if opts.Write == (WriteLimits{}) {
		opts.Write = DefaultWriteLimits()
	}
	if opts.Write.MaxLine <= 0 {
		opts.Write.MaxLine = DefaultWriteLimits().MaxLine
	}
	if opts.LatestWindow <= 0 {
		opts.LatestWindow = DefaultLatestWindow
	}
	if opts.MaxLiveClients <= 0 {
		opts.MaxLiveClients = DefaultMaxLiveClients
	}
	if opts.LiveHeartbeat <= 0 {
		opts.LiveHeartbeat = DefaultLiveHeartbeat
	}
	if opts.RateLimit == (RateLimit{}) {
		opts.RateLimit = DefaultRateLimit()
	}
	if opts.ArchiveDays <= 0 {
		opts.ArchiveDays = DefaultArchiveDays
	}
	set := metrics.NewSet()
	a := &API{opts: opts, log: log.With("component", "api"), mux: http.NewServeMux(), set: set,
		query:             &query.Engine{Source: opts.Store, MaxPoints: opts.MaxPoints, MaxSeries: opts.MaxSeries, Now: opts.Now},
		localQuery:        &query.Engine{Source: cmp.Or[Store](opts.LocalStore, opts.Store), MaxPoints: opts.MaxPoints, MaxSeries: opts.MaxSeries, Now: opts.Now},
		writeSlots:        make(chan struct{}, maxConcurrentWrites),
		writePoints:       set.NewCounter("citysense_api_write_points_total"),
		writeRejected:     set.NewCounter("citysense_api_write_rejected_lines_total"),
		writeBytes:        set.NewCounter("citysense_api_write_bytes_total"),
		writeUnauthorized: set.NewCounter("citysense_api_write_unauthorized_total"),
		rateLimited:       set.NewCounter("citysense_api_rate_limited_total"),
		liveStop:          make(chan struct{}),
		sums:              map[string]string{},
	}
	// Gzipping bytes into memory cannot fail.
	a.openapiDoc, _ = newRepresentation(openapiJSON)
	if opts.RateLimit.PerSecond > 0 && opts.RateLimit.Burst > 0 {
		a.limiter = newLimiter(opts.RateLimit)
	}
	if opts.Live != nil {
		a.hub = newLiveHub(opts.Live, opts.MaxLiveClients, opts.LiveHeartbeat, set)
	}
	if opts.Districts != nil {
		a.districtList, a.districtsErr = parseDistricts(opts.Districts, opts.DistrictProperty)
		if a.districtsErr != nil {
			a.log.Error("api: districts file unusable; /api/v1/districts answers 500", "err", a.districtsErr)
		}
	}
	// Influx write compatibility: what Telegraf's outputs.influxdb and
	// outputs.influxdb_v2 send.
	a.mux.HandleFunc("POST /write", a.writeV1)
	a.mux.HandleFunc("POST /api/v2/write", a.writeV2)
	// InfluxDB clients probe /ping before writing; GET also answers HEAD.
	a.mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Influxdb-Build", "CitySense")
		w.Header().Set("X-Influxdb-Version", "citysense")
		w.WriteHeader(http.StatusNoContent)
	})
	a.mux.HandleFunc("GET /admin/v1/agents", a.admin(a.listAgents))
	a.mux.HandleFunc("POST /admin/v1/agents", a.admin(a.addAgent))
	a.mux.HandleFunc("DELETE /admin/v1/agents/{id}", a.admin(a.revokeAgent))
	a.mux.HandleFunc("GET /admin/v1/tokens", a.admin(a.listTokens))
	a.mux.HandleFunc("POST /admin/v1/tokens", a.admin(a.addToken))
	a.mux.HandleFunc("DELETE /admin/v1/tokens/{name}", a.admin(a.revokeToken))
	a.mux.HandleFunc("GET /admin/v1/cluster", a.admin(a.clusterStatus))
	a.mux.HandleFunc("GET /admin/v1/local/series", a.admin(func(w http.ResponseWriter, r *http.Request) {
		a.series(w, r.WithContext(context.WithValue(r.Context(), localScope{}, true)))
	}))
	if opts.Internal != nil {
		a.mux.Handle("/internal/v1/", opts.Internal)
	}
	for path, allow := range map[string]string{
		"/admin/v1/agents": "GET, POST", "/admin/v1/agents/{id}": "DELETE",
		"/admin/v1/tokens": "GET, POST", "/admin/v1/tokens/{name}": "DELETE",
		"/admin/v1/cluster": "GET", "/admin/v1/local/series": "GET",
	} {
		// Without these, the catch-all below would answer 404 to a
		// known path with the wrong method.
		a.mux.HandleFunc(path, methodNotAllowed(allow))
	}
	a.mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	for _, rt := range a.publicRoutes() {
		a.mux.HandleFunc(rt.pattern, rt.handler)
	}
	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	if opts.STA != nil {
		a.mux.Handle("/sta/v1.1/", opts.STA)
	}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	a.mux.HandleFunc("GET /readyz", a.readyz)
	a.mux.HandleFunc("GET /metrics", a.metrics)
	ph := portal.New(opts.Portal, log)
	for _, p := range []string{"GET /{$}", "GET /index.html", "GET /portal/config.json", "GET /assets/"} {
		a.mux.Handle(p, ph)
	}
	return a
}

// route is one endpoint of the public API.
type route struct {
	pattern string
	handler http.HandlerFunc
}

// publicRoutes are the public API's endpoints; each is described in
// openapi.json (a test holds the two in step).
func (a *API) publicRoutes() []route {
	return []route{
		{"GET /api/v1/series", a.series},
		{"GET /api/v1/latest", a.latest},
		{"GET /api/v1/stations", a.stations},
		{"GET /api/v1/stations/{id}", a.station},
		{"GET /api/v1/districts", a.districts},
		{"GET /api/v1/live", a.live},
		{"GET /api/v1/schema", a.schema},
		{"GET /api/v1/archive", a.archive},
		{"GET /api/v1/archive/{day}/{district}/{file}", a.archiveDownload},
		{"GET /api/openapi.json", a.openapi},
	}
}

// Metrics is the API's own metrics set:
//
//   - citysense_api_requests_total{route,code}: requests by route and status
//   - citysense_api_write_points_total: points the write endpoints published
//   - citysense_api_write_rejected_lines_total: lines they refused (400)
//   - citysense_api_write_bytes_total: body bytes they read, decompressed
//   - citysense_api_write_unauthorized_total: writes without a valid token
func (a *API) Metrics() *metrics.Set { return a.set }

// writable reports whether path takes methods other than GET and HEAD:
// only the write endpoints, the admin API and the cluster's internal
// endpoints, which carry a token.
func writable(path string) bool {
	return path == "/write" || path == "/api/v2/write" || strings.HasPrefix(path, "/admin/") ||
		(strings.HasPrefix(path, "/internal/"))
}

// ServeHTTP applies the limits common to every endpoint and dispatches.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header()["X-Content-Type-Options"] = hdrNosniff
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK, head: r.Method == http.MethodHead}
	if public(r.URL.Path) {
		if !a.servePublic(sw, r) {
			a.count("public", sw.code)
			return
		}
		if r.URL.Path != "/api/v1/live" {
			ctx, cancel := context.WithTimeout(r.Context(), publicTimeout)
			defer cancel()
			r = r.WithContext(ctx)
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !writable(r.URL.Path) {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; the API is read-only")
		a.count("other", http.StatusMethodNotAllowed)
		return
	}
	a.mux.ServeHTTP(sw, r)
	// The mux records the pattern it matched on r itself.
	pattern := r.Pattern
	if pattern == "" {
		pattern = "other"
	}
	a.count(pattern, sw.code)
}

// Header values every answer of a kind carries, shared read-only so that
// a request does not allocate them (keys set with them must be in
// canonical form; Set and Add never write into a slice they did not make).
var (
	hdrNosniff   = []string{"nosniff"}
	hdrAnyOrigin = []string{"*"}
	hdrExposed   = []string{"ETag, Retry-After, Content-Disposition"}
	hdrJSON      = []string{"application/json"}
	hdrPublic10s = []string{"public, max-age=10"}
)

type routeCode struct {
	route string
	code  int
}

func (a *API) count(route string, code int) {
	// Routes are the mux's fixed patterns, never raw paths, so the number
	// of series stays bounded whatever clients send. The counters are
	// kept by route and code, so that a request builds no name.
	k := routeCode{route, code}
	c, ok := a.requests.Load(k)
	if !ok {
		c, _ = a.requests.LoadOrStore(k, a.set.GetOrCreateCounter(`citysense_api_requests_total{route="`+route+`",code="`+strconv.Itoa(code)+`"}`))
	}
	c.(*metrics.Counter).Inc()
}

// statusWriter records the status for the request counter and drops the
// body of HEAD requests (net/http would too, but only after the handler
// encoded it).
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
	head  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.code, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	if s.head {
		return len(b), nil
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if err := a.opts.Ready(); err != nil {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
		return
	}
	writeText(w, http.StatusOK, "ok\n")
}

func (a *API) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	a.set.WritePrometheus(w)
	for _, s := range a.opts.Metrics {
		s.WritePrometheus(w)
	}
	metrics.WriteProcessMetrics(w)
}

// parseTime reads RFC 3339 or integer Unix seconds into ns.
func parseTime(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > math.MaxInt64/1_000_000_000 || n < math.MinInt64/1_000_000_000 {
			return 0, errors.New(strconv.Quote(s) + " is out of range")
		}
		return n * 1e9, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, errors.New(strconv.Quote(s) + " is neither RFC 3339 nor Unix seconds")
	}
	// UnixNano is undefined outside about 1678…2262.
	if t.Year() < 1678 || t.Year() > 2261 {
		return 0, errors.New(strconv.Quote(s) + " is out of range")
	}
	return t.UnixNano(), nil
}

// appendUnixSeconds writes whole seconds as an integer and anything finer
// as a decimal fraction, so that sub-second points stay distinct.
func appendUnixSeconds(b []byte, ns int64) []byte {
	u := uint64(ns)
	if ns < 0 {
		b = append(b, '-')
		u = -u
	}
	b = strconv.AppendUint(b, u/1e9, 10)
	frac := u % 1e9
	if frac == 0 {
		return b
	}
	var digits [10]byte
	f := strconv.AppendUint(digits[:0], frac+1e9, 10)[1:] // zero-padded to 9
	f = []byte(strings.TrimRight(string(f), "0"))
	b = append(b, '.')
	return append(b, f...)
}

// appendValue writes a field value as JSON: floats in Go's shortest
// round-trip form exactly as encoding/json does, integers as numbers.
func appendValue(b []byte, v protocols.Value) []byte {
	switch v.Kind() {
	case protocols.KindFloat:
		return appendFloat(b, v.FloatV())
	case protocols.KindInt:
		return strconv.AppendInt(b, v.IntV(), 10)
	case protocols.KindUint:
		return strconv.AppendUint(b, v.UintV(), 10)
	case protocols.KindBool:
		return strconv.AppendBool(b, v.BoolV())
	case protocols.KindString:
		return appendString(b, v.StringV())
	}
	return append(b, "null"...)
}

// appendFloat mirrors encoding/json's float64 encoding. The store holds
// only finite floats; anything else would be a bug, written as null so the
// document stays valid.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	fmt := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmt = 'e'
	}
	b = strconv.AppendFloat(b, f, fmt, -1, 64)
	if fmt == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML-safe: < > & as \u escapes). Tag values are nearly
// always plain ASCII, which is copied as it is.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// station GeoJSON, as in docs/contracts-skeleton.md.
type featureCollection struct {
	Type     string    `json:"type"`
	Features []feature `json:"features"`
}

type feature struct {
	Type       string          `json:"type"`
	Geometry   *pointGeometry  `json:"geometry"`
	Properties stationProperty `json:"properties"`
}

type pointGeometry struct {
	Type        string     `json:"type"`
	Coordinates [2]float64 `json:"coordinates"` // lon, lat
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write([]byte(msg))
}

// NewServer wraps h in an http.Server with every limit set, since the API
// faces the internet: slow or oversized requests must not pin connections
// or memory.
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = cli.Discard()
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// Long enough to stream a full answer of DefaultMaxPoints to a
		// slow client.
		WriteTimeout:   2 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn),
	}
	// Shutdown waits for requests to finish; live streams never do unless
	// told to.
	if a, ok := h.(*API); ok {
		srv.RegisterOnShutdown(a.closeLive)
	}
	return srv
}

// closeLive ends every open live stream.
func (a *API) closeLive() { a.stopOnce.Do(func() { close(a.liveStop) }) }

// Interface guards.
var _ http.Handler = (*API)(nil)
