package api

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/citysense/citysense/collector/internal/query"
	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

// seriesParams are the query parameters /api/v1/series understands;
// latestParams those of /api/v1/latest. Unknown ones (cache busters) are
// ignored.
var (
	seriesParams = map[string]bool{
		"measurement": true, "field": true, "station": true, "district": true,
		"from": true, "to": true, "time_format": true, "format": true,
		"step": true, "agg": true, "group_by": true, "limit": true, "cursor": true,
	}
	latestParams = map[string]bool{
		"measurement": true, "field": true, "station": true, "district": true,
		"at": true, "window": true, "time_format": true,
	}
)

// Bounds of one request's selectors.
const (
	maxListItems = 100 // station=a,b,c and group_by=district,...
	maxGroupBy   = 4
)

// maxCursorLen bounds a cursor, which carries a series key.
const maxCursorLen = 2048

// queryTimeout bounds the work of one query; the engine checks the
// context between blocks.
const queryTimeout = 30 * time.Second

// params reads a request's query string strictly: malformed escapes and
// ';' separators (which url.Query would drop silently), repeated and
// overlong values are errors. Only names in known are kept.
func params(r *http.Request, known map[string]bool) (map[string]string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errors.New("malformed query string")
	}
	p := map[string]string{}
	for name, vals := range q {
		if !known[name] {
			continue
		}
		if len(vals) > 1 {
			return nil, errors.New(name + " given more than once")
		}
		limit := maxParamLen
		if name == "cursor" {
			limit = maxCursorLen // it carries a series key
		}
		if len(vals[0]) > limit {
			return nil, errors.New(name + " is longer than " + strconv.Itoa(limit) + " bytes")
		}
		p[name] = vals[0]
	}
	return p, nil
}

// list splits a comma-separated value, refusing empty items and more
// than maxListItems.
func list(name, v string) ([]string, error) {
	items := strings.Split(v, ",")
	if len(items) > maxListItems {
		return nil, errors.New(name + ": more than " + strconv.Itoa(maxListItems) + " values")
	}
	for _, it := range items {
		if it == "" {
			return nil, errors.New(name + ": empty value in " + strconv.Quote(v))
		}
	}
	return items, nil
}

// matchers turns station= and district= into tag matchers: one value is
// an equality, a comma-separated list an anchored alternation of literal
// values (never a user-supplied regular expression).
func matchers(p map[string]string) ([]store.Matcher, error) {
	var ms []store.Matcher
	for _, tag := range []string{"station", "district"} {
		v, ok := p[tag]
		if !ok {
			continue
		}
		items, err := list(tag, v)
		if err != nil {
			return nil, err
		}
		var m store.Matcher
		if len(items) == 1 {
			m, err = store.NewMatcher(tag, store.MatchEqual, v)
		} else {
			for i := range items {
				items[i] = regexp.QuoteMeta(items[i])
			}
			m, err = store.NewMatcher(tag, store.MatchRegexp, strings.Join(items, "|"))
		}
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// parseStep reads a bucket width: a Go duration or whole days ("1d").
func parseStep(s string) (time.Duration, error) {
	d, err := confx.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errors.New("step: " + strconv.Quote(s) + " is not a duration such as 1m, 1h or 1d")
	}
	return d, nil
}

// queryError answers an engine error: the request's fault is a 400, a
// budget (too many points or series) a 400 naming it, as the public API
// promises for every query budget; anything else a logged 500.
func (a *API) queryError(w http.ResponseWriter, r *http.Request, err error) {
	var amb *store.AmbiguousFieldError
	switch {
	case errors.As(err, &amb):
		writeError(w, http.StatusBadRequest, amb.Error())
	case errors.Is(err, query.ErrBadRequest):
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), query.ErrBadRequest.Error()+": "))
	case errors.Is(err, query.ErrTooManyPoints), errors.Is(err, query.ErrTooManySeries):
		msg := strings.TrimPrefix(err.Error(), "query: ")
		for _, e := range []error{query.ErrTooManyPoints, query.ErrTooManySeries} {
			msg = strings.TrimSuffix(msg, ": "+e.Error())
		}
		writeError(w, http.StatusBadRequest, msg)
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, "the query took longer than "+queryTimeout.String()+"; narrow it")
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
	default:
		a.log.Error("api: query", "err", err, "query", r.URL.RawQuery)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// timeRange reads from and to (RFC 3339 or Unix seconds), by default the
