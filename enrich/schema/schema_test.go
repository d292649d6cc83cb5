package schema

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

const contracts = `
contracts:
  air:
    description: Street air quality
    tags: [station]
    fields:
      pm25: {type: float, unit: µg/m³, min: 0, max: 1000, required: true}
      no2: {type: float, unit: µg/m³, min: 0}
  traffic:
    fields:
      count: {type: int, max: 5000}
      ok: {type: bool}
`

func newSchema(t *testing.T, src string, q enrich.Quarantine) (*Schema, error) {
	t.Helper()
	s := New()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	doc, _ := confx.Load("c.yaml", nil, &struct{}{})
	if err := doc.Decode(n.Content[0], "enrich[0]", s); err != nil {
		t.Fatal(err)
	}
	return s, s.Init(enrich.Env{Name: "schema", Quarantine: q})
}

func pt(m string, tags map[string]string, kv ...any) protocols.Point {
	var fs []protocols.Field
	for i := 0; i+1 < len(kv); i += 2 {
		var v protocols.Value
		switch x := kv[i+1].(type) {
		case float64:
			v = protocols.Float(x)
		case int:
			v = protocols.Int(int64(x))
		case string:
			v = protocols.String(x)
		case bool:
			v = protocols.Bool(x)
		}
		fs = append(fs, protocols.Field{Key: kv[i].(string), Value: v})
	}
	p, _ := protocols.NewPoint(m, tags, fs[:len(fs):len(fs)], 1)
	return p
}

var st = map[string]string{"station": "s1"}

func TestSchema_Enrich_Flags(t *testing.T) {
	s, err := newSchema(t, contracts, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		p     protocols.Point
		flags map[string]uint64 // flag field → bits; absent keys must be absent
	}{
		{"valid", pt("air", st, "pm25", 12.0, "no2", 30.0, "extra", "undeclared"), nil},
		{"boundaries are inside", pt("air", st, "pm25", 0.0, "no2", 0.0), nil},
		{"above max", pt("air", st, "pm25", 1000.5), map[string]uint64{"pm25_qc": enrich.FlagSchemaRange}},
		{"below min", pt("air", st, "pm25", 1.0, "no2", -1.0), map[string]uint64{"no2_qc": enrich.FlagSchemaRange}},
		{"int where float is declared", pt("air", st, "pm25", 12), map[string]uint64{"pm25_qc": enrich.FlagSchemaType}},
		{"string where float is declared", pt("air", st, "pm25", "12"), map[string]uint64{"pm25_qc": enrich.FlagSchemaType}},
		{"missing tag", pt("air", nil, "pm25", 1.0), map[string]uint64{"qc": enrich.PointMissingTag}},
		{"missing required field", pt("air", st, "no2", 1.0), map[string]uint64{"qc": enrich.PointMissingField}},
		{"all at once", pt("air", nil, "no2", "x"), map[string]uint64{"qc": enrich.PointMissingTag | enrich.PointMissingField, "no2_qc": enrich.FlagSchemaType}},
		{"int range", pt("traffic", nil, "count", 5001, "ok", true), map[string]uint64{"count_qc": enrich.FlagSchemaRange}},
		{"no contract", pt("noise", nil, "laeq", "loud"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nFields := len(tc.p.Fields)
			out, err := s.Enrich([]protocols.Point{tc.p})
			if err != nil || len(out) != 1 {
				t.Fatalf("out %v err %v", out, err)
			}
			p := &out[0]
			for k, want := range tc.flags {
				if got := enrich.Flags(p, k); got != want {
					t.Errorf("%s = %d, want %d", k, got, want)
				}
			}
			if len(p.Fields) != nFields+len(tc.flags) {
				t.Errorf("fields = %v, want %d flag fields", p.Fields, len(tc.flags))
			}
		})
	}
}

type sink struct {
	mu  sync.Mutex
	got []string
}

func (s *sink) Quarantine(stage string, p protocols.Point, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, stage+": "+p.Measurement+": "+reason)
}

func TestSchema_Enrich_Quarantine(t *testing.T) {
	q := &sink{}
	s, err := newSchema(t, "action: quarantine\n"+contracts, q)
	if err != nil {
		t.Fatal(err)
	}
	in := []protocols.Point{
		pt("air", st, "pm25", 1.0),
		pt("air", nil, "pm25", "x", "no2", -3.0),
		pt("noise", nil, "laeq", 40.0),
		pt("traffic", nil, "count", 9000),
	}
	out, err := s.Enrich(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Measurement != "air" || out[1].Measurement != "noise" || len(out[0].Fields) != 1 {
		t.Fatalf("kept %+v", out)
	}
	want := []string{
		`schema: air: missing required tag "station"; field "no2" = -3 is below the minimum 0; field "pm25" is string, want float`,
		`schema: traffic: field "count" = 9000 is above the maximum 5000`,
	}
	if strings.Join(q.got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("quarantined:\n%s\nwant:\n%s", strings.Join(q.got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSchema_Init_Problems(t *testing.T) {
	_, err := newSchema(t, `
action: quarantine
contracts:
  air:
    fields:
      pm25: {type: double}
      on: {type: bool, min: 0}
      lo: {type: float, min: 5, max: 1}
      pm25_qc: {type: uint}
  empty: {}
`, nil)
	got := err.Error()
	for _, w := range []string{
		"action: quarantine needs a quarantine sink",
		`contracts.air.fields.pm25.type: want float, int, uint, bool or string, got "double"`,
		"contracts.air.fields.on: min and max apply to numeric types",
		"contracts.air.fields.lo.min: min 5 is above max 1",
		`contracts.air.fields.pm25_qc: "pm25_qc" is a flag field`,
		"contracts.empty: declares no fields",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, got)
		}
	}
}

func TestSchema_Contracts_ForTheAPI(t *testing.T) {
	s, err := newSchema(t, contracts, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s.Contracts())
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"measurement":"air","description":"Street air quality","required_tags":["station"],"fields":[` +
		`{"name":"no2","type":"float","unit":"µg/m³","min":0},` +
		`{"name":"pm25","type":"float","unit":"µg/m³","min":0,"max":1000,"required":true}]},` +
		`{"measurement":"traffic","required_tags":[],"fields":[{"name":"count","type":"int","max":5000},{"name":"ok","type":"bool"}]}]`
	if string(b) != want {
		t.Fatalf("json:\n%s\nwant:\n%s", b, want)
	}
	if c, ok := s.Contract("traffic"); !ok || len(c.Fields) != 2 {
		t.Fatalf("Contract(traffic) = %+v %v", c, ok)
	}
	chain, _ := enrich.NewChain(s)
	if got := ContractsOf(chain); len(got) != 2 {
		t.Fatalf("ContractsOf = %v", got)
	}
}
