package sta

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/citysense/citysense/enrich/schema"
	"github.com/citysense/citysense/enrich/units"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/protocols"
)

// Prefix is the path the service is mounted at.
const Prefix = "/sta/v1.1"

// Defaults of Options.
const (
	DefaultSnapshotTTL = 10 * time.Second
	DefaultMaxScan     = 5_000_000
	DefaultMaxEntities = 200_000
	DefaultTimeout     = 30 * time.Second
)

// Conformance lists the conformance classes this server implements: the
// read side only (no create/update/delete, MQTT, batch requests or
// MultiDatastreams).
var Conformance = []string{
	"http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
	"http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
	"http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
	"http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array",
}

// Options configure the handler.
type Options struct {
	// Store holds the series and their points; required.
	Store Store
	// Registry is the station registry; nil serves only stations seen
	// in the data.
	Registry Registry
	// Contracts are the data contracts (units, descriptions, types); nil
	// means none.
	Contracts func() []schema.Contract
	// Units are the conversions of the units stage: a field converted
	// there has its target unit when no contract names one. Nil means
	// none.
	Units func() []units.Rule
	// PublicURL is the externally visible root of the collector, e.g.
	// https://data.example.city; links start with it plus Prefix. Empty:
	// links follow the request and its X-Forwarded-Proto, -Host and
	// -Prefix headers.
	PublicURL string
	// Now is the clock of now() in $filter; nil means time.Now.
	Now func() time.Time
	// SnapshotTTL is how long the entities other than Observations are
	// reused before they are read again; zero means DefaultSnapshotTTL.
	SnapshotTTL time.Duration
	// MaxScan bounds the raw points one request reads; zero means
	// DefaultMaxScan.
	MaxScan int
	// MaxEntities bounds the entities of one answer, expanded ones
	// included; zero means DefaultMaxEntities.
	MaxEntities int
	// Timeout bounds one request; zero means DefaultTimeout.
	Timeout time.Duration
}

// Handler serves SensorThings under Prefix.
type Handler struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	snap *model
}

