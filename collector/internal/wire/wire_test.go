package wire

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

func encode(pts []protocols.Point) []byte {
	var e Encoder
	for i := range pts {
		e.Encode(&pts[i])
	}
	return e.AppendTo(nil)
}

func randomPoints(r *rand.Rand, n int) []protocols.Point {
	pts := make([]protocols.Point, n)
	names := []string{"air", "noise", "traffic", "a b,c=d", "ünï", ""}
	for i := range pts {
		p := &pts[i]
		p.Measurement = names[r.IntN(len(names)-1)]
		for k := range r.IntN(4) {
			p.Tags = append(p.Tags, protocols.Tag{Key: "t" + strconv.Itoa(k), Value: names[r.IntN(len(names))] + strconv.Itoa(r.IntN(3))})
		}
		for k := range 1 + r.IntN(5) {
			var v protocols.Value
			switch r.IntN(6) {
			case 0:
				v = protocols.Int(r.Int64() - math.MaxInt64/2)
			case 1:
				v = protocols.Uint(r.Uint64())
			case 2:
				v = protocols.Bool(r.IntN(2) == 1)
			case 3:
				v = protocols.String(names[r.IntN(len(names))] + "\n\"x\"")
			case 4:
				v = protocols.Float([]float64{0, math.Copysign(0, -1), 1e-300, -1e300, math.MaxFloat64, 12.3}[r.IntN(6)])
			default:
				v = protocols.Float(r.NormFloat64() * 1e3)
			}
			p.Fields = append(p.Fields, protocols.Field{Key: "f" + strconv.Itoa(k), Value: v})
		}
		// Times jump both ways and across the whole range.
		switch r.IntN(3) {
		case 0:
			p.Time = r.Int64() - math.MaxInt64/2
		case 1:
			p.Time = math.MinInt64 + r.Int64N(10)
		default:
			p.Time = math.MaxInt64 - r.Int64N(10)
		}
	}
	return pts
}

// norm makes nil and empty tag slices compare equal.
func norm(pts []protocols.Point) []protocols.Point {
	if len(pts) == 0 {
		return nil
	}
	for i := range pts {
		if len(pts[i].Tags) == 0 {
			pts[i].Tags = nil
		}
	}
	return pts
}

func TestRoundTrip_random(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		want := randomPoints(r, r.IntN(50))
		got, err := Decode(encode(want), Options{})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !reflect.DeepEqual(norm(got), norm(want)) {
			t.Fatalf("round %d: got\n%v\nwant\n%v", round, got, want)
		}
	}
}

func TestRoundTrip_simCityIsSmallerThanLineProtocol(t *testing.T) {
	params := sim.Params{Stations: 100, Seed: 3, Interval: time.Minute, Start: time.Unix(1767225600, 0)}
	var want []protocols.Point
	for tick := range 5 {
		want = append(want, sim.Generate(params, tick)...)
	}
	msg := encode(want)
	got, err := Decode(msg, Options{Validate: true})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(norm(got), norm(want)) {
		t.Fatal("sim points changed in the round trip")
	}
	lp, err := protocols.AppendLines(nil, want, protocols.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg) >= len(lp) {
		t.Errorf("wire %d bytes, line protocol %d: the table should make it smaller", len(msg), len(lp))
	}
	t.Logf("%d points: wire %d B (%.1f B/point), line protocol %d B", len(want), len(msg), float64(len(msg))/float64(len(want)), len(lp))
}

func TestEncoder_Reset(t *testing.T) {
	a := randomPoints(rand.New(rand.NewPCG(5, 6)), 10)
	b := randomPoints(rand.New(rand.NewPCG(7, 8)), 3)
	var e Encoder
	for i := range a {
		e.Encode(&a[i])
	}
	e.Reset()
	for i := range b {
		e.Encode(&b[i])
	}
	if e.Len() != 3 {
		t.Fatalf("Len = %d after Reset and 3 points", e.Len())
	}
	got, err := Decode(e.AppendTo(nil), Options{})
	if err != nil || !reflect.DeepEqual(norm(got), norm(b)) {
		t.Fatalf("after Reset: %v %v", got, err)
	}
}

// A Decoder reuses its slabs after Reset; points of messages decoded
// since stay intact while later messages grow the slabs.
func TestDecoder_reuse(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var dc Decoder
	for round := range 20 {
		dc.Reset()
		var want, got [][]protocols.Point
		for range 1 + r.IntN(6) {
			pts := randomPoints(r, r.IntN(40))
			dec, err := dc.Decode(encode(pts), Options{})
			if err != nil {
				t.Fatal(err)
			}
			want, got = append(want, pts), append(got, dec)
		}
		for i := range want {
			if !reflect.DeepEqual(norm(got[i]), norm(want[i])) {
				t.Fatalf("round %d, message %d changed after later messages were decoded", round, i)
			}
		}
	}
}

// More distinct strings than the decoder interns: the table starts over
// and every message still decodes to what was sent.
func TestDecoder_internFull(t *testing.T) {
	var dc Decoder
	for m := range 4 {
		pts := make([]protocols.Point, 5000)
		for i := range pts {
			pts[i] = protocols.Point{Measurement: "air", Tags: []protocols.Tag{{Key: "station", Value: fmt.Sprintf("s%d-%d", m%2, i)}},
				Fields: []protocols.Field{{Key: "pm25", Value: protocols.Float(float64(i))}}, Time: int64(i)}
		}
		dc.Reset()
		got, err := dc.Decode(encode(pts), Options{})
		if err != nil || !reflect.DeepEqual(norm(got), norm(pts)) {
			t.Fatalf("message %d: %v", m, err)
		}
	}
}

