package store

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/citysense/citysense/protocols"
)

// sameColumns fails unless a and b hold the same samples with the same
// value bits, in the same order.
func sameColumns(t *testing.T, what string, got, want *column) {
	t.Helper()
	if got.len() != want.len() {
		t.Fatalf("%s: %d samples, want %d", what, got.len(), want.len())
	}
	for i := range want.ts {
		g, w := got.value(i), want.value(i)
		if got.ts[i] != want.ts[i] || g.Kind() != w.Kind() || valueBits(g) != valueBits(w) || g.StringV() != w.StringV() {
			t.Fatalf("%s: sample %d is (%d, %v), want (%d, %v)", what, i, got.ts[i], g, want.ts[i], w)
		}
	}
	if got.sorted && !want.sorted {
		t.Fatalf("%s: says sorted, the plain column does not", what)
	}
}

// checkHeadCol appends samples to a headCol and a plain column and checks
// that the headCol gives them back exactly, before and after normalizing.
func checkHeadCol(t *testing.T, what string, ts []int64, vs []protocols.Value) *headCol {
	t.Helper()
	var h headCol
	want := column{sorted: true}
	for i := range ts {
		h.append(ts[i], vs[i])
		want.append(ts[i], vs[i])
	}
	if h.len() != len(ts) {
		t.Fatalf("%s: len %d, want %d", what, h.len(), len(ts))
	}
	var got column
	h.column(&got)
	sameColumns(t, what, &got, &want)
	got.normalize()
	want.normalize()
	sameColumns(t, what+" normalized", &got, &want)
	return &h
}

func TestHeadCol_packsReadings(t *testing.T) {
	const n = 120
	base := int64(1_795_000_000) * 1e9
	ts := make([]int64, n)
	vs := make([]protocols.Value, n)
	for i := range n {
		ts[i] = base + int64(i)*60e9
		vs[i] = protocols.Float(float64(120+i%7*3) / 10) // 12.0, 12.3, …
	}
	h := checkHeadCol(t, "readings", ts, vs)
	if h.plain != nil || h.scale != 1 {
		t.Fatalf("plain %v, scale %d: want packed at one decimal", h.plain != nil, h.scale)
	}
	// The first sample carries the full time; after that each takes a
	// byte of time and one or two of value.
	if per := float64(len(h.b)) / n; per > 3 {
		t.Errorf("%.2f bytes a sample, want at most 3", per)
	}
	var c column
	h.column(&c)
	if c.dec != 2 {
		t.Errorf("dec = %d, want 2 (scale 1 + 1)", c.dec)
	}
}

func TestHeadCol_edgeCases(t *testing.T) {
	f := protocols.Float
	cases := []struct {
		name      string
		ts        []int64
		vs        []protocols.Value
		wantPlain bool
	}{
		{"scale grows", []int64{1, 2, 3, 4}, []protocols.Value{f(12), f(12.5), f(12.25), f(-3.125)}, false},
		{"out of order and duplicates", []int64{50, 10, 30, 10, 70, 30}, []protocols.Value{f(1.5), f(2.5), f(3), f(4), f(5), f(6)}, false},
		{"extreme times", []int64{math.MaxInt64, math.MinInt64, 0, -1, math.MaxInt64}, []protocols.Value{f(1), f(2), f(3), f(4), f(5)}, false},
		{"ints", []int64{1, 2, 3}, []protocols.Value{protocols.Int(math.MinInt64), protocols.Int(math.MaxInt64), protocols.Int(-7)}, false},
		{"uints", []int64{1, 2, 3}, []protocols.Value{protocols.Uint(math.MaxUint64), protocols.Uint(0), protocols.Uint(1 << 63)}, false},
		{"bools", []int64{1, 2, 3}, []protocols.Value{protocols.Bool(true), protocols.Bool(false), protocols.Bool(true)}, false},
		{"not a decimal", []int64{1, 2, 3}, []protocols.Value{f(1.5), f(math.Pi), f(2)}, true},
		{"first not a decimal", []int64{1, 2}, []protocols.Value{f(1e300 / 3), f(2)}, true},
		{"negative zero", []int64{1, 2, 3}, []protocols.Value{f(1), f(math.Copysign(0, -1)), f(0)}, true},
		{"huge", []int64{1, 2}, []protocols.Value{f(1), f(1e17)}, true},
		{"kind changes", []int64{1, 2, 3}, []protocols.Value{f(1.5), protocols.Int(2), f(3)}, true},
		{"strings", []int64{2, 1}, []protocols.Value{protocols.String("a"), protocols.String("b")}, true},
	}
	for _, tc := range cases {
		h := checkHeadCol(t, tc.name, tc.ts, tc.vs)
		if (h.plain != nil) != tc.wantPlain {
			t.Errorf("%s: plain = %v, want %v", tc.name, h.plain != nil, tc.wantPlain)
		}
	}
}