// New returns the handler. A nil log discards.
func New(opts Options, log *slog.Logger) *Handler {
	if log == nil {
		log = cli.Discard()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SnapshotTTL <= 0 {
		opts.SnapshotTTL = DefaultSnapshotTTL
	}
	if opts.MaxScan <= 0 {
		opts.MaxScan = DefaultMaxScan
	}
	if opts.MaxEntities <= 0 {
		opts.MaxEntities = DefaultMaxEntities
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	return &Handler{opts: opts, log: log.With("component", "sta")}
}

// model returns the current snapshot, rebuilding it when it is older than
// SnapshotTTL. Requests share one snapshot; it is never modified.
func (h *Handler) model() (*model, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if h.snap != nil && now.Sub(h.snap.built) < h.opts.SnapshotTTL {
		return h.snap, nil
	}
	var contracts []schema.Contract
	if h.opts.Contracts != nil {
		contracts = h.opts.Contracts()
	}
	var rules []units.Rule
	if h.opts.Units != nil {
		rules = h.opts.Units()
	}
	m, err := buildModel(h.opts.Store, h.opts.Registry, contracts, rules, now)
	if err != nil {
		return nil, err
	}
	h.snap = m
	return m, nil
}

var (
	hostRe   = regexp.MustCompile(`^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)
	prefixRe = regexp.MustCompile(`^(/[A-Za-z0-9._~\-]+)*/?$`)
)

// base is the URL of the service root as the client sees it.
func (h *Handler) base(r *http.Request) string {
	if h.opts.PublicURL != "" {
		return h.opts.PublicURL + Prefix
	}
	first := func(k string) string {
		v, _, _ := strings.Cut(r.Header.Get(k), ",")
		return strings.TrimSpace(v)
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	if p := strings.ToLower(first("X-Forwarded-Proto")); p == "http" || p == "https" {
		proto = p
	}
	host := r.Host
	if fh := first("X-Forwarded-Host"); hostRe.MatchString(fh) {
		host = fh
	}
	if !hostRe.MatchString(host) {
		host = "localhost"
	}
	prefix := ""
	if p := first("X-Forwarded-Prefix"); p != "" && prefixRe.MatchString(p) {
		prefix = strings.TrimRight(p, "/")
	}
	return proto + "://" + host + prefix + Prefix
}

// req is one request being answered.
type req struct {
	h    *Handler
	m    *model
	base string
	b    *budget
	ec   *evalCtx
	oq   *obsQuery
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "SensorThings here is read-only")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	body, err := h.answer(ctx, r)
	if err != nil {
		var br *badRequest
		var nf *notFound
		switch {
		case errors.As(err, &br):
			writeError(w, http.StatusBadRequest, br.msg)
		case errors.As(err, &nf):
			writeError(w, http.StatusNotFound, nf.msg)
		case errors.Is(err, context.DeadlineExceeded):
			writeError(w, http.StatusServiceUnavailable, "the query took longer than "+h.opts.Timeout.String()+"; narrow it")
		case ctx.Err() != nil:
			// The client went away.
		default:
			h.log.Error("sta: request failed", "path", r.URL.Path, "err", err)
			writeError(w, http.StatusInternalServerError, "internal error")
		}
		return
	}
	if raw, ok := body.(rawValue); ok {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=10")
		w.Write([]byte(raw))
		return
	}
	b, err := appendJSON(make([]byte, 0, 4096), body)
	if err != nil {
		h.log.Error("sta: encode", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=10")
	w.Write(append(b, '\n'))
}

type notFound struct{ msg string }

func (e *notFound) Error() string { return e.msg }

// rawValue is the answer of .../property/$value.
type rawValue string

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// segment is one part of a resource path: Name or Name(key).
type segment struct {
	name   string
	key    string
	hasKey bool
}

func parseSegment(s string) (segment, error) {
	i := strings.IndexByte(s, '(')
	if i < 0 {
		return segment{name: s}, nil
	}
	if !strings.HasSuffix(s, ")") {
		return segment{}, bad("bad path segment %q", s)
	}
	seg := segment{name: s[:i], hasKey: true}
	k := s[i+1 : len(s)-1]
	switch {
	case len(k) >= 2 && k[0] == '\'' && k[len(k)-1] == '\'':
		v, n, err := lexString(k)
		if err != nil || n != len(k) {
			return segment{}, bad("bad id %s", k)
		}
		seg.key = v
	case k != "" && strings.Trim(k, "0123456789") == "":
		seg.key = k
	default:
		return segment{}, bad("bad id %q: quote string ids, as in Things('s0001')", k)
	}
	return seg, nil
}

// quoteID is an id as a resource path writes it.
func quoteID(id string) string {
	return "('" + url.PathEscape(strings.ReplaceAll(id, "'", "''")) + "')"
}

func (r *req) selfLink(e ent) string { return r.base + "/" + e.set.name + quoteID(e.id()) }

// source is a collection: a whole set, or what one entity navigates to.
type source struct {
	set    *setDef
	parent *ent
	nav    *navDef
	link   string // the collection's URL, without options
}

func (h *Handler) answer(ctx context.Context, r *http.Request) (any, error) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), Prefix)
	if !ok {
		return nil, &notFound{"not a SensorThings path: " + r.URL.Path}
	}
	opts, err := parseRawQuery(r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	base := h.base(r)
	rest = strings.Trim(rest, "/")
	if rest == "" {
		value := make([]obj, len(allSets))
		for i, s := range allSets {
			value[i] = obj{{"name", s.name}, {"url", base + "/" + s.name}}
		}
		return obj{{"value", value}, {"serverSettings", obj{{"conformance", Conformance}}}}, nil
	}
	m, err := h.model()
	if err != nil {
		return nil, err
	}
	rq := &req{h: h, m: m, base: base,
		b:  &budget{scan: h.opts.MaxScan, maxScan: h.opts.MaxScan, ents: h.opts.MaxEntities, maxEnts: h.opts.MaxEntities},
		ec: &evalCtx{now: h.opts.Now().UnixNano()}}
	rq.oq = &obsQuery{src: h.opts.Store, m: m, b: rq.b, ec: rq.ec}

	parts := strings.Split(rest, "/")
	if len(parts) > 8 {
		return nil, bad("resource path longer than 8 segments")
	}
	segs := make([]segment, len(parts))
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, bad("bad escape in path segment %q", p)
		}
		if segs[i], err = parseSegment(u); err != nil {
			return nil, err
		}
	}
	set := setByName(segs[0].name)
	if set == nil {
		return nil, &notFound{"no entity set " + strconvQuote(segs[0].name)}
	}
	src := source{set: set, link: base + "/" + set.name}
	var cur *ent
	if segs[0].hasKey {
		e, err := rq.get(ctx, set, segs[0].key)
		if err != nil {
			return nil, err
		}
		cur = &e
	}
	for i := 1; i < len(segs); i++ {
		sg := segs[i]
		if cur == nil {
			return nil, bad("%s is a collection; name one entity by its id first, as in %s('id')/%s", src.set.name, src.set.name, sg.name)
		}
		if sg.name == "$ref" {
			return nil, bad("$ref is not supported")
		}
		if nav := cur.set.nav(sg.name); nav != nil {
			link := rq.selfLink(*cur) + "/" + nav.name
			if !nav.many {
				if sg.hasKey {
					return nil, bad("%s is one entity; it takes no id", nav.name)
				}
				targets := rq.navigate(*cur, nav)
				if len(targets) == 0 {
					return nil, &notFound{rq.selfLink(*cur) + " has no " + nav.name}
				}
				cur = &targets[0]
				continue
			}
			parent := *cur
			src, cur = source{set: nav.target, parent: &parent, nav: nav, link: link}, nil
			if sg.hasKey {
				e, err := rq.get(ctx, nav.target, sg.key)
				if err != nil {
					return nil, err
				}
				if !rq.related(parent, nav, e) {
					return nil, &notFound{link + quoteID(sg.key) + " does not exist"}
				}
				cur = &e
			}
			continue
		}
		if cur.set.hasProp(sg.name) && !sg.hasKey {
			v := rq.propJSON(*cur, sg.name)
			if i == len(segs)-1 {
				if len(opts) > 0 {
					return nil, bad("query options do not apply to a property")
				}
				return obj{{sg.name, v}}, nil
			}
			if i == len(segs)-2 && segs[i+1].name == "$value" && !segs[i+1].hasKey {
				if len(opts) > 0 {
					return nil, bad("query options do not apply to a property")
				}
				switch v := v.(type) {
				case string:
					return rawValue(v), nil
				case nil:
					return rawValue(""), nil
				}
				b, err := marshal(v)
				if err != nil {
					return nil, err
				}
				return rawValue(b), nil
			}
			return nil, bad("nothing follows the property %s except $value", sg.name)
		}
		return nil, &notFound{cur.set.single + " has no property or navigation " + strconvQuote(sg.name)}
	}
	if cur != nil {
		for k := range opts {
			if k != "$select" && k != "$expand" {
				return nil, bad("%s applies to collections, not to one entity", k)
			}
		}
		q, err := parseQuery(opts, cur.set, 0)
		if err != nil {
			return nil, err
		}
		return rq.render(ctx, *cur, q)
	}
	q, err := parseQuery(opts, src.set, 0)
	if err != nil {
		return nil, err
	}
	return rq.collection(ctx, src, q)
}

func strconvQuote(s string) string { return strconv.Quote(s) }

// get finds one entity by id.
func (r *req) get(ctx context.Context, s *setDef, id string) (ent, error) {
	if s == setObservations {
		e, ok, err := r.oq.get(ctx, id)
		if err != nil {
			return ent{}, err
		}
		if !ok {
			return ent{}, &notFound{"no Observation with id " + strconv.Quote(id)}
		}
		return e, nil
	}
	e, ok := r.m.get(s, id)
	if !ok {
		return ent{}, &notFound{"no " + s.single + " with id " + strconv.Quote(id)}
	}
	return e, nil
}

// navigate follows a navigation that does not lead to Observations.
func (r *req) navigate(e ent, nav *navDef) []ent { return r.m.navigate(e, nav) }

// related reports whether parent reaches e by nav.
func (r *req) related(parent ent, nav *navDef, e ent) bool {
	if nav.target == setObservations {
		return slices.Contains(obsCandidates(parent), e.ds)
	}
	for _, x := range r.m.navigate(parent, nav) {
		if x.id() == e.id() {
			return true
		}
	}
	return false
}

// obsCandidates are the Datastreams whose Observations parent reaches.
func obsCandidates(parent ent) []*dstream {
	if parent.set == setDatastreams {
		return []*dstream{parent.ds}
	}
	return parent.st.dss // a FeatureOfInterest: its station's
}

// propJSON is property p of e as the answer writes it.
func (r *req) propJSON(e ent, p string) any {
	if e.set == setObservations && p == "result" {
		return resultJSON(e)
	}
	return r.m.prop(e, p)
}

// resultJSON keeps integers exact: filterValue makes them float64.
func resultJSON(e ent) any {
	switch e.v.Kind() {
	case protocols.KindInt:
		return json.Number(strconv.FormatInt(e.v.IntV(), 10))
	case protocols.KindUint:
		return json.Number(strconv.FormatUint(e.v.UintV(), 10))
	}
	return filterValue(e.v)
}

// collection answers a collection: filter, count, order, skip, top, then
// expand and select each entity.
func (r *req) collection(ctx context.Context, src source, q *query) (obj, error) {
	var items []ent
	count := -1
	var next string
	if src.set == setObservations {
		cands := r.m.dss
		if src.parent != nil {
			cands = obsCandidates(*src.parent)
		}
		page, err := r.oq.run(ctx, cands, q)
		if err != nil {
			return nil, err
		}
		items = page.items
		if q.count {
			count = page.count
		}
		if page.more {
			next = nextLink(src.link, q, page.next, page.nextSkip)
		}
	} else {
		var all []ent
		if src.parent != nil {
			all = r.m.navigate(*src.parent, src.nav)
		} else {
			all = r.m.all(src.set)
		}
		if q.filter != nil {
			kept := all[:0:0]
			for _, e := range all {
				if truthy(r.ec.eval(q.filter, entEnv{r.m, e})) {
					kept = append(kept, e)
				}
			}
			all = kept
		}
		if q.count {
			count = len(all)
		}
		sortEnts(r.m, r.ec, all, q.orderby)
		if q.skip < len(all) {
			items = all[q.skip:min(len(all), q.skip+q.top)]
		}
		if len(all) > q.skip+q.top && q.top > 0 {
			next = nextLink(src.link, q, nil, q.skip+q.top)
		}
	}
	out := obj{}
	if q.dataArray {
		return r.dataArray(items, q, count, next)
	}
	if count >= 0 {
		out = append(out, kv{"@iot.count", count})
	}
	value := make([]obj, 0, len(items))
	for _, e := range items {
		o, err := r.render(ctx, e, q)
		if err != nil {
			return nil, err
		}
		value = append(value, o)
	}
	out = append(out, kv{"value", value})
	if next != "" {
		out = append(out, kv{"@iot.nextLink", next})
	}
	return out, nil
}

// nextLink is the collection's URL with every option of q, continuing at
// the cursor or at skip.
func nextLink(link string, q *query, c *cursor, skip int) string {
	var parts []string
	add := func(k, v string) { parts = append(parts, k+"="+escapeOpt(v)) }
	if q.filterSrc != "" {
		add("$filter", q.filterSrc)
	}
	if q.count {
		add("$count", "true")
	}
	if q.orderSrc != "" {
		add("$orderby", q.orderSrc)
	}
	if skip > 0 {
		add("$skip", strconv.Itoa(skip))
	}
	add("$top", strconv.Itoa(q.top))
	if q.selectSrc != "" {
		add("$select", q.selectSrc)
	}
	if q.expandSrc != "" {
		add("$expand", q.expandSrc)
	}
	if q.dataArray {
		add("$resultFormat", "dataArray")
	}
	if c != nil {
		add("$skiptoken", c.encode())
	}
	return link + "?" + strings.Join(parts, "&")
}

// escapeOpt escapes a query option value for a link: less than
// url.QueryEscape, so that links stay readable, enough for parseRawQuery
// and for clients.
func escapeOpt(v string) string {
	const keep = "-._~!$'()*,;:@/="
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte(keep, c) >= 0:
			b.WriteByte(c)
		default:
			const hex = "0123456789ABCDEF"
			b.Write([]byte{'%', hex[c>>4], hex[c&15]})
		}
	}
	return b.String()
}

// render writes one entity with $select and $expand.
func (r *req) render(ctx context.Context, e ent, q *query) (obj, error) {
	if err := r.b.entity(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	want := func(k string) bool { return q.selects == nil || slices.Contains(q.selects, k) }
	self := r.selfLink(e)
	o := make(obj, 0, 4+len(e.set.props)+len(e.set.navs))
	if want("@iot.id") {
		o = append(o, kv{"@iot.id", e.id()})
	}
	if want("@iot.selfLink") {
		o = append(o, kv{"@iot.selfLink", self})
	}
	for _, p := range e.set.props {
		if want(p) {
			o = append(o, kv{p, r.propJSON(e, p)})
		}
	}
	for _, n := range e.set.navs {
		if want(n.name) {
			o = append(o, kv{n.name + "@iot.navigationLink", self + "/" + n.name})
		}
	}
	for _, it := range q.expand {
		nav := e.set.nav(it.nav)
		if !nav.many {
			targets := r.navigate(e, nav)
			if len(targets) == 0 {
				o = append(o, kv{nav.name, nil})
				continue
			}
			sub, err := r.render(ctx, targets[0], it.q)
			if err != nil {
				return nil, err
			}
			o = append(o, kv{nav.name, sub})
			continue
		}
		parent := e
		sub, err := r.collection(ctx, source{set: nav.target, parent: &parent, nav: nav, link: self + "/" + nav.name}, it.q)
		if err != nil {
			return nil, err
		}
		for _, x := range sub {
			switch x.k {
			case "@iot.count":
				o = append(o, kv{nav.name + "@iot.count", x.v})
			case "value":
				o = append(o, kv{nav.name, x.v})
			case "@iot.nextLink":
				o = append(o, kv{nav.name + "@iot.nextLink", x.v})
			}
		}
	}
	return o, nil
}

// dataArray writes Observations grouped by Datastream, each as an array
// of the selected components.
func (r *req) dataArray(items []ent, q *query, count int, next string) (obj, error) {
	comps := []string{"id", "phenomenonTime", "result"}
	if q.selects != nil {
		comps = comps[:0]
		for _, s := range q.selects {
			switch s {
			case "@iot.id":
				comps = append(comps, "id")
			case "phenomenonTime", "resultTime", "result":
				comps = append(comps, s)
			default:
				return nil, bad("$select: %s is not a dataArray component (id, phenomenonTime, resultTime, result)", s)
			}
		}
	}
	type group struct {
		ds   *dstream
		rows [][]any
	}
	var groups []*group
	byDS := map[*dstream]*group{}
	for _, e := range items {
		if err := r.b.entity(); err != nil {
			return nil, err
		}
		g := byDS[e.ds]
		if g == nil {
			g = &group{ds: e.ds}
			byDS[e.ds] = g
			groups = append(groups, g)
		}
		row := make([]any, len(comps))
		for i, c := range comps {
			if c == "id" {
				row[i] = e.id()
			} else {
				row[i] = r.propJSON(e, c)
			}
		}
		g.rows = append(g.rows, row)
	}
	out := obj{}
	if count >= 0 {
		out = append(out, kv{"@iot.count", count})
	}
	value := make([]obj, len(groups))
	for i, g := range groups {
		value[i] = obj{
			{"Datastream@iot.navigationLink", r.base + "/Datastreams" + quoteID(g.ds.id)},
			{"components", comps},
			{"dataArray@iot.count", len(g.rows)},
			{"dataArray", g.rows},
		}
	}
	out = append(out, kv{"value", value})
	if next != "" {
		out = append(out, kv{"@iot.nextLink", next})
	}
	return out, nil
}

// Interface guards.
var _ http.Handler = (*Handler)(nil)