func TestDecode_validate(t *testing.T) {
	bad := []protocols.Point{{Measurement: "air", Fields: []protocols.Field{{Key: "pm25", Value: protocols.Float(math.NaN())}}, Time: 1}}
	msg := encode(bad)
	if _, err := Decode(msg, Options{}); err != nil {
		t.Fatalf("without Validate: %v", err)
	}
	if _, err := Decode(msg, Options{Validate: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("NaN with Validate: %v, want ErrCorrupt", err)
	}
	unsorted := []protocols.Point{{Measurement: "air", Tags: []protocols.Tag{{Key: "b"}, {Key: "a"}},
		Fields: []protocols.Field{{Key: "x", Value: protocols.Int(1)}}}}
	if _, err := Decode(encode(unsorted), Options{Validate: true}); err == nil {
		t.Fatal("unsorted tags accepted with Validate")
	}
}

func TestDecode_corrupt(t *testing.T) {
	good := encode(randomPoints(rand.New(rand.NewPCG(9, 9)), 20))
	cases := map[string][]byte{
		"empty":            nil,
		"line protocol":    []byte("air,station=s1 pm25=1 1\n"),
		"magic only":       []byte(Magic),
		"huge counts":      append([]byte(Magic), 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 1),
		"truncated":        good[:len(good)-3],
		"trailing garbage": append(append([]byte(nil), good...), 7),
		"bad kind":         append([]byte(Magic), 1, 0, 1, 0, 1, 'm', 0, 1, 0, 1, 'f', 99, 0),
		"bad bool":         append([]byte(Magic), 1, 0, 1, 0, 1, 'm', 0, 1, 0, 1, 'f', byte(protocols.KindBool), 2, 0),
		"bad string ref":   append([]byte(Magic), 1, 0, 1, 5, 0, 1, 0, 1, 'f', byte(protocols.KindBool), 1, 0),
	}
	for name, b := range cases {
		if _, err := Decode(b, Options{}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
	// Every truncation of a good message is an error, never a panic.
	for n := range len(good) {
		if _, err := Decode(good[:n], Options{}); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(good))
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(randomPoints(rand.New(rand.NewPCG(1, 1)), 3)))
	f.Add([]byte(Magic))
	f.Add(append([]byte(Magic), 1, 0, 1, 0, 1, 'm', 0, 1, 0, 1, 'f', byte(protocols.KindInt), 2, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		pts, err := Decode(b, Options{Validate: true})
		if err != nil {
			return
		}
		// What decodes re-encodes to a message that decodes the same.
		again, err := Decode(encode(pts), Options{Validate: true})
		if err != nil || !reflect.DeepEqual(norm(again), norm(pts)) {
			t.Fatalf("re-encoded message differs: %v", err)
		}
	})
}

// benchPoints are sim city points as the collector holds them: decoded
// from line protocol, so that repeated strings share their bytes.
func benchPoints() []protocols.Point {
	params := sim.Params{Stations: 100, Seed: 3, Interval: time.Minute, Start: time.Unix(1767225600, 0)}
	var gen []protocols.Point
	for tick := range 10 {
		gen = append(gen, sim.Generate(params, tick)...)
	}
	lp, err := protocols.AppendLines(nil, gen, protocols.Nanosecond)
	if err != nil {
		panic(err)
	}
	var pts []protocols.Point
	protocols.Decode(lp, protocols.DecodeOptions{}, func(p protocols.Point) error {
		pts = append(pts, p)
		return nil
	})
	return pts
}

func values(pts []protocols.Point) int {
	n := 0
	for i := range pts {
		n += len(pts[i].Fields)
	}
	return n
}

func BenchmarkEncode(b *testing.B) {
	pts := benchPoints()
	var e Encoder
	var out []byte
	b.ReportAllocs()
	for b.Loop() {
		e.Reset()
		for i := range pts {
			e.Encode(&pts[i])
		}
		out = e.AppendTo(out[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*values(pts)), "ns/value")
}

func BenchmarkDecode(b *testing.B) {
	pts := benchPoints()
	msg := encode(pts)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(msg, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*values(pts)), "ns/value")
}

// BenchmarkDecoder is a consumer's reused Decoder: slabs and interned
// strings carry over from message to message.
func BenchmarkDecoder(b *testing.B) {
	pts := benchPoints()
	msg := encode(pts)
	var dc Decoder
	b.ReportAllocs()
	for b.Loop() {
		dc.Reset()
		if _, err := dc.Decode(msg, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*values(pts)), "ns/value")
}

// BenchmarkLineProtocol is the pair the wire format replaces, for scale.
func BenchmarkLineProtocol(b *testing.B) {
	pts := benchPoints()
	lp, _ := protocols.AppendLines(nil, pts, protocols.Nanosecond)
	b.Run("encode", func(b *testing.B) {
		var out []byte
		for b.Loop() {
			out, _ = protocols.AppendLines(out[:0], pts, protocols.Nanosecond)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*values(pts)), "ns/value")
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			protocols.Decode(lp, protocols.DecodeOptions{}, func(protocols.Point) error { return nil })
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*values(pts)), "ns/value")
	})
}
