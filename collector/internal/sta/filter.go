package sta

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds of a $filter or $orderby expression: enough for any real query,
// small enough that a hostile one costs nothing.
const (
	maxExprLen   = 4096
	maxExprDepth = 40
	maxExprNodes = 400
)

// node is an expression of $filter or $orderby.
type node interface{}

type (
	// lit is a literal: string, float64, bool, nil, tval or geometry.
	lit struct{ v any }
	// path is a property path such as Datastream/ObservedProperty/name.
	path struct{ segs []string }
	// unary is not or - (neg).
	unary struct {
		op string
		x  node
	}
	// binary is a comparison, logical or arithmetic operator.
	binary struct {
		op   string
		l, r node
	}
	// call is a function call.
	call struct {
		fn   string
		args []node
	}
)

// tval is a point in time, ns since the Unix epoch.
type tval int64

func (t tval) String() string { return formatTime(int64(t)) }

// functions are the supported functions and their arities (min, max).
var functions = map[string][2]int{
	"startswith": {2, 2}, "endswith": {2, 2}, "substringof": {2, 2}, "contains": {2, 2},
	"indexof": {2, 2}, "length": {1, 1}, "tolower": {1, 1}, "toupper": {1, 1}, "trim": {1, 1},
	"concat": {2, 2}, "substring": {2, 3},
	"year": {1, 1}, "month": {1, 1}, "day": {1, 1}, "hour": {1, 1}, "minute": {1, 1}, "second": {1, 1},
	"fractionalseconds": {1, 1}, "now": {0, 0},
	"round": {1, 1}, "floor": {1, 1}, "ceiling": {1, 1},
	"geo.distance": {2, 2}, "geo.intersects": {2, 2}, "geo.length": {1, 1},
	"st_within": {2, 2}, "st_intersects": {2, 2}, "st_contains": {2, 2}, "st_disjoint": {2, 2},
	"st_equals": {2, 2},
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tTime
	tGeo
	tPunct // ( ) , / -
)

type token struct {
	kind tokKind
	text string // identifier, string value, punctuation
	num  float64
	t    int64
	geo  geometry
	pos  int
}

