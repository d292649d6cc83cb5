package sta

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Query limits.
const (
	// DefaultTop is the page size without $top.
	DefaultTop = 100
	// MaxTop is the largest $top.
	MaxTop = 10_000
	// MaxExpandDepth is how deep $expand may nest (Things/Datastreams/
	// Observations is 3).
	MaxExpandDepth = 3
	// maxExpandItems bounds the navigations expanded at one level.
	maxExpandItems = 8
	// maxSkip bounds $skip; beyond it, page with @iot.nextLink.
	maxSkip = 10_000_000
	// maxQueryLen bounds the raw query string.
	maxQueryLen = 8192
)

// badRequest is an error the client made: answered 400 with its message.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func bad(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

// query is the parsed options of one collection (or of one $expand item).
type query struct {
	filter    node
	filterSrc string
	count     bool
	orderby   []orderKey
	orderSrc  string
	skip      int
	top       int
	topSet    bool
	selects   []string // nil: everything
	selectSrc string
	expand    []expandItem
	expandSrc string
	dataArray bool
	cursor    *cursor
}

type orderKey struct {
	expr node
	desc bool
}

type expandItem struct {
	nav string
	q   *query
	// pathOnly: the item has no options of its own (Datastreams, or
	// Datastreams/Thing($select=name), whose options are Thing's).
	pathOnly bool
}

// mergeExpand adds it to items: several items for one navigation
// (Datastreams/Thing,Datastreams/Sensor,Datastreams($top=2)) become one,
// as long as at most one of them has options.
func mergeExpand(items []expandItem, it expandItem) ([]expandItem, error) {
	for i := range items {
		ex := &items[i]
		if ex.nav != it.nav {
			continue
		}
		if !ex.pathOnly && !it.pathOnly {
			return nil, bad("$expand: %s is expanded twice with options", it.nav)
		}
		keep, other := ex.q, it.q
		if ex.pathOnly && !it.pathOnly {
			keep, other = it.q, ex.q
		}
		for _, sub := range other.expand {
			var err error
			if keep.expand, err = mergeExpand(keep.expand, sub); err != nil {
				return nil, err
			}
		}
		ex.q, ex.pathOnly = keep, ex.pathOnly && it.pathOnly
		return items, nil
	}
	return append(items, it), nil
}

// cursor is where the next page of Observations continues: after
// observation (ds, t) in the order the page was read in.
type cursor struct {
	ds string
	t  int64
}

func (c *cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.t, 10) + "," + c.ds))
}

func decodeCursor(s string) (*cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad("$skiptoken: not a token this server issued")
	}
	ts, ds, ok := strings.Cut(string(b), ",")
	t, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil {
		return nil, bad("$skiptoken: not a token this server issued")
	}
	return &cursor{ds: ds, t: t}, nil
}

// parseRawQuery splits RawQuery strictly: url.Query would drop every pair
// holding a ';', as nested $expand options do. Unknown $-options, repeated
// options and bad escapes are errors; other parameters are ignored.
func parseRawQuery(raw string) (map[string]string, error) {
	if len(raw) > maxQueryLen {
		return nil, bad("query string longer than %d bytes", maxQueryLen)
	}
	out := map[string]string{}
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, bad("bad escape in query parameter %q", k)
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, bad("bad escape in %s", key)
		}
		if !strings.HasPrefix(key, "$") {
			continue
		}
		switch key {
		case "$filter", "$count", "$orderby", "$skip", "$top", "$select", "$expand", "$resultFormat", "$skiptoken":
		default:
			return nil, bad("unknown query option %s", key)
		}
		if _, dup := out[key]; dup {
			return nil, bad("query option %s given twice", key)
		}
		out[key] = val
	}
	return out, nil
}

