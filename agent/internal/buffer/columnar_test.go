package buffer

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/citysense/citysense/protocols"
)

// decodeAll decodes a columnar body into copies of its points.
func decodeAll(body []byte) ([]protocols.Point, error) {
	var out []protocols.Point
	err := decodeColumnar(body, func(p *protocols.Point) error {
		out = append(out, p.Clone())
		return nil
	})
	return out, err
}

// grouped is what decoding promises: the points grouped by series and
// field set in the order each group first appears, each group in its
// original order. It is computed here independently of the encoder.
func grouped(pts []protocols.Point) []protocols.Point {
	var order []string
	groups := map[string][]protocols.Point{}
	for _, p := range pts {
		k := fmt.Sprintf("%q %q", p.Measurement, p.Tags)
		for _, f := range p.Fields {
			k += fmt.Sprintf(" %q:%d", f.Key, f.Value.Kind())
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], p)
	}
	var out []protocols.Point
	for _, k := range order {
		out = append(out, groups[k]...)
	}
	return out
}

func roundTrip(t *testing.T, pts []protocols.Point) []byte {
	t.Helper()
	body := encodeColumnar(nil, [][]protocols.Point{pts})
	got, err := decodeAll(body)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	want := grouped(pts)
	if len(got) != len(want) {
		t.Fatalf("decoded %d points, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("point %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	return body
}

func floatPoint(v float64, ts int64) protocols.Point {
	return protocols.Point{Measurement: "m", Fields: []protocols.Field{{Key: "v", Value: protocols.Float(v)}}, Time: ts}
}

func TestColumnar_floats_exact(t *testing.T) {
	special := []float64{
		0, math.Copysign(0, -1), 1e-9, -1e-9, 0.1, 0.2, 0.1 + 0.2, 1.0 / 3, 12.5, -7.25,
		1e15, 1e18, 1e19, 9007199254740993, 1e300, -1e300, math.MaxFloat64, -math.MaxFloat64,
		math.SmallestNonzeroFloat64, 5e-324, 2.2250738585072014e-308, math.Pi, 123456789.123456789,
		48.21793, 16.37125, 1e-18, 1.5e-19, math.Inf(1), math.Inf(-1), math.NaN(),
		math.Float64frombits(0x7ff8000000000001), // a NaN with a payload
	}
	// Each value alone, all in one column (the column's decimals then
	// suit none of them), and in a column of ordinary readings.
	for i, v := range special {
		roundTrip(t, []protocols.Point{floatPoint(v, int64(i))})
	}
	var col, mixed []protocols.Point
	for i, v := range special {
		col = append(col, floatPoint(v, int64(i)))
		mixed = append(mixed, floatPoint(float64(i)/10, int64(2*i)), floatPoint(v, int64(2*i+1)))
	}
	roundTrip(t, col)
	roundTrip(t, mixed)
}

// point3 is 0.1+0.2 in float64 arithmetic (a constant would be exactly 0.3).
var point3 = func(a, b float64) float64 { return a + b }(0.1, 0.2)

func TestColumnar_floats_decimalsDetected(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		m    int64
		d    int
		ok   bool
		note string
	}{
		{12.5, 125, 1, true, ""},
		{-7.25, -725, 2, true, ""},
		{3, 3, 0, true, ""},
		{1e-9, 1, 9, true, ""},
		{point3, 0, 0, false, "0.1+0.2 computed at run time, 0.30000000000000004: needs 17 digits, more than 2^53"},
		{math.Copysign(0, -1), 0, 0, false, "-0 is not an integer over a power of ten"},
		{1e300, 0, 0, false, "too large for int64"},
		{math.NaN(), 0, 0, false, ""},
	} {
		m, d, ok := decimalOf(tt.v)
		if ok != tt.ok || (ok && (m != tt.m || d != tt.d)) {
			t.Errorf("decimalOf(%v) = %d, %d, %v; want %d, %d, %v %s", tt.v, m, d, ok, tt.m, tt.d, tt.ok, tt.note)
		}
	}
}

func TestColumnar_allKinds(t *testing.T) {
	tags := []protocols.Tag{{Key: "district", Value: "d 07, north"}, {Key: "station", Value: "s=1\\"}}
	var pts []protocols.Point
	for i := range 50 {
		pts = append(pts, protocols.Point{
			Measurement: "weird, measurement",
			Tags:        tags,
			Fields: []protocols.Field{
				{Key: "i", Value: protocols.Int(int64(i*i) - 1000)},
				{Key: "big", Value: protocols.Int([]int64{math.MinInt64, math.MaxInt64, 0}[i%3])},
				{Key: "u", Value: protocols.Uint([]uint64{0, math.MaxUint64, 1 << 63}[i%3])},
				{Key: "b", Value: protocols.Bool(i%3 == 0)},
				{Key: "s", Value: protocols.String(strings.Repeat("é\"x\\ ,=", i%4))},
				{Key: "f", Value: protocols.Float(float64(i) * 0.25)},
			},
			Time: []int64{math.MinInt64 / 2, 0, -1, math.MaxInt64, 1}[i%5] + int64(i),
		})
	}
	roundTrip(t, pts)
}

func TestColumnar_seriesChangeShape(t *testing.T) {
	// One series whose points carry different field sets and kinds, and
	// points with equal timestamps: each shape is a block of its own and
	// every point comes back.
	base := protocols.Point{Measurement: "air", Tags: []protocols.Tag{{Key: "station", Value: "s1"}}}
	var pts []protocols.Point
	for i := range 30 {
		p := base
		switch i % 3 {
		case 0:
			p.Fields = []protocols.Field{{Key: "pm25", Value: protocols.Float(float64(i) + 0.5)}}
		case 1:
			p.Fields = []protocols.Field{{Key: "pm25", Value: protocols.Int(int64(i))}}
		case 2:
			p.Fields = []protocols.Field{{Key: "pm10", Value: protocols.Float(1)}, {Key: "pm25", Value: protocols.Float(2)}}
		}
		p.Time = int64(i / 4)
		pts = append(pts, p)
	}
	roundTrip(t, pts)
}

// randomPoints makes a batch of n points over a few series, with values of
// every kind and float values that are decimal, arbitrary or special.
func randomPoints(rng *rand.Rand, n int) []protocols.Point {
	nseries := 1 + rng.IntN(20)
	t := rng.Int64N(1 << 62)
	step := rng.Int64N(int64(1e10)) + 1
	out := make([]protocols.Point, 0, n)
	for range n {
		s := rng.IntN(nseries)
		p := protocols.Point{
			Measurement: []string{"air", "noise", "m,x y"}[s%3],
			Tags:        []protocols.Tag{{Key: "station", Value: fmt.Sprintf("s%04d", s)}},
			Time:        t,
		}
		if rng.IntN(10) == 0 {
			p.Tags = nil
		}
		nf := 1 + rng.IntN(3)
		for f := range nf {
			var v protocols.Value
			switch k := rng.IntN(12); {
			case k < 5:
				d := rng.IntN(6)
				v = protocols.Float(math.Round(rng.NormFloat64()*1000*math.Pow10(d)) / math.Pow10(d))
			case k < 7:
				v = protocols.Float(rng.NormFloat64() * math.Pow10(rng.IntN(40)-20))
			case k == 7:
				v = protocols.Float([]float64{math.Copysign(0, -1), 1e300, 1e-9, math.MaxFloat64, 5e-324}[rng.IntN(5)])
			case k == 8:
				v = protocols.Int(rng.Int64() >> rng.IntN(64))
			case k == 9:
				v = protocols.Uint(rng.Uint64() >> rng.IntN(64))
			case k == 10:
				v = protocols.Bool(rng.IntN(2) == 1)
			default:
				v = protocols.String(strings.Repeat("ab ,=\"", rng.IntN(3)))
			}
			p.Fields = append(p.Fields, protocols.Field{Key: fmt.Sprintf("f%d", f), Value: v})
		}
		out = append(out, p)
		if rng.IntN(4) == 0 {
			t += step + rng.Int64N(1000) - 500
		}
	}
	return out
}

func TestColumnar_randomBatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		pts := randomPoints(rng, 1+rng.IntN(600))
		t.Run(fmt.Sprint(i), func(t *testing.T) { roundTrip(t, pts) })
	}
}

