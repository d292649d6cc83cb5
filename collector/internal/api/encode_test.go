package api

import (
	"encoding/json"
	"math"
	"testing"
)

// appendString and appendFloat must write what encoding/json writes: the
// answers are encoded by hand for speed, not to a format of their own.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "s0001", "Nørrebro", `say "hi"`, `back\slash`, "a<b", "a>b", "R&D", "tab\tnl\n\x00", "\u2028\u2029", "\xff\xfe bad utf-8", "d01 north"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("appendString(%q) = %s, encoding/json writes %s", s, got[1:], want)
		}
	})
}

func FuzzAppendFloat(f *testing.F) {
	for _, v := range []float64{0, math.Copysign(0, -1), 1, 12.5, 12.516666666666667, 1e-7, 1e21, -3.4e38, 5e-324, math.MaxFloat64} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		got := string(appendFloat(nil, v))
		if math.IsNaN(v) || math.IsInf(v, 0) {
			if got != "null" {
				t.Fatalf("appendFloat(%v) = %s, want null", v, got)
			}
			return
		}
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Fatalf("appendFloat(%v) = %s, encoding/json writes %s", v, got, want)
		}
	})
}