func TestHeadCol_random(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for round := range 500 {
		n := 1 + r.IntN(300)
		ts := make([]int64, n)
		vs := make([]protocols.Value, n)
		t0 := r.Int64N(1 << 62)
		kind := r.IntN(5)
		for i := range n {
			ts[i] = t0 + int64(i)*60e9
			if r.IntN(4) == 0 {
				ts[i] -= r.Int64N(600e9) // late or duplicate
			}
			switch kind {
			case 0, 1: // decimals of a few digits, sometimes more
				digits := r.IntN(2)
				if r.IntN(50) == 0 {
					digits = r.IntN(6)
				}
				vs[i] = protocols.Float(math.Round(r.NormFloat64()*1e4) / math.Pow(10, float64(digits)))
			case 2:
				vs[i] = protocols.Int(r.Int64() >> r.IntN(64))
			case 3: // any float bits
				vs[i] = protocols.Float(r.NormFloat64() * math.Pow(10, float64(r.IntN(30)-15)))
			case 4: // a kind change now and then
				if r.IntN(20) == 0 {
					vs[i] = protocols.Uint(r.Uint64())
				} else {
					vs[i] = protocols.Float(float64(r.IntN(1000)) / 10)
				}
			}
		}
		checkHeadCol(t, "round "+string(rune('0'+round%10)), ts, vs)
	}
}

func TestHeadCol_appendAll(t *testing.T) {
	var a, b headCol
	want := column{sorted: true}
	for i := range 50 {
		v := protocols.Float(float64(i) / 4)
		if i%2 == 0 {
			a.append(int64(100-i), v)
		} else {
			b.append(int64(i), v)
		}
	}
	var ca, cb column
	a.column(&ca)
	b.column(&cb)
	want.appendAll(&ca)
	want.appendAll(&cb)
	a.appendAll(&b)
	var got column
	a.column(&got)
	sameColumns(t, "appendAll", &got, &want)
}

// FuzzHeadCol reads samples from the input, 17 bytes each: a time, value
// bits and a kind, and checks that a headCol gives back what a plain
// column holds.
func FuzzHeadCol(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x01\x9a\x99\x99\x99\x99\x99\x28\x40\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var ts []int64
		var vs []protocols.Value
		for len(in) >= 17 {
			tm := int64(binary.LittleEndian.Uint64(in))
			bits := binary.LittleEndian.Uint64(in[8:])
			var v protocols.Value
			switch in[16] % 5 {
			case 0:
				fv := math.Float64frombits(bits)
				if math.IsNaN(fv) || math.IsInf(fv, 0) {
					fv = 0
				}
				v = protocols.Float(fv)
			case 1:
				v = protocols.Int(int64(bits))
			case 2:
				v = protocols.Uint(bits)
			case 3:
				v = protocols.Bool(bits&1 == 1)
			case 4:
				v = protocols.Float(float64(int64(bits)%100000) / 100)
			}
			ts, vs = append(ts, tm), append(vs, v)
			in = in[17:]
		}
		checkHeadCol(t, "fuzz", ts, vs)
	})
}
