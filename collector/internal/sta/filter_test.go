package sta

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/citysense/citysense/protocols"
)

// show prints an expression fully parenthesised, to test precedence.
func show(n node) string {
	switch n := n.(type) {
	case lit:
		if s, ok := n.v.(string); ok {
			return "'" + s + "'"
		}
		return fmt.Sprint(n.v)
	case path:
		return strings.Join(n.segs, "/")
	case unary:
		return "(" + n.op + " " + show(n.x) + ")"
	case binary:
		return "(" + show(n.l) + " " + n.op + " " + show(n.r) + ")"
	case call:
		var args []string
		for _, a := range n.args {
			args = append(args, show(a))
		}
		return n.fn + "(" + strings.Join(args, ",") + ")"
	}
	return "?"
}

func TestParseExpr_precedence(t *testing.T) {
	cases := map[string]string{
		"a eq 1 or b eq 2 and c eq 3":                                  "((a eq 1) or ((b eq 2) and (c eq 3)))",
		"(a eq 1 or b eq 2) and c eq 3":                                "(((a eq 1) or (b eq 2)) and (c eq 3))",
		"not a eq 1 and b":                                             "((not (a eq 1)) and b)",
		"a add 2 mul 3 sub -1 eq 7":                                    "(((a add (2 mul 3)) sub -1) eq 7)",
		"- a eq 1":                                                     "((- a) eq 1)",
		"Datastream/ObservedProperty/name eq 'x'":                      "(Datastream/ObservedProperty/name eq 'x')",
		"substringof('it''s', name)":                                   "substringof('it's',name)",
		"phenomenonTime gt 2026-01-01T00:00:00Z":                       "(phenomenonTime gt 2026-01-01T00:00:00Z)",
		"phenomenonTime lt 2026-01-01":                                 "(phenomenonTime lt 2026-01-01T00:00:00Z)",
		"result ge 1.5e3":                                              "(result ge 1500)",
		"geo.distance(location, geography'POINT(16.37 48.2)') lt 0.01": "(geo.distance(location,{Point [[[16.37 48.2]]]}) lt 0.01)",
		"now() gt resultTime":                                          "(now() gt resultTime)",
	}
	for in, want := range cases {
		n, err := parseExpr(in)
		if err != nil {
			t.Errorf("parse %q: %v", in, err)
			continue
		}
		if got := show(n); got != want {
			t.Errorf("parse %q = %s, want %s", in, got, want)
		}
	}
}

func TestParseExpr_errors(t *testing.T) {
	cases := map[string]string{
		"":                                      "empty expression",
		"a eq":                                  "unexpected end of expression",
		"a eq 1)":                               `unexpected ")"`,
		"(a eq 1":                               "want ')'",
		"a eq 'x":                               "unterminated string",
		"a eq 1 1":                              "unexpected number",
		"a & b":                                 `unexpected '&'`,
		"a eq 2026-02-30":                       "bad time",
		"a eq 1e999":                            "bad number",
		"foo(1)":                                `unknown function "foo"`,
		"startswith(a, 'b', 1)":                 "takes 2 arguments",
		"a/":                                    "want a property after '/'",
		"a/b/c/d/e/f/g/h/i":                     "longer than 8",
		"a eq geography'POINT(1)'":              "bad position",
		"a eq geography'CIRCLE(1 2)'":           "not supported",
		"a eq geography'SRID=3857;POINT(1 2)'":  "SRID 3857",
		strings.Repeat("-", 100) + "1":          "nested deeper",
		strings.Repeat("a eq 1 or ", 300) + "b": "more than 400 terms",
	}
	for in, want := range cases {
		_, err := parseExpr(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parse %q: err %v, want %q", in, err, want)
		}
	}
}

// fuzzModel is a small model built without a store, for evaluating
// parsed expressions against every entity set.
func fuzzModel() (*model, []ent) {
	st := &station{id: "s1", name: "One", hasLoc: true, loc: pointGeo(16.3, 48.2), lastSeen: t0, props: obj{{"district", "d01"}}}
	op := &obsProp{id: "air:pm25", measurement: "air", field: "pm25", unit: "µg/m³", typ: "float"}
	ds := &dstream{id: "s1:air:pm25", st: st, op: op}
	st.dss, op.dss = []*dstream{ds}, []*dstream{ds}
	m := &model{stations: []*station{st}, byID: map[string]*station{"s1": st}, dss: []*dstream{ds},
		dsByID: map[string]*dstream{ds.id: ds}, ops: []*obsProp{op}, opByID: map[string]*obsProp{op.id: op}}
	var es []ent
	for _, s := range allSets {
		if s == setObservations {
			es = append(es, ent{set: s, ds: ds, t: t0, v: protocols.Float(12.5)}, ent{set: s, ds: ds, t: t0, v: protocols.String("x")})
			continue
		}
		es = append(es, m.all(s)...)
	}
	return m, es
}

