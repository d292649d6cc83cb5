package sta

import (
	"math"
	"testing"
)

// TestAppendJSON_matchesEncodingJSON: the direct encoder writes what
// encoding/json (without HTML escaping) writes.
func TestAppendJSON_matchesEncodingJSON(t *testing.T) {
	for _, v := range []any{
		"plain", `quote " backslash \ slash /`, "ctl \x00\x01\x1f\t\n\r", "<script>&amp;</script>", "µg/m³ Gürtel",
		"bad utf8 \xff\xfe end", "line sep \u2028 para \u2029", "",
		0.0, 1.0, -1.5, 1e-7, 1.5e-9, 1e21, 123456789012345680000.0, math.MaxFloat64, math.SmallestNonzeroFloat64, 0.1 + 0.2,
		true, false, nil, 42,
		[]any{"a", 1.5, nil, []any{true}}, [][]any{{"x", 2.0}},
	} {
		got, err := appendJSON(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("appendJSON(%#v) = %s, want %s", v, got, want)
		}
	}
	o := obj{{"a", obj{{"b", tval(t0)}}}, {"g", pointGeo(16.5, 48.25)}}
	if got, _ := appendJSON(nil, o); string(got) != `{"a":{"b":"2026-01-01T00:00:00Z"},"g":{"type":"Point","coordinates":[16.5,48.25]}}` {
		t.Errorf("obj = %s", got)
	}
}
