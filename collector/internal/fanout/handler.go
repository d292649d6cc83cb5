package fanout

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/protocols"
)

// Prefix is where NewHandler's routes live on a node's HTTP server.
const Prefix = "/internal/v1/"

// maxRequestBody bounds a request body: 10,000 series of 100-byte keys
// take about 1.5 MB of JSON.
const maxRequestBody = 16 << 20

// tokenLabel is what the bearer token between nodes is derived from.
const tokenLabel = "citysense fanout v1"

// token derives the bearer token from the cluster secret.
func token(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tokenLabel))
	return hex.EncodeToString(m.Sum(nil))
}

// seriesJSON is a series key in a request: measurement, field and tags as
// [key, value] pairs.
type seriesJSON struct {
	M string      `json:"m"`
	F string      `json:"f"`
	T [][2]string `json:"t,omitempty"`
}

func toJSON(r *store.SeriesRef) seriesJSON {
	s := seriesJSON{M: r.Measurement, F: r.Field}
	if len(r.Tags) > 0 {
		s.T = make([][2]string, len(r.Tags))
		for i, t := range r.Tags {
			s.T[i] = [2]string{t.Key, t.Value}
		}
	}
	return s
}

type matcherJSON struct {
	Name  string `json:"name"`
	Op    string `json:"op"`
	Value string `json:"value"`
}

// lookupRequest is the body of POST lookup.
type lookupRequest struct {
	Partitions  []int         `json:"partitions"`
	Measurement string        `json:"measurement,omitempty"`
	Field       string        `json:"field"`
	Matchers    []matcherJSON `json:"matchers,omitempty"`
	MaxSeries   int           `json:"max_series,omitempty"`
}

// readRequest is the body of POST raw, rollups and latest. Answers name
// series by their position in Series.
type readRequest struct {
	Partitions []int        `json:"partitions"`
	Series     []seriesJSON `json:"series"`
	From       int64        `json:"from"`
	To         int64        `json:"to"`
	Res        int64        `json:"res,omitempty"` // ns; rollups only
}

var ops = map[string]store.MatchOp{"=": store.MatchEqual, "!=": store.MatchNotEqual, "=~": store.MatchRegexp, "!~": store.MatchNotRegexp}

// handler serves the internal endpoints from the node's own store.
type handler struct {
	o     Options
	token string
	log   *slog.Logger
	mux   *http.ServeMux
}