// last 24 hours and the next hour.
func (a *API) timeRange(p map[string]string) (from, to int64, err error) {
	now := a.opts.Now()
	from, to = now.Add(-24*time.Hour).UnixNano(), now.Add(time.Hour).UnixNano()
	if s, ok := p["from"]; ok {
		if from, err = parseTime(s); err != nil {
			return 0, 0, errors.New("from: " + err.Error())
		}
	}
	if s, ok := p["to"]; ok {
		if to, err = parseTime(s); err != nil {
			return 0, 0, errors.New("to: " + err.Error())
		}
	}
	if from > to {
		return 0, 0, errors.New("from is after to")
	}
	return from, to, nil
}

func timeFormat(p map[string]string, def bool) (rfc3339 bool, err error) {
	switch p["time_format"] {
	case "":
		return def, nil
	case "unix":
		return false, nil
	case "rfc3339":
		return true, nil
	}
	return false, errors.New("time_format must be unix or rfc3339")
}

// series answers GET /api/v1/series: raw points, or with step= buckets
// aggregated by agg= (mean by default), optionally merged by group_by=,
// from raw points or the 1-minute/1-hour rollups as the step allows.
// localScope in a request's context makes series read this node's own
// store (GET /admin/v1/local/series).
type localScope struct{}

func (a *API) series(w http.ResponseWriter, r *http.Request) {
	p, err := params(r, seriesParams)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	req, csv, rfc3339, err := a.seriesRequest(p)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, after, paged, err := pageParams(p)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	eng := a.query
	if r.Context().Value(localScope{}) != nil {
		eng = a.localQuery
	}
	var res query.Result
	var next *query.Cursor
	if paged {
		res, next, err = eng.RawPage(ctx, req, after, limit)
	} else {
		res, err = eng.Series(ctx, req)
	}
	if err != nil {
		a.queryError(w, r, err)
		return
	}
	defer res.Release() // written below and dropped
	h := w.Header()
	h["Cache-Control"] = hdrPublic10s
	nextCursor := ""
	if next != nil {
		nextCursor = encodeCursor(next)
		q := r.URL.Query()
		q.Set("cursor", nextCursor)
		h.Set("Link", "<"+r.URL.Path+"?"+q.Encode()+`>; rel="next"`)
	}
	if csv {
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="`+csvName(req)+`"`)
		writeCSV(w, res, rfc3339, a.log)
		return
	}
	h["Content-Type"] = hdrJSON
	writeSeriesJSON(w, res, rfc3339, nextCursor, a.log)
}

// Raw points page by page: limit= points a page (at most the answer
// limit), cursor= where the previous page ended.
const defaultPageLimit = 10_000

// pageParams reads limit and cursor; paged is false when neither is given.
func pageParams(p map[string]string) (limit int, after *query.Cursor, paged bool, err error) {
	ls, hasLimit := p["limit"]
	cs, hasCursor := p["cursor"]
	if !hasLimit && !hasCursor {
		return 0, nil, false, nil
	}
	limit = defaultPageLimit
	if hasLimit {
		if limit, err = strconv.Atoi(ls); err != nil || limit < 1 {
			return 0, nil, false, errors.New("limit: " + strconv.Quote(ls) + " is not a positive number")
		}
	}
	if hasCursor {
		if after, err = decodeCursor(cs); err != nil {
			return 0, nil, false, err
		}
	}
	return limit, after, true, nil
}

// A cursor is base64url of the series key's length and bytes and the
// last time (varints): opaque to clients, checked when it comes back.
func encodeCursor(c *query.Cursor) string {
	b := binary.AppendUvarint(nil, uint64(len(c.Key)))
	b = append(b, c.Key...)
	b = binary.AppendVarint(b, c.Time)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (*query.Cursor, error) {
	bad := errors.New("cursor: malformed; pass the next cursor of the previous page unchanged")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, bad
	}
	key := string(b[k : k+int(n)])
	t, m := binary.Varint(b[k+int(n):])
	if m <= 0 || k+int(n)+m != len(b) {
		return nil, bad
	}
	return &query.Cursor{Key: key, Time: t}, nil
}

func (a *API) seriesRequest(p map[string]string) (req query.Request, csv, rfc3339 bool, err error) {
	if p["field"] == "" {
		return req, false, false, errors.New("field is required, e.g. field=pm25")
	}
	switch p["format"] {
	case "", "json":
	case "csv":
		csv = true
	default:
		return req, false, false, errors.New("format must be json or csv")
	}
	if rfc3339, err = timeFormat(p, csv); err != nil {
		return req, false, false, err
	}
	req.Measurement, req.Field = p["measurement"], p["field"]
	if req.From, req.To, err = a.timeRange(p); err != nil {
		return req, false, false, err
	}
	if req.Matchers, err = matchers(p); err != nil {
		return req, false, false, err
	}
	if s, ok := p["step"]; ok {
		if req.Step, err = parseStep(s); err != nil {
			return req, false, false, err
		}
	}
	if s, ok := p["agg"]; ok {
		if req.Step == 0 {
			return req, false, false, errors.New("agg needs a step, e.g. step=1h")
		}
		if req.Agg, err = query.ParseAgg(s); err != nil {
			return req, false, false, errors.New(strings.TrimPrefix(err.Error(), query.ErrBadRequest.Error()+": "))
		}
	}
	if s, ok := p["group_by"]; ok {
		if req.Step == 0 {
			return req, false, false, errors.New("group_by needs a step, e.g. step=1d")
		}
		if req.GroupBy, err = list("group_by", s); err != nil {
			return req, false, false, err
		}
		if len(req.GroupBy) > maxGroupBy {
			return req, false, false, errors.New("group_by: at most " + strconv.Itoa(maxGroupBy) + " tags")
		}
	}
	return req, csv, rfc3339, nil
}

// latest answers GET /api/v1/latest: the newest value of field for every
// matching series within window (1h by default) before at (now).
func (a *API) latest(w http.ResponseWriter, r *http.Request) {
	p, err := params(r, latestParams)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if p["field"] == "" {
		writeError(w, http.StatusBadRequest, "field is required, e.g. field=pm25")
		return
	}
	req := query.LatestRequest{Measurement: p["measurement"], Field: p["field"]}
	rfc3339, err := timeFormat(p, false)
	if err == nil {
		req.Matchers, err = matchers(p)
	}
	if err == nil && p["at"] != "" {
		if req.At, err = parseTime(p["at"]); err != nil {
			err = errors.New("at: " + err.Error())
		}
	}
	if err == nil && p["window"] != "" {
		if req.Window, err = confx.ParseDuration(p["window"]); err != nil || req.Window <= 0 || req.Window > 366*24*time.Hour {
			err = errors.New("window: " + strconv.Quote(p["window"]) + ": want a duration from 1s to 366d")
		}
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.At == 0 {
		req.At = a.opts.Now().UnixNano()
	}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	res, err := a.query.Latest(ctx, req)
	if err != nil {
		a.queryError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=10")
	bp := getBuf()
	defer putBuf(bp)
	buf := append((*bp)[:0], `{"latest":[`...)
	for i, s := range res.Series {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendSeriesHead(buf, s)
		buf = append(buf, `,"time":`...)
		buf = appendTime(buf, s.Points[0].Time, rfc3339)
		buf = append(buf, `,"value":`...)
		buf = appendValue(buf, s.Points[0].Value)
		buf = append(buf, '}')
		if len(buf) > 16<<10 {
			w.Write(buf)
			buf = buf[:0]
		}
	}
	buf = append(buf, "]}\n"...)
	if _, err := w.Write(buf); err != nil {
		a.log.Debug("api: client went away", "err", err)
	}
}

// appendSeriesHead writes {"measurement":..,"field":..,"tags":{..} without
// closing the object.
func appendSeriesHead(buf []byte, s query.Series) []byte {
	buf = append(buf, `{"measurement":`...)
	buf = appendString(buf, s.Measurement)
	buf = append(buf, `,"field":`...)
	buf = appendString(buf, s.Field)
	buf = append(buf, `,"tags":{`...)
	for j, t := range s.Tags {
		if j > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, t.Key)
		buf = append(buf, ':')
		buf = appendString(buf, t.Value)
	}
	return append(buf, '}')
}

func appendTime(buf []byte, ns int64, rfc3339 bool) []byte {
	if !rfc3339 {
		return appendUnixSeconds(buf, ns)
	}
	buf = append(buf, '"')
	buf = time.Unix(0, ns).UTC().AppendFormat(buf, time.RFC3339Nano)
	return append(buf, '"')
}

// writeSeriesJSON streams the answer, encoded by hand: it may hold a
// million points, which encoding/json would first build in memory as
// interface values.
func writeSeriesJSON(w http.ResponseWriter, res query.Result, rfc3339 bool, next string, log interface{ Debug(string, ...any) }) {
	bp := getBuf()
	defer putBuf(bp)
	buf := append((*bp)[:0], `{"series":[`...)
	streamed := false
	for i, s := range res.Series {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendSeriesHead(buf, s)
		buf = append(buf, `,"points":[`...)
		for j, smp := range s.Points {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '[')
			buf = appendTime(buf, smp.Time, rfc3339)
			buf = append(buf, ',')
			buf = appendValue(buf, smp.Value)
			buf = append(buf, ']')
			if len(buf) > 32<<10 {
				w.Write(buf)
				buf = buf[:0]
				streamed = true
			}
		}
		buf = append(buf, "]}"...)
	}
	buf = append(buf, `],"partial":`...)
	buf = strconv.AppendBool(buf, res.Partial)
	buf = append(buf, `,"resolution":"`...)
	buf = append(buf, res.Resolution...)
	buf = append(buf, '"')
	if next != "" {
		buf = append(buf, `,"next":"`...)
		buf = append(buf, next...) // base64url: nothing to escape
		buf = append(buf, '"')
	}
	buf = append(buf, "}\n"...)
	if !streamed {
		// One write with its length: no chunked framing, one segment.
		w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
	}
	if _, err := w.Write(buf); err != nil {
		log.Debug("api: client went away", "err", err)
	}
}

// writeCSV writes one row per point: time, measurement, field, one column
// per tag key that any answered series has (sorted), value. Cells are
// quoted per RFC 4180 when they need it, and a cell starting with = + - @
// is prefixed with ' so that a spreadsheet does not run it as a formula.
func writeCSV(w http.ResponseWriter, res query.Result, rfc3339 bool, log interface{ Debug(string, ...any) }) {
	var keys []string
	for _, s := range res.Series {
		for _, t := range s.Tags {
			if !slices.Contains(keys, t.Key) {
				keys = append(keys, t.Key)
			}
		}
	}
	slices.Sort(keys)
	bp := getBuf()
	defer putBuf(bp)
	buf := append((*bp)[:0], "time,measurement,field"...)
	for _, k := range keys {
		buf = append(buf, ',')
		buf = appendCSVCell(buf, k)
	}
	buf = append(buf, ",value\r\n"...)
	var prefix []byte
	for _, s := range res.Series {
		prefix = prefix[:0]
		prefix = append(prefix, ',')
		prefix = appendCSVCell(prefix, s.Measurement)
		prefix = append(prefix, ',')
		prefix = appendCSVCell(prefix, s.Field)
		for _, k := range keys {
			prefix = append(prefix, ',')
			for _, t := range s.Tags {
				if t.Key == k {
					prefix = appendCSVCell(prefix, t.Value)
				}
			}
		}
		prefix = append(prefix, ',')
		for _, smp := range s.Points {
			if rfc3339 {
				buf = time.Unix(0, smp.Time).UTC().AppendFormat(buf, time.RFC3339Nano)
			} else {
				buf = appendUnixSeconds(buf, smp.Time)
			}
			buf = append(buf, prefix...)
			if smp.Value.Kind() == protocols.KindString {
				buf = appendCSVCell(buf, smp.Value.StringV())
			} else {
				buf = appendValue(buf, smp.Value)
			}
			buf = append(buf, "\r\n"...)
			if len(buf) > 32<<10 {
				w.Write(buf)
				buf = buf[:0]
			}
		}
	}
	if _, err := w.Write(buf); err != nil {
		log.Debug("api: client went away", "err", err)
	}
}

func appendCSVCell(b []byte, s string) []byte {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		s = "'" + s
	}
	if !strings.ContainsAny(s, ",\"\r\n") {
		return append(b, s...)
	}
	b = append(b, '"')
	b = append(b, strings.ReplaceAll(s, `"`, `""`)...)
	return append(b, '"')
}

// csvName is the download's file name, from the request's field and step;
// only safe characters survive.
func csvName(req query.Request) string {
	name := "citysense-" + req.Field
	if req.Step > 0 {
		name += "-" + string(req.Agg) + "-" + strings.TrimSuffix(strings.TrimSuffix(req.Step.String(), "0s"), "0m")
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, name) + ".csv"
}

// Answers are encoded by hand into a buffer written out every 32 KiB;
// the buffers are pooled, since a fresh 40 KiB buffer per request was most
// of what a small query allocated.
var encBufs = sync.Pool{New: func() any { b := make([]byte, 0, 40<<10); return &b }}

func getBuf() *[]byte { return encBufs.Get().(*[]byte) }

func putBuf(bp *[]byte) {
	if cap(*bp) > 1<<20 {
		return // an answer with one huge string; let it go
	}
	*bp = (*bp)[:0]
	encBufs.Put(bp)
}