func TestColumnar_randomBatches_asLineProtocol(t *testing.T) {
	// What the uplink sends: the lines decode to the same points.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		pts := randomPoints(rng, 1+rng.IntN(300))
		body := encodeColumnar(nil, [][]protocols.Point{pts})
		lp, err := columnarLines(nil, body, len(pts))
		if err != nil {
			t.Fatal(err)
		}
		got, err := protocols.DecodeAll(lp, protocols.DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := grouped(pts)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("line protocol of %d points decodes differently", len(pts))
		}
		if _, err := columnarLines(nil, body, len(pts)+1); err == nil {
			t.Fatal("a point count other than the index's was not noticed")
		}
	}
}

func TestColumnar_spansJoin(t *testing.T) {
	// Requests' points cut into one batch decode as if appended at once.
	rng := rand.New(rand.NewPCG(5, 6))
	pts := randomPoints(rng, 500)
	a := encodeColumnar(nil, [][]protocols.Point{pts[:1], pts[1:200], pts[200:]})
	b := encodeColumnar(nil, [][]protocols.Point{pts})
	if string(a) != string(b) {
		t.Fatal("spans encode differently from one slice")
	}
}

func TestColumnar_simDataIsSmall(t *testing.T) {
	// The buffer's target: at most 3 bytes per reading on disk for the
	// simulated city; the body before compression is already close.
	ticks := simTicks(100, 22) // 5,126 readings
	var pts []protocols.Point
	for _, tk := range ticks {
		pts = append(pts, tk...)
	}
	body := roundTrip(t, pts)
	lp, err := protocols.AppendLines(nil, pts, protocols.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithLowerEncoderMem(true))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	z := compress(enc, Zstd, body)
	per := float64(len(z)) / float64(len(pts))
	t.Logf("%d readings: %d B line protocol, %d B columnar, %d B compressed (%.2f B/reading)", len(pts), len(lp), len(body), len(z), per)
	if per > 3 {
		t.Errorf("compressed columnar body %.2f B per reading, want at most 3", per)
	}
}