func TestEval_values(t *testing.T) {
	m, es := fuzzModel()
	ec := &evalCtx{now: t0}
	var obs ent
	for _, e := range es {
		if e.set == setObservations {
			obs = e
			break
		}
	}
	cases := map[string]any{
		"result add 0.5":                       13.0,
		"result div 0":                         nil,
		"result mod 5":                         2.5,
		"year(phenomenonTime)":                 2026.0,
		"Datastream/Thing/properties/district": "d01",
		"FeatureOfInterest/feature eq null":    false,
		"concat(Datastream/name, '!')":         "One pm25!",
		"indexof(Datastream/name, 'pm')":       4.0,
		"substring(Datastream/name, 1, 2)":     "ne",
		"round(result)":                        13.0,
		"result gt 'abc'":                      false,
		"result eq null":                       false,
		"phenomenonTime eq now()":              true,
		"Datastream/unitOfMeasurement/symbol":  "µg/m³",
		"geo.distance(FeatureOfInterest/feature, geography'POINT(16.3 48.3)') lt 0.11": true,
	}
	for in, want := range cases {
		n, err := parseExpr(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if err := checkExpr(n, setObservations, true); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if got := ec.eval(n, entEnv{m, obs}); !reflect.DeepEqual(got, want) {
			t.Errorf("%q = %#v, want %#v", in, got, want)
		}
	}
}

// FuzzParseFilter: no input makes the parser, the path check or the
// evaluator panic or hang; what parses also checks and evaluates against
// every entity set.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"name eq 'x'", "a eq 1 or b eq 2 and not c", "(((a)))", "startswith(name,'K')",
		"Datastream/ObservedProperty/name eq 'pm25' and result gt 10.5",
		"phenomenonTime gt 2026-01-01T00:00:00Z and phenomenonTime lt 2026-01-02",
		"geo.distance(location, geography'POINT(16.37 48.2)') lt 0.01",
		"st_within(location, geography'POLYGON((16 48, 17 48, 17 49, 16 49, 16 48))')",
		"substringof('a''b', description)", "length(name) add 2 mul 3 sub -1 eq 7",
		"properties/district eq 'd03'", "Datastreams/ObservedProperty/name eq 'laeq'",
		"1 div 0 eq 1", "-(-(-1)) eq -1", "now() ge resultTime", "year(time) eq 2026",
		"' or 1=1 --", "<script>alert(1)</script>", "name eq 'x'; DROP TABLE x",
		"2026-13-45T00:00:00Z", "geography'POLYGON((1 2, 3 4))'", "substring(name, 1e300, 2)",
	} {
		f.Add(s)
	}
	m, es := fuzzModel()
	ec := &evalCtx{now: t0}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseExpr(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(s) > maxExprLen {
			t.Fatalf("accepted %d bytes", len(s))
		}
		for _, e := range es {
			if checkExpr(n, e.set, true) != nil {
				continue
			}
			truthy(ec.eval(n, entEnv{m, e}))
			sortEnts(m, ec, []ent{e, e}, []orderKey{{expr: n}})
		}
	})
}

// FuzzHandler_query: no path and query string makes the handler panic,
// answer 500 or answer anything but JSON.
func FuzzHandler_query(f *testing.F) {
	for _, s := range []string{
		"Things?$top=1", "Things?$expand=Datastreams($select=name;$top=2)", "Observations?$filter=result gt 1&$orderby=phenomenonTime desc",
		"Datastreams('s0001:air:pm25')/Observations?$resultFormat=dataArray", "Things?$expand=Datastreams/Thing/Datastreams",
		"Things('s0001')/name/$value", "Observations?$skiptoken=MTIzLHMwMDAx", "Things?$orderby=name desc,@iot.id",
		"Things?$select=name,Datastreams&$expand=Locations", "Observations('s0001:air:pm25:1767225600000000000')/Datastream/Thing",
		"Things?$expand=Datastreams($expand=Observations($top=1;$orderby=result desc))", "Things(')?$filter=((",
	} {
		f.Add(s)
	}
	h := newHandler(fixture(f), nil)
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse("http://example.com/sta/v1.1/" + s)
		if err != nil {
			return
		}
		r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
		r.URL = u
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 || w.Code == 200 && strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") && !json.Valid(w.Body.Bytes()) {
			t.Fatalf("GET %s: %d %s", s, w.Code, w.Body)
		}
		if w.Code != 200 && !json.Valid(w.Body.Bytes()) {
			t.Fatalf("GET %s: %d, error not JSON: %s", s, w.Code, w.Body)
		}
	})
}