// parseQuery reads the options of a collection of set s; depth is the
// $expand nesting level of s (0 at the top).
func parseQuery(opts map[string]string, s *setDef, depth int) (*query, error) {
	q := &query{top: DefaultTop}
	if v, ok := opts["$top"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, bad("$top: want a whole number from 0 to %d, got %q", MaxTop, v)
		}
		if n > MaxTop {
			return nil, bad("$top: %d is more than the maximum of %d; page with @iot.nextLink", n, MaxTop)
		}
		q.top, q.topSet = n, true
	}
	if v, ok := opts["$skip"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxSkip {
			return nil, bad("$skip: want a whole number from 0 to %d, got %q", maxSkip, v)
		}
		q.skip = n
	}
	if v, ok := opts["$count"]; ok {
		switch v {
		case "true":
			q.count = true
		case "false":
		default:
			return nil, bad("$count: want true or false, got %q", v)
		}
	}
	if v, ok := opts["$filter"]; ok {
		n, err := parseExpr(v)
		if err != nil {
			return nil, bad("$filter: %v", err)
		}
		if err := checkExpr(n, s, true); err != nil {
			return nil, bad("$filter: %v", err)
		}
		q.filter, q.filterSrc = n, v
	}
	if v, ok := opts["$orderby"]; ok {
		keys, err := parseOrderBy(v, s)
		if err != nil {
			return nil, bad("$orderby: %v", err)
		}
		q.orderby, q.orderSrc = keys, v
	}
	if v, ok := opts["$select"]; ok {
		sel, err := parseSelect(v, s)
		if err != nil {
			return nil, bad("$select: %v", err)
		}
		q.selects, q.selectSrc = sel, v
	}
	if v, ok := opts["$expand"]; ok {
		items, err := parseExpand(v, s, depth)
		if err != nil {
			return nil, err
		}
		q.expand, q.expandSrc = items, v
	}
	if v, ok := opts["$resultFormat"]; ok {
		if v != "dataArray" {
			return nil, bad("$resultFormat: only dataArray is supported, got %q", v)
		}
		if s != setObservations || depth > 0 {
			return nil, bad("$resultFormat=dataArray is for Observations collections")
		}
		if len(q.expand) > 0 {
			return nil, bad("$resultFormat=dataArray cannot be combined with $expand")
		}
		q.dataArray = true
	}
	if v, ok := opts["$skiptoken"]; ok {
		c, err := decodeCursor(v)
		if err != nil {
			return nil, err
		}
		q.cursor = c
	}
	return q, nil
}

// splitTop splits s at sep outside parentheses and quotes.
func splitTop(s string, sep byte) ([]string, error) {
	var out []string
	depth, start := 0, 0
	inStr := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inStr:
			if c == '\'' {
				inStr = false
			}
		case c == '\'':
			inStr = true
		case c == '(':
			depth++
		case c == ')':
			if depth--; depth < 0 {
				return nil, errors.New("unbalanced ')'")
			}
		case c == sep && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if depth != 0 || inStr {
		return nil, errors.New("unbalanced '(' or quote")
	}
	return append(out, s[start:]), nil
}

func parseOrderBy(v string, s *setDef) ([]orderKey, error) {
	parts, err := splitTop(v, ',')
	if err != nil {
		return nil, err
	}
	if len(parts) > 8 {
		return nil, errors.New("more than 8 keys")
	}
	var keys []orderKey
	for _, p := range parts {
		p = strings.TrimSpace(p)
		k := orderKey{}
		if e, ok := strings.CutSuffix(p, " desc"); ok {
			p, k.desc = strings.TrimSpace(e), true
		} else if e, ok := strings.CutSuffix(p, " asc"); ok {
			p = strings.TrimSpace(e)
		}
		if p == "" {
			return nil, errors.New("empty key")
		}
		n, err := parseExpr(p)
		if err != nil {
			return nil, err
		}
		if err := checkExpr(n, s, false); err != nil {
			return nil, err
		}
		k.expr = n
		keys = append(keys, k)
	}
	return keys, nil
}

func parseSelect(v string, s *setDef) ([]string, error) {
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "id" {
			p = "@iot.id"
		}
		switch {
		case p == "@iot.id" || p == "@iot.selfLink" || s.hasProp(p) || s.nav(p) != nil:
		default:
			return nil, fmt.Errorf("%s has no property %q", s.name, p)
		}
		out = append(out, p)
	}
	return out, nil
}