func TestColumnar_decode_damage(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	body := encodeColumnar(nil, [][]protocols.Point{randomPoints(rng, 200)})
	// Every truncation fails cleanly.
	for n := range len(body) {
		if _, err := decodeAll(body[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(body))
		}
	}
	for _, tt := range []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"version", []byte{9, 0}},
		{"trailing", append(encodeColumnar(nil, [][]protocols.Point{{floatPoint(1, 1)}}), 0)},
		{"huge block count", []byte{colVersion, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"huge row count", []byte{colVersion, 1, 1, 'm', 0, 1, 1, 'v', byte(protocols.KindFloat), 0xff, 0xff, 0xff, 0x7f}},
		{"unknown kind", []byte{colVersion, 1, 1, 'm', 0, 1, 1, 'v', 99, 1, 0, 0}},
		{"bad bool", []byte{colVersion, 1, 1, 'm', 0, 1, 1, 'v', byte(protocols.KindBool), 1, 0, 7}},
		{"decimals", []byte{colVersion, 1, 1, 'm', 0, 1, 1, 'v', byte(protocols.KindFloat), 1, 0, 19, 0, 2}},
		{"exception outside", []byte{colVersion, 1, 1, 'm', 0, 1, 1, 'v', byte(protocols.KindFloat), 1, 0, 1, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0}},
	} {
		if _, err := decodeAll(tt.body); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func FuzzColumnar_decode(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 8 {
		f.Add(encodeColumnar(nil, [][]protocols.Point{randomPoints(rng, 1+rng.IntN(40))}))
	}
	f.Add([]byte{colVersion, 1, 1, 'm', 0, 1, 1, 'v', byte(protocols.KindFloat), 2, 0, 1, 0, 2, 4})
	f.Fuzz(func(t *testing.T, body []byte) {
		pts, err := decodeAll(body) // must not panic
		if err != nil {
			return
		}
		// What decodes re-encodes to a body that decodes the same.
		again, err := decodeAll(encodeColumnar(nil, [][]protocols.Point{pts}))
		if err != nil {
			t.Fatalf("re-encoded body: %v", err)
		}
		if !reflect.DeepEqual(again, grouped(pts)) {
			t.Fatal("re-encoded body decodes differently")
		}
	})
}

func FuzzColumnar_floats(f *testing.F) {
	f.Add(12.5, math.Copysign(0, -1), 1e-9)
	f.Add(1e300, 0.1, 48.21793)
	f.Fuzz(func(t *testing.T, a, b, c float64) {
		roundTrip(t, []protocols.Point{floatPoint(a, 1), floatPoint(b, 2), floatPoint(c, 3)})
	})
}

// TestBuffer_readsLineProtocolSegments: segments written by the previous
// version (line protocol in zstd or s2; testdata made with it) are read,
// exported and sent as they were stored, beside new columnar batches.
func TestBuffer_readsLineProtocolSegments(t *testing.T) {
	for _, codec := range []Codec{Zstd, S2} {
		t.Run(codec.String(), func(t *testing.T) {
			dir := t.TempDir()
			old, err := os.ReadFile(filepath.Join("testdata", "v1-lineprotocol", codec.String()+"-seg-00000000000000000001.db"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(dir, DirName), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, DirName, segmentName(1)), old, 0o600); err != nil {
				t.Fatal(err)
			}
			b := open(t, dir, Options{Codec: codec})
			newer := appendAll(t, b, 9, 9, 3)
			bs := readAll(t, b, "default")
			if len(bs) != 3 || bs[0].Format != LineProtocol || bs[1].Format != LineProtocol || bs[2].Format != Columnar {
				t.Fatalf("batches %d, formats %v %v %v", len(bs), bs[0].Format, bs[1].Format, bs[len(bs)-1].Format)
			}
			tc, err := NewTranscoder()
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			// An old batch goes out byte for byte as stored.
			if w, err := tc.Wire(&bs[0]); err != nil || string(w) != string(bs[0].Body) {
				t.Fatalf("wire body of an old batch differs from the stored one (%v)", err)
			}
			got := decode(t, bs)
			if len(got) != 5+3 {
				t.Fatalf("%d points", len(got))
			}
			want := []string{
				`air,district=d\ 1,station=s0001 pm25=12.5,no2=0 1772323200000000000`,
				`noise,station=s0001 laeq=61.5 1772323200000000000`,
				`traffic,station=s0001 count=-42i,ok=true,n=9223372036854775808u,note="a \"quoted\", text" 1772323210000000000`,
				`air,district=d\ 1,station=s0001 pm25=1e-09,no2=1e+300 1772323210000000000`,
				`air,district=d\ 1,station=s0002 pm25=3 1772323220000000000`,
			}
			lp, err := protocols.AppendLines(nil, got[:5], protocols.Nanosecond)
			if err != nil {
				t.Fatal(err)
			}
			if g := strings.Split(strings.TrimSpace(string(lp)), "\n"); !reflect.DeepEqual(g, want) {
				t.Fatalf("old points:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
			}
			samePoints(t, got[5:], newer)
			n, pts, err := b.Export(io.Discard, "default")
			if err != nil || n != 3 || pts != 8 {
				t.Fatalf("export: %d batches, %d points, %v", n, pts, err)
			}
		})
	}
}

func TestColumnar_lines_escapingAndNumbers(t *testing.T) {
	// Text with every character line protocol escapes, and numbers whose
	// decimal text must parse back bit for bit; checked by the protocols
	// package's decoder (the collector's).
	rng := rand.New(rand.NewPCG(11, 12))
	alphabet := []string{"a", "Z", "0", " ", ",", "=", "\\", "\"", "é", "µ", "'", "#"}
	text := func(n int, trailingBackslash bool) string {
		var sb strings.Builder
		for range n {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		s := sb.String()
		for !trailingBackslash && strings.HasSuffix(s, "\\") {
			s = strings.TrimSuffix(s, "\\") + "x" // line protocol cannot end a name in a backslash
		}
		return s
	}
	var pts []protocols.Point
	enc := new(protocols.Encoder)
	for len(pts) < 2000 {
		p := protocols.Point{
			Measurement: text(1+rng.IntN(6), false),
			Tags:        []protocols.Tag{{Key: "k" + text(rng.IntN(4), false), Value: text(1+rng.IntN(6), false)}},
			Fields: []protocols.Field{
				{Key: text(1+rng.IntN(4), false), Value: protocols.String(text(rng.IntN(8), true) + []string{"", "\n", "\r\n", "\t"}[rng.IntN(4)])},
				{Key: "f", Value: protocols.Float(float64(rng.Int64N(2e6)-1e6) / math.Pow10(rng.IntN(8)))},
				{Key: "g", Value: protocols.Float(rng.NormFloat64() * math.Pow10(rng.IntN(30)-15))},
			},
			Time: rng.Int64() - math.MaxInt64/2,
		}
		if p.Fields[0].Key == "f" || p.Fields[0].Key == "g" || strings.HasPrefix(p.Measurement, "#") {
			// A line starting with # is a comment to a decoder, although
			// the library's encoder writes it (so the buffer's input
			// check lets it through, as before the columns).
			continue
		}
		if enc.Encode(&p) != nil {
			continue // not storable: Append would have left it out
		}
		pts = append(pts, p)
	}
	body := encodeColumnar(nil, [][]protocols.Point{pts})
	lp, err := columnarLines(nil, body, len(pts))
	if err != nil {
		t.Fatal(err)
	}
	got, err := protocols.DecodeAll(lp, protocols.DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := grouped(pts)
	if len(got) != len(want) {
		t.Fatalf("%d points from the lines, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("point %d from the lines = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestAppendDecimal(t *testing.T) {
	for _, tt := range []struct {
		m    int64
		d    int
		want string
	}{
		{1234, 2, "12.34"}, {5, 3, "0.005"}, {-5, 3, "-0.005"}, {0, 2, "0.00"}, {30, 1, "3.0"},
		{-125, 1, "-12.5"}, {42, 0, "42"}, {maxExact, 18, "0.009007199254740992"},
	} {
		if got := string(appendDecimal(nil, tt.m, tt.d)); got != tt.want {
			t.Errorf("appendDecimal(%d, %d) = %q, want %q", tt.m, tt.d, got, tt.want)
		}
	}
}

func TestCheckLines_agreesWithTheEncoder(t *testing.T) {
	// Append checks points without writing them; it must refuse exactly
	// what the line-protocol encoder refuses (and measurements starting
	// with #, which a decoder reads as comments).
	rng := rand.New(rand.NewPCG(13, 14))
	alphabet := []string{"a", "", " ", ",", "=", "\\", "\"", "é", "#", "\n", "\t", "\x00", "\x7f", "\xff", "\xc3"}
	text := func() string {
		var sb strings.Builder
		for range rng.IntN(4) {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return sb.String()
	}
	enc := new(protocols.Encoder)
	refused := 0
	for range 20000 {
		p := protocols.Point{
			Measurement: text(),
			Tags:        []protocols.Tag{{Key: "k" + text(), Value: text()}},
			Fields:      []protocols.Field{{Key: text(), Value: protocols.String(text())}, {Key: "zz", Value: protocols.Float([]float64{1, math.NaN(), math.Inf(-1)}[rng.IntN(3)])}},
			Time:        rng.Int64(),
		}
		enc.Reset()
		want := enc.Encode(&p) == nil && !strings.HasPrefix(p.Measurement, "#")
		if got := checkLines(&p) == nil; got != want {
			t.Fatalf("checkLines(%+v) accepts: %v, the encoder: %v", p, got, want)
		}
		if !want {
			refused++
		}
	}
	if refused == 0 || refused == 20000 {
		t.Fatalf("%d of 20000 refused: the inputs do not test both ways", refused)
	}
}