// NewHandler returns the internal endpoints, to be mounted at Prefix
// (/internal/v1/) on the node's HTTP server; they answer from o.Local,
// only for series whose partition (o.PartitionOf) the request lists.
// Every request needs the bearer token derived from o.Secret; with an
// empty secret every request is refused. See doc.go for the routes and the
// wire format.
func NewHandler(o Options) http.Handler {
	h := &handler{o: o, log: o.Log, mux: http.NewServeMux()}
	if h.log == nil {
		h.log = cli.Discard()
	}
	if len(o.Secret) > 0 {
		h.token = token(o.Secret)
	}
	h.mux.HandleFunc("POST "+Prefix+"lookup", h.lookup)
	h.mux.HandleFunc("POST "+Prefix+"raw", h.raw)
	h.mux.HandleFunc("POST "+Prefix+"rollups", h.rollups)
	h.mux.HandleFunc("POST "+Prefix+"latest", h.latest)
	h.mux.HandleFunc("GET "+Prefix+"stations", h.stations)
	h.mux.HandleFunc("GET "+Prefix+"groups", h.groups)
	h.mux.HandleFunc("GET "+Prefix+"export", h.export)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if h.token == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="citysense-internal"`)
		http.Error(w, "unauthorized: the internal API needs the cluster's token", http.StatusUnauthorized)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// decode reads a JSON body into v, answering 400 or 413 itself.
func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("request body over %d bytes", maxRequestBody), http.StatusRequestEntityTooLarge)
			return false
		}
		http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

// partSet checks the partition list and returns it as a set.
func (h *handler) partSet(w http.ResponseWriter, parts []int) ([]bool, bool) {
	n := h.o.partitions()
	set := make([]bool, n)
	for _, p := range parts {
		if p < 0 || p >= n {
			http.Error(w, fmt.Sprintf("partition %d: want 0 to %d", p, n-1), http.StatusBadRequest)
			return nil, false
		}
		set[p] = true
	}
	return set, true
}

// begin starts a streamed answer. Errors after it travel as error frames.
func begin(w http.ResponseWriter) *frameWriter {
	w.Header().Set("Content-Type", "application/x-citysense-frames")
	w.WriteHeader(http.StatusOK)
	fw := newFrameWriter(w)
	fw.flush() // the header now, so that the client's header timeout means "node alive"
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	return fw
}

// finish ends a streamed answer: the end frame, or an error frame.
func (h *handler) finish(fw *frameWriter, r *http.Request, err error) {
	if err == nil {
		err = fw.end()
		if err != nil {
			h.log.Debug("fanout: writing an answer", "path", r.URL.Path, "err", err)
		}
		return
	}
	code := codeInternal
	msg := err.Error()
	var amb *store.AmbiguousFieldError
	switch {
	case errors.As(err, &amb):
		code, msg = codeAmbiguous, amb.Field+"\x00"+strings.Join(amb.Measurements, "\x00")
	case errors.Is(err, store.ErrTooManySeries):
		code = codeTooManySeries
	case r.Context().Err() != nil:
		return // the client went away
	default:
		h.log.Warn("fanout: answering a peer failed", "path", r.URL.Path, "err", err)
	}
	fw.fail(code, msg)
}

func (h *handler) lookup(w http.ResponseWriter, r *http.Request) {
	var req lookupRequest
	if !h.decode(w, r, &req) {
		return
	}
	parts, ok := h.partSet(w, req.Partitions)
	if !ok {
		return
	}
	sel := store.Selector{Measurement: req.Measurement, Field: req.Field}
	if req.Field == "" {
		http.Error(w, "no field", http.StatusBadRequest)
		return
	}
	for _, m := range req.Matchers {
		op, ok := ops[m.Op]
		if !ok {
			http.Error(w, fmt.Sprintf("matcher %q: unknown operator %q", m.Name, m.Op), http.StatusBadRequest)
			return
		}
		mt, err := store.NewMatcher(m.Name, op, m.Value)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sel.Matchers = append(sel.Matchers, mt)
	}
	fw := begin(w)
	ms, refs, err := localLookup(h.o, sel, parts, req.MaxSeries)
	if err == nil && req.Measurement == "" {
		err = fw.measurements(ms)
	}
	for i := 0; err == nil && i < len(refs); i++ {
		err = fw.ref(refs[i].Measurement, refs[i].Field, refs[i].Tags)
	}
	h.finish(fw, r, err)
}

// localLookup answers sel from the node's store for the partitions in
// parts: the measurements holding sel.Field (when sel names none, for the
// cluster-wide ambiguity check), and the refs, at most maxSeries (zero: no
// bound).
func localLookup(o Options, sel store.Selector, parts []bool, maxSeries int) ([]string, []store.SeriesRef, error) {
	var ms []string
	if sel.Measurement == "" {
		groups, err := o.Local.Groups()
		if err != nil {
			return nil, nil, err
		}
		for _, g := range groups {
			if g.Field == sel.Field {
				ms = append(ms, g.Measurement)
			}
		}
		if len(ms) > 1 {
			return nil, nil, &store.AmbiguousFieldError{Field: sel.Field, Measurements: ms}
		}
	}
	// The store's bound would count the series of partitions not asked
	// for (stale copies); the bound is applied after filtering.
	sel.MaxSeries = 0
	refs, err := o.Local.Lookup(sel)
	if err != nil {
		return nil, nil, err
	}
	out := refs[:0]
	for _, ref := range refs {
		if p := o.PartitionOf(ref.Measurement, ref.Tags); p >= 0 && p < len(parts) && parts[p] {
			out = append(out, ref)
		}
	}
	if maxSeries > 0 && len(out) > maxSeries {
		return nil, nil, fmt.Errorf("%w: more than %d", store.ErrTooManySeries, maxSeries)
	}
	return ms, out, nil
}

// resolver is the optional method of a Local that maps series keys to its
// refs in one step (*store.Store has it).
type resolver interface {
	Resolve(keys []store.SeriesKey) []store.SeriesRef
}

// resolve maps keys to the store's refs; a key it does not hold gets the
// zero ref.
func resolve(l Local, keys []store.SeriesKey) ([]store.SeriesRef, error) {
	if r, ok := l.(resolver); ok {
		return r.Resolve(keys), nil
	}
	// Without Resolve: a lookup per key by all its tags, keeping the
	// series whose key is exactly it.
	out := make([]store.SeriesRef, len(keys))
	for i, k := range keys {
		tags := make(map[string]string, len(k.Tags))
		for _, t := range k.Tags {
			tags[t.Key] = t.Value
		}
		refs, err := l.Lookup(store.Selector{Measurement: k.Measurement, Field: k.Field, Tags: tags})
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if slices.Equal(r.Tags, k.Tags) {
				out[i] = r
				break
			}
		}
	}
	return out, nil
}

// readRefs decodes a read request's series, resolved to local refs, with
// their positions in the request; series of partitions not asked for, and
// series the store does not hold, are left out.
func (h *handler) readRefs(w http.ResponseWriter, req *readRequest) ([]store.SeriesRef, []int, bool) {
	parts, ok := h.partSet(w, req.Partitions)
	if !ok {
		return nil, nil, false
	}
	if req.From > req.To {
		http.Error(w, "from is after to", http.StatusBadRequest)
		return nil, nil, false
	}
	keys := make([]store.SeriesKey, len(req.Series))
	for i, s := range req.Series {
		if s.M == "" || s.F == "" {
			http.Error(w, fmt.Sprintf("series %d: no measurement or field", i), http.StatusBadRequest)
			return nil, nil, false
		}
		k := store.SeriesKey{Measurement: s.M, Field: s.F}
		if len(s.T) > 0 {
			k.Tags = make([]protocols.Tag, len(s.T))
			for j, t := range s.T {
				k.Tags[j] = protocols.Tag{Key: t[0], Value: t[1]}
			}
		}
		keys[i] = k
	}
	refs, err := resolve(h.o.Local, keys)
	if err != nil {
		http.Error(w, "resolving series: "+err.Error(), http.StatusInternalServerError)
		return nil, nil, false
	}
	out, pos := refs[:0], make([]int, 0, len(refs))
	for i, ref := range refs {
		if ref.Measurement == "" {
			continue
		}
		if p := h.o.PartitionOf(ref.Measurement, ref.Tags); p < 0 || p >= len(parts) || !parts[p] {
			continue
		}
		out = append(out, ref)
		pos = append(pos, i)
	}
	return out, pos, true
}

func (h *handler) raw(w http.ResponseWriter, r *http.Request) {
	h.serveRead(w, r, nil, func(ctx context.Context, req *readRequest, refs []store.SeriesRef, pos []int, fw *frameWriter) error {
		return h.o.Local.ReadRaw(ctx, refs, req.From, req.To, func(i int, smp []store.Sample) error {
			return fw.samples(pos[i], smp)
		})
	})
}

func (h *handler) rollups(w http.ResponseWriter, r *http.Request) {
	check := func(req *readRequest) error {
		if res := time.Duration(req.Res); res != time.Minute && res != time.Hour {
			return fmt.Errorf("res %d: want 60000000000 (1m) or 3600000000000 (1h)", req.Res)
		}
		return nil
	}
	h.serveRead(w, r, check, func(ctx context.Context, req *readRequest, refs []store.SeriesRef, pos []int, fw *frameWriter) error {
		return h.o.Local.ReadRollups(ctx, refs, time.Duration(req.Res), req.From, req.To, func(i int, bs []store.Bucket) error {
			return fw.buckets(pos[i], bs)
		})
	})
}

func (h *handler) latest(w http.ResponseWriter, r *http.Request) {
	h.serveRead(w, r, nil, func(ctx context.Context, req *readRequest, refs []store.SeriesRef, pos []int, fw *frameWriter) error {
		return h.o.Local.Latest(ctx, refs, req.From, req.To, func(i int, s store.Sample) error {
			return fw.latest(pos[i], s)
		})
	})
}

// serveRead decodes a read request, checks it (check may be nil; its error
// is a 400), resolves its series and streams what read writes.
func (h *handler) serveRead(w http.ResponseWriter, r *http.Request, check func(*readRequest) error,
	read func(ctx context.Context, req *readRequest, refs []store.SeriesRef, pos []int, fw *frameWriter) error) {
	var req readRequest
	if !h.decode(w, r, &req) {
		return
	}
	if check != nil {
		if err := check(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	refs, pos, ok := h.readRefs(w, &req)
	if !ok {
		return
	}
	fw := begin(w)
	h.finish(fw, r, read(r.Context(), &req, refs, pos, fw))
}

func (h *handler) stations(w http.ResponseWriter, r *http.Request) {
	serveList(h, w, r, h.o.Local.Stations, (*frameWriter).station)
}

func (h *handler) groups(w http.ResponseWriter, r *http.Request) {
	serveList(h, w, r, h.o.Local.Groups, (*frameWriter).group)
}

// serveList answers with one frame per item of the local list.
func serveList[T any](h *handler, w http.ResponseWriter, r *http.Request, list func() ([]T, error), frame func(*frameWriter, T) error) {
	items, err := list()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fw := begin(w)
	for i := 0; err == nil && i < len(items); i++ {
		err = frame(fw, items[i])
	}
	h.finish(fw, r, err)
}

// export streams every raw point of one partition older than before:
// first a ref frame per series (numbered from 0 in order), then sample
// frames naming them.
func (h *handler) export(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := strconv.Atoi(q.Get("partition"))
	if err != nil || p < 0 || p >= h.o.partitions() {
		http.Error(w, fmt.Sprintf("partition %q: want 0 to %d", q.Get("partition"), h.o.partitions()-1), http.StatusBadRequest)
		return
	}
	before, err := strconv.ParseInt(q.Get("before"), 10, 64)
	if err != nil {
		http.Error(w, fmt.Sprintf("before %q: want ns since the Unix epoch", q.Get("before")), http.StatusBadRequest)
		return
	}
	refs, err := partitionSeries(h.o, p)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fw := begin(w)
	for i := 0; err == nil && i < len(refs); i++ {
		err = fw.ref(refs[i].Measurement, refs[i].Field, refs[i].Tags)
	}
	if err == nil && before > math.MinInt64 {
		err = h.o.Local.ReadRaw(r.Context(), refs, math.MinInt64, before-1, fw.samples)
	}
	h.finish(fw, r, err)
}

// partitionSeries lists every series of partition p the store holds.
func partitionSeries(o Options, p int) ([]store.SeriesRef, error) {
	groups, err := o.Local.Groups()
	if err != nil {
		return nil, err
	}
	var out []store.SeriesRef
	for _, g := range groups {
		refs, err := o.Local.Lookup(store.Selector{Measurement: g.Measurement, Field: g.Field})
		if err != nil {
			return nil, fmt.Errorf("series of %s %s: %w", g.Measurement, g.Field, err)
		}
		for _, r := range refs {
			if o.PartitionOf(r.Measurement, r.Tags) == p {
				out = append(out, r)
			}
		}
	}
	return out, nil
}