// parseExpand reads a comma-separated list of navigations, each with
// options in parentheses separated by ';' — or a path Nav/Nav, which
// expands the second within the first.
func parseExpand(v string, s *setDef, depth int) ([]expandItem, error) {
	parts, err := splitTop(v, ',')
	if err != nil {
		return nil, bad("$expand: %v", err)
	}
	if len(parts) > maxExpandItems {
		return nil, bad("$expand: more than %d navigations at one level", maxExpandItems)
	}
	var items []expandItem
	for _, p := range parts {
		p = strings.TrimSpace(p)
		var inner string
		if i := strings.IndexByte(p, '('); i >= 0 {
			if !strings.HasSuffix(p, ")") {
				return nil, bad("$expand: %q: options end with ')'", p)
			}
			p, inner = strings.TrimSpace(p[:i]), p[i+1:len(p)-1]
		}
		navName, rest, _ := strings.Cut(p, "/")
		nav := s.nav(navName)
		if nav == nil {
			return nil, bad("$expand: %s has no navigation %q", s.name, navName)
		}
		if depth+1 > MaxExpandDepth {
			return nil, bad("$expand: nested deeper than %d", MaxExpandDepth)
		}
		opts := map[string]string{}
		if rest != "" {
			if inner != "" {
				// Nav/Sub(opts): the options belong to Sub.
				opts["$expand"] = rest + "(" + inner + ")"
			} else {
				opts["$expand"] = rest
			}
		} else if inner != "" {
			ps, err := splitTop(inner, ';')
			if err != nil {
				return nil, bad("$expand: %v", err)
			}
			for _, o := range ps {
				k, val, ok := strings.Cut(strings.TrimSpace(o), "=")
				if !ok {
					return nil, bad("$expand: option %q has no '='", o)
				}
				switch k {
				case "$filter", "$count", "$orderby", "$skip", "$top", "$select", "$expand":
				default:
					return nil, bad("$expand: option %s not allowed here", k)
				}
				if _, dup := opts[k]; dup {
					return nil, bad("$expand: option %s given twice", k)
				}
				opts[k] = val
			}
		}
		q, err := parseQuery(opts, nav.target, depth+1)
		if err != nil {
			return nil, err
		}
		if !nav.many && (q.filter != nil || q.count || q.orderby != nil || q.skip > 0 || q.topSet) {
			return nil, bad("$expand: %s is one entity; only $select and $expand apply", navName)
		}
		var err2 error
		items, err2 = mergeExpand(items, expandItem{nav: nav.name, q: q, pathOnly: rest != "" || inner == ""})
		if err2 != nil {
			return nil, err2
		}
	}
	return items, nil
}

// checkExpr checks every property path of n against set s. In $filter
// paths may not reach Observations from another set.
func checkExpr(n node, s *setDef, filter bool) error {
	var err error
	walk(n, func(n node) {
		if err != nil {
			return
		}
		switch n := n.(type) {
		case path:
			err = checkPath(n.segs, s)
		case binary:
			// A time compared with a string: the string must be a time,
			// so that a malformed date is a 400 and not an empty answer.
			for _, pair := range [][2]node{{n.l, n.r}, {n.r, n.l}} {
				p, isPath := pair[0].(path)
				l, isLit := pair[1].(lit)
				str, isStr := l.v.(string)
				if isPath && isLit && isStr && timeProps[p.segs[len(p.segs)-1]] {
					if _, perr := parseTimeLiteral(str); perr != nil {
						err = perr
					}
				}
			}
		}
	})
	return err
}

// timeProps are the properties whose values are times.
var timeProps = map[string]bool{"phenomenonTime": true, "resultTime": true, "time": true, "last_seen": true}

func checkPath(segs []string, s *setDef) error {
	cur := s
	for i, seg := range segs {
		if seg == "@iot.id" || seg == "id" {
			if i != len(segs)-1 {
				return fmt.Errorf("nothing follows %s", seg)
			}
			return nil
		}
		if cur.hasProp(seg) {
			// properties/owner, unitOfMeasurement/symbol: one key into
			// a JSON object.
			if i == len(segs)-1 || i == len(segs)-2 && cur.objectProp(seg) {
				return nil
			}
			return fmt.Errorf("%s/%s is not an object", cur.name, seg)
		}
		nav := cur.nav(seg)
		if nav == nil {
			return fmt.Errorf("%s has no property %q", cur.name, seg)
		}
		if nav.target == setObservations {
			return fmt.Errorf("paths to Observations are not supported here; query Observations and filter on Datastream")
		}
		if i == len(segs)-1 {
			return fmt.Errorf("%s is an entity, not a value; name one of its properties", seg)
		}
		cur = nav.target
	}
	return nil
}