// dateRe matches the start of an ISO 8601 date or date-time literal; the
// whole literal then has to parse, so 2026-13-45 is an error, not a number.
var dateRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?`)

func lex(s string) ([]token, error) {
	var out []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == ',' || c == '/' || c == '-':
			out = append(out, token{kind: tPunct, text: string(c), pos: i})
			i++
		case c == '\'':
			v, n, err := lexString(s[i:])
			if err != nil {
				return nil, fmt.Errorf("at %d: %w", i, err)
			}
			out = append(out, token{kind: tString, text: v, pos: i})
			i += n
		case c >= '0' && c <= '9':
			if m := dateRe.FindString(s[i:]); m != "" {
				t, err := parseTimeLiteral(m)
				if err != nil {
					return nil, fmt.Errorf("at %d: %w", i, err)
				}
				out = append(out, token{kind: tTime, t: t, pos: i})
				i += len(m)
				continue
			}
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
				(s[j] == '+' || s[j] == '-') && (s[j-1] == 'e' || s[j-1] == 'E')) {
				j++
			}
			f, err := strconv.ParseFloat(s[i:j], 64)
			if err != nil || math.IsInf(f, 0) {
				return nil, fmt.Errorf("at %d: bad number %q", i, s[i:j])
			}
			out = append(out, token{kind: tNumber, num: f, pos: i})
			i = j
		case isIdentStart(c):
			j := i + 1
			for j < len(s) && isIdentPart(s[j]) {
				j++
			}
			word := s[i:j]
			if j < len(s) && s[j] == '\'' && (strings.EqualFold(word, "geography") || strings.EqualFold(word, "geometry")) {
				v, n, err := lexString(s[j:])
				if err != nil {
					return nil, fmt.Errorf("at %d: %w", j, err)
				}
				g, err := parseWKT(v)
				if err != nil {
					return nil, fmt.Errorf("at %d: %w", i, err)
				}
				out = append(out, token{kind: tGeo, geo: g, pos: i})
				i = j + n
				continue
			}
			out = append(out, token{kind: tIdent, text: word, pos: i})
			i = j
		default:
			r, _ := utf8.DecodeRuneInString(s[i:])
			return nil, fmt.Errorf("at %d: unexpected %q", i, r)
		}
	}
	return append(out, token{kind: tEOF, pos: len(s)}), nil
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '@' || c == '$'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '.' }

// lexString reads a quoted literal at the start of s, ” standing for '.
func lexString(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '\'' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\'' {
			b.WriteByte('\'')
			i++
			continue
		}
		return b.String(), i + 1, nil
	}
	return "", 0, errors.New("unterminated string")
}

// parseTimeLiteral reads an ISO 8601 date or date-time; a date-time
// without a zone is UTC.
func parseTimeLiteral(s string) (int64, error) {
	layouts := []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04Z07:00", "2006-01-02T15:04", "2006-01-02"}
	for _, l := range layouts {
		if t, err := time.Parse(l, s); err == nil {
			if t.Year() < 1678 || t.Year() > 2261 {
				return 0, fmt.Errorf("time %s is out of range", s)
			}
			return t.UnixNano(), nil
		}
	}
	return 0, fmt.Errorf("bad time %q", s)
}

type parser struct {
	toks  []token
	i     int
	depth int
	nodes int
}

// parseExpr parses a $filter or $orderby expression.
func parseExpr(s string) (node, error) {
	if len(s) > maxExprLen {
		return nil, fmt.Errorf("expression longer than %d bytes", maxExprLen)
	}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty expression")
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, fmt.Errorf("at %d: unexpected %s", t.pos, describe(t))
	}
	return n, nil
}

func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	case tString:
		return "string " + strconv.Quote(t.text)
	case tNumber:
		return "number"
	case tTime:
		return "time"
	case tGeo:
		return "geometry"
	}
	return strconv.Quote(t.text)
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

// keyword reports whether the next token is the (case-sensitive, as in
// OData) operator word w, and consumes it.
func (p *parser) keyword(ws ...string) (string, bool) {
	t := p.peek()
	if t.kind != tIdent {
		return "", false
	}
	for _, w := range ws {
		if t.text == w {
			p.i++
			return w, true
		}
	}
	return "", false
}

func (p *parser) enter() error {
	p.depth++
	p.nodes++
	if p.depth > maxExprDepth {
		return fmt.Errorf("expression nested deeper than %d", maxExprDepth)
	}
	if p.nodes > maxExprNodes {
		return fmt.Errorf("expression has more than %d terms", maxExprNodes)
	}
	return nil
}

// or: and binds tighter than or.
func (p *parser) or() (node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for {
		if _, ok := p.keyword("or"); !ok {
			return l, nil
		}
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = binary{"or", l, r}
	}
}

func (p *parser) and() (node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for {
		if _, ok := p.keyword("and"); !ok {
			return l, nil
		}
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = binary{"and", l, r}
	}
}

func (p *parser) not() (node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	if _, ok := p.keyword("not"); ok {
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return unary{"not", x}, nil
	}
	return p.cmp()
}

func (p *parser) cmp() (node, error) {
	l, err := p.add()
	if err != nil {
		return nil, err
	}
	if op, ok := p.keyword("eq", "ne", "gt", "ge", "lt", "le"); ok {
		r, err := p.add()
		if err != nil {
			return nil, err
		}
		return binary{op, l, r}, nil
	}
	return l, nil
}

func (p *parser) add() (node, error) {
	l, err := p.mul()
	if err != nil {
		return nil, err
	}
	for {
		op, ok := p.keyword("add", "sub")
		if !ok {
			return l, nil
		}
		r, err := p.mul()
		if err != nil {
			return nil, err
		}
		l = binary{op, l, r}
	}
}

func (p *parser) mul() (node, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		op, ok := p.keyword("mul", "div", "mod")
		if !ok {
			return l, nil
		}
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = binary{op, l, r}
	}
}

func (p *parser) unary() (node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	if t := p.peek(); t.kind == tPunct && t.text == "-" {
		p.next()
		if n := p.peek(); n.kind == tNumber {
			p.next()
			return lit{-n.num}, nil
		}
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return unary{"-", x}, nil
	}
	return p.primary()
}

func (p *parser) primary() (node, error) {
	t := p.next()
	switch t.kind {
	case tString:
		return lit{t.text}, nil
	case tNumber:
		return lit{t.num}, nil
	case tTime:
		return lit{tval(t.t)}, nil
	case tGeo:
		return lit{t.geo}, nil
	case tPunct:
		if t.text != "(" {
			break
		}
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tPunct || c.text != ")" {
			return nil, fmt.Errorf("at %d: want ')', got %s", c.pos, describe(c))
		}
		return n, nil
	case tIdent:
		switch t.text {
		case "true":
			return lit{true}, nil
		case "false":
			return lit{false}, nil
		case "null":
			return lit{nil}, nil
		}
		if o := p.peek(); o.kind == tPunct && o.text == "(" {
			return p.call(t)
		}
		segs := []string{t.text}
		for {
			o := p.peek()
			if o.kind != tPunct || o.text != "/" {
				break
			}
			p.next()
			s := p.next()
			if s.kind != tIdent {
				return nil, fmt.Errorf("at %d: want a property after '/', got %s", s.pos, describe(s))
			}
			if len(segs) >= 8 {
				return nil, errors.New("property path longer than 8 segments")
			}
			segs = append(segs, s.text)
		}
		return path{segs}, nil
	}
	return nil, fmt.Errorf("at %d: unexpected %s", t.pos, describe(t))
}

func (p *parser) call(name token) (node, error) {
	fn := strings.ToLower(name.text)
	arity, ok := functions[fn]
	if !ok {
		return nil, fmt.Errorf("at %d: unknown function %q", name.pos, name.text)
	}
	p.next() // (
	var args []node
	if t := p.peek(); t.kind == tPunct && t.text == ")" {
		p.next()
	} else {
		for {
			a, err := p.or()
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			t := p.next()
			if t.kind == tPunct && t.text == ")" {
				break
			}
			if t.kind != tPunct || t.text != "," {
				return nil, fmt.Errorf("at %d: want ',' or ')', got %s", t.pos, describe(t))
			}
			if len(args) > arity[1] {
				break
			}
		}
	}
	if len(args) < arity[0] || len(args) > arity[1] {
		return nil, fmt.Errorf("at %d: %s takes %s arguments, got %d", name.pos, fn, arityText(arity), len(args))
	}
	return call{fn, args}, nil
}

func arityText(a [2]int) string {
	if a[0] == a[1] {
		return strconv.Itoa(a[0])
	}
	return fmt.Sprintf("%d to %d", a[0], a[1])
}

// env resolves property paths against one entity. A path through a to-many
// navigation yields a multi.
type env interface {
	resolve(segs []string) any
}

// multi is the values of a path through a to-many navigation: a
// comparison holds when it holds for any of them.
type multi []any

// evalCtx carries what evaluation needs besides the entity.
type evalCtx struct {
	now int64
}

// truthy reports whether a $filter result selects the entity.
func truthy(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case multi:
		for _, x := range v {
			if truthy(x) {
				return true
			}
		}
	}
	return false
}

func (c *evalCtx) eval(n node, e env) any {
	switch n := n.(type) {
	case lit:
		return n.v
	case path:
		return e.resolve(n.segs)
	case unary:
		x := c.eval(n.x, e)
		if n.op == "not" {
			if x == nil {
				return nil
			}
			return !truthy(x)
		}
		return mapMulti(x, func(v any) any {
			if f, ok := v.(float64); ok {
				return -f
			}
			return nil
		})
	case binary:
		switch n.op {
		case "and":
			l := c.eval(n.l, e)
			if !truthy(l) {
				return false
			}
			return truthy(c.eval(n.r, e))
		case "or":
			if truthy(c.eval(n.l, e)) {
				return true
			}
			return truthy(c.eval(n.r, e))
		case "eq", "ne", "gt", "ge", "lt", "le":
			return compareOp(n.op, c.eval(n.l, e), c.eval(n.r, e))
		default:
			return arith(n.op, c.eval(n.l, e), c.eval(n.r, e))
		}
	case call:
		args := make([]any, len(n.args))
		for i, a := range n.args {
			args[i] = c.eval(a, e)
		}
		return c.apply(n.fn, args)
	}
	return nil
}

func mapMulti(v any, f func(any) any) any {
	if m, ok := v.(multi); ok {
		out := make(multi, len(m))
		for i, x := range m {
			out[i] = f(x)
		}
		return out
	}
	return f(v)
}

// compareOp compares with OData semantics: null equals only null and is
// not ordered; values of different types are unequal and not ordered; a
// string compared with a time is read as a time.
func compareOp(op string, l, r any) any {
	if lm, ok := l.(multi); ok {
		for _, x := range lm {
			if truthy(compareOp(op, x, r)) {
				return true
			}
		}
		return false
	}
	if rm, ok := r.(multi); ok {
		for _, x := range rm {
			if truthy(compareOp(op, l, x)) {
				return true
			}
		}
		return false
	}
	c, ok := compareValues(l, r)
	switch op {
	case "eq":
		return ok && c == 0
	case "ne":
		return !ok || c != 0
	}
	if !ok || l == nil || r == nil {
		return false
	}
	switch op {
	case "gt":
		return c > 0
	case "ge":
		return c >= 0
	case "lt":
		return c < 0
	default:
		return c <= 0
	}
}

// compareValues orders two scalar values; ok is false when they are of
// types that do not compare.
func compareValues(l, r any) (int, bool) {
	if l == nil || r == nil {
		return 0, l == nil && r == nil
	}
	if _, ok := l.(tval); ok {
		if s, ok := r.(string); ok {
			t, err := parseTimeLiteral(s)
			if err != nil {
				return 0, false
			}
			r = tval(t)
		}
	}
	if _, ok := r.(tval); ok {
		if s, ok := l.(string); ok {
			t, err := parseTimeLiteral(s)
			if err != nil {
				return 0, false
			}
			l = tval(t)
		}
	}
	switch a := l.(type) {
	case float64:
		if b, ok := r.(float64); ok {
			return cmp3(a < b, a > b), true
		}
	case string:
		if b, ok := r.(string); ok {
			return strings.Compare(a, b), true
		}
	case bool:
		if b, ok := r.(bool); ok {
			return cmp3(!a && b, a && !b), true
		}
	case tval:
		if b, ok := r.(tval); ok {
			return cmp3(a < b, a > b), true
		}
	case geometry:
		if b, ok := r.(geometry); ok && geoEqual(a, b) {
			return 0, true
		}
	}
	return 0, false
}

func cmp3(less, more bool) int {
	switch {
	case less:
		return -1
	case more:
		return 1
	}
	return 0
}

func arith(op string, l, r any) any {
	a, ok1 := l.(float64)
	b, ok2 := r.(float64)
	if !ok1 || !ok2 {
		return nil
	}
	var v float64
	switch op {
	case "add":
		v = a + b
	case "sub":
		v = a - b
	case "mul":
		v = a * b
	case "div":
		if b == 0 {
			return nil
		}
		v = a / b
	case "mod":
		if b == 0 {
			return nil
		}
		v = math.Mod(a, b)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return v
}

func (c *evalCtx) apply(fn string, a []any) any {
	// Functions over a multi apply to each of its values (one argument
	// at a time), as comparisons do.
	for i, x := range a {
		if m, ok := x.(multi); ok {
			out := make(multi, len(m))
			for j, v := range m {
				b := append([]any(nil), a...)
				b[i] = v
				out[j] = c.apply(fn, b)
			}
			return out
		}
	}
	str := func(i int) (string, bool) { s, ok := a[i].(string); return s, ok }
	num := func(i int) (float64, bool) { f, ok := a[i].(float64); return f, ok }
	tm := func(i int) (time.Time, bool) {
		switch v := a[i].(type) {
		case tval:
			return time.Unix(0, int64(v)).UTC(), true
		case string:
			if t, err := parseTimeLiteral(v); err == nil {
				return time.Unix(0, t).UTC(), true
			}
		}
		return time.Time{}, false
	}
	switch fn {
	case "startswith", "endswith", "contains", "substringof", "indexof", "concat":
		x, ok1 := str(0)
		y, ok2 := str(1)
		if !ok1 || !ok2 {
			return nil
		}
		switch fn {
		case "startswith":
			return strings.HasPrefix(x, y)
		case "endswith":
			return strings.HasSuffix(x, y)
		case "contains":
			return strings.Contains(x, y)
		case "substringof":
			return strings.Contains(y, x)
		case "indexof":
			i := strings.Index(x, y)
			if i < 0 {
				return -1.0
			}
			return float64(utf8.RuneCountInString(x[:i]))
		default:
			if len(x)+len(y) > maxExprLen*4 {
				return nil
			}
			return x + y
		}
	case "length", "tolower", "toupper", "trim":
		x, ok := str(0)
		if !ok {
			return nil
		}
		switch fn {
		case "length":
			return float64(utf8.RuneCountInString(x))
		case "tolower":
			return strings.ToLower(x)
		case "toupper":
			return strings.ToUpper(x)
		default:
			return strings.TrimSpace(x)
		}
	case "substring":
		x, ok := str(0)
		from, ok2 := num(1)
		if !ok || !ok2 || !(from >= 0) {
			return nil
		}
		rs := []rune(x)
		// Compare as floats before converting: 1e300 is no int.
		start := len(rs)
		if from < float64(len(rs)) {
			start = int(from)
		}
		end := len(rs)
		if len(a) == 3 {
			n, ok := num(2)
			if !ok || !(n >= 0) {
				return nil
			}
			if n < float64(end-start) {
				end = start + int(n)
			}
		}
		return string(rs[start:end])
	case "year", "month", "day", "hour", "minute", "second", "fractionalseconds":
		t, ok := tm(0)
		if !ok {
			return nil
		}
		switch fn {
		case "year":
			return float64(t.Year())
		case "month":
			return float64(t.Month())
		case "day":
			return float64(t.Day())
		case "hour":
			return float64(t.Hour())
		case "minute":
			return float64(t.Minute())
		case "second":
			return float64(t.Second())
		default:
			return float64(t.Nanosecond()) / 1e9
		}
	case "now":
		return tval(c.now)
	case "round", "floor", "ceiling":
		x, ok := num(0)
		if !ok {
			return nil
		}
		switch fn {
		case "round":
			return math.Round(x)
		case "floor":
			return math.Floor(x)
		default:
			return math.Ceil(x)
		}
	case "geo.length":
		g, ok := a[0].(geometry)
		if !ok {
			return nil
		}
		return geoLength(g)
	case "geo.distance", "geo.intersects", "st_within", "st_intersects", "st_contains", "st_disjoint", "st_equals":
		g1, ok1 := a[0].(geometry)
		g2, ok2 := a[1].(geometry)
		if !ok1 || !ok2 {
			return nil
		}
		switch fn {
		case "geo.distance":
			d, ok := geoDistance(g1, g2)
			if !ok {
				return nil
			}
			return d
		case "geo.intersects", "st_intersects":
			return geoIntersects(g1, g2)
		case "st_disjoint":
			return !geoIntersects(g1, g2)
		case "st_within":
			return geoWithin(g1, g2)
		case "st_contains":
			return geoWithin(g2, g1)
		default:
			return geoEqual(g1, g2)
		}
	}
	return nil
}

// walk calls f for every node of n.
func walk(n node, f func(node)) {
	f(n)
	switch n := n.(type) {
	case unary:
		walk(n.x, f)
	case binary:
		walk(n.l, f)
		walk(n.r, f)
	case call:
		for _, a := range n.args {
			walk(a, f)
		}
	}
}

// conjuncts splits a filter at its top-level ands.
func conjuncts(n node) []node {
	if b, ok := n.(binary); ok && b.op == "and" {
		return append(conjuncts(b.l), conjuncts(b.r)...)
	}
	return []node{n}
}
