package protocols

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDecode_AllFieldTypes(t *testing.T) {
	in := `air,station=s0001,district=d01 pm25=12.5,count=7i,total=18446744073709551615u,ok=true,note="a \"q\" b" 1735689600000000000` + "\n"
	pts, err := DecodeAll([]byte(in), DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 1 {
		t.Fatalf("got %d points, want 1", len(pts))
	}
	p := pts[0]
	if p.Measurement != "air" || p.Time != 1735689600000000000 {
		t.Fatalf("measurement/time = %q/%d", p.Measurement, p.Time)
	}
	// Tags come back sorted whatever the input order.
	if len(p.Tags) != 2 || p.Tags[0] != (Tag{"district", "d01"}) || p.Tags[1] != (Tag{"station", "s0001"}) {
		t.Fatalf("tags = %v", p.Tags)
	}
	want := []Field{
		{"pm25", Float(12.5)},
		{"count", Int(7)},
		{"total", Uint(math.MaxUint64)},
		{"ok", Bool(true)},
		{"note", String(`a "q" b`)},
	}
	if len(p.Fields) != len(want) {
		t.Fatalf("fields = %v", p.Fields)
	}
	for i, f := range want {
		if p.Fields[i].Key != f.Key || !p.Fields[i].Value.Equal(f.Value) {
			t.Errorf("field %d = %v, want %v", i, p.Fields[i], f)
		}
	}
}

func TestDecode_Precision(t *testing.T) {
	cases := []struct {
		prec Precision
		ts   string
		want int64
	}{
		{Nanosecond, "1735689600123456789", 1735689600123456789},
		{Microsecond, "1735689600123456", 1735689600123456000},
		{Millisecond, "1735689600123", 1735689600123000000},
		{Second, "1735689600", 1735689600000000000},
		{Second, "-1", -1000000000},
	}
	for _, c := range cases {
		t.Run(c.prec.String(), func(t *testing.T) {
			pts, err := DecodeAll([]byte("m f=1 "+c.ts), DecodeOptions{Precision: c.prec})
			if err != nil {
				t.Fatal(err)
			}
			if pts[0].Time != c.want {
				t.Fatalf("time = %d, want %d", pts[0].Time, c.want)
			}
		})
	}
}

func TestDecode_MissingTimestampUsesNow(t *testing.T) {
	now := time.Unix(1735689600, 987654321)
	pts, err := DecodeAll([]byte("m f=1\n"), DecodeOptions{Precision: Second, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	// Truncated to the precision, as InfluxDB does.
	if pts[0].Time != 1735689600000000000 {
		t.Fatalf("time = %d", pts[0].Time)
	}
}

func TestDecode_PartialWithPositions(t *testing.T) {
	in := strings.Join([]string{
		"m f=1 1",
		"# a comment",
		"m f= 2",          // no value
		"m f=1,f=2 3",     // duplicate field
		"m,a=1,a=2 f=1 4", // duplicate tag
		"m f=NaN 5",       // NaN is not a line-protocol number
		"m f=1 99999999999999999999",
		"m\\ x,k\\=1=v\\,w f=2 6",
		"m f=\"multi",
		"line\" 7",
		"m f=3 8",
	}, "\n")
	pts, err := DecodeAll([]byte(in), DecodeOptions{})
	var derr *DecodeErrors
	if !errors.As(err, &derr) {
		t.Fatalf("err = %v, want *DecodeErrors", err)
	}
	wantLines := []int{3, 4, 5, 6, 7}
	if len(derr.Errs) != len(wantLines) {
		t.Fatalf("got %d errors (%v), want %d", len(derr.Errs), err, len(wantLines))
	}
	for i, le := range derr.Errs {
		if le.Line != wantLines[i] {
			t.Errorf("error %d at line %d, want %d: %v", i, le.Line, wantLines[i], le)
		}
		if le.Column < 1 {
			t.Errorf("error %d has column %d", i, le.Column)
		}
	}
	if derr.Errs[0].Column != 5 || !strings.Contains(derr.Errs[0].Error(), `"m f= 2"`) {
		t.Errorf("first error = %v, want column 5 quoting the line", derr.Errs[0])
	}
	// The good lines around the bad ones still arrive, in order.
	var times []int64
	for _, p := range pts {
		times = append(times, p.Time)
	}
	if got := len(times); got != 4 || times[0] != 1 || times[1] != 6 || times[2] != 7 || times[3] != 8 {
		t.Fatalf("good points at times %v, want [1 6 7 8]", times)
	}
	if pts[1].Measurement != "m x" || pts[1].Tags[0] != (Tag{"k=1", "v,w"}) {
		t.Fatalf("escaped point = %+v", pts[1])
	}
	if s := pts[2].Fields[0].Value.StringV(); s != "multi\nline" {
		t.Fatalf("multi-line string = %q", s)
	}
}

func TestDecode_MaxErrorsCountsTheRest(t *testing.T) {
	in := strings.Repeat("bad\n", 10) + "m f=1 1\n"
	pts, err := DecodeAll([]byte(in), DecodeOptions{MaxErrors: 3})
	var derr *DecodeErrors
	if !errors.As(err, &derr) || len(derr.Errs) != 3 || derr.Dropped != 7 {
		t.Fatalf("err = %#v", err)
	}
	if len(pts) != 1 {
		t.Fatalf("got %d points, want 1", len(pts))
	}
	if !strings.Contains(err.Error(), "10 bad lines") {
		t.Errorf("message %q does not count all bad lines", err)
	}
}

func TestDecode_CallbackErrorStops(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := Decode([]byte("m f=1 1\nm f=2 2\nm f=3 3\n"), DecodeOptions{}, func(Point) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("err=%v n=%d", err, n)
	}
}

func TestEncoder_RoundTrip(t *testing.T) {
	pts := []Point{
		{Measurement: "air", Tags: []Tag{{"district", "d 1"}, {"station", "s=1,x"}}, Fields: []Field{
			{"pm25", Float(12.25)}, {"n", Int(-3)}, {"u", Uint(9)}, {"b", Bool(false)}, {"s", String("x\"y\\z\nw")},
		}, Time: 1735689600123456789},
		{Measurement: "m,with space", Fields: []Field{{"f=k", Float(-0.5)}}, Time: -5},
		{Measurement: "tiny", Fields: []Field{{"v", Float(5e-324)}}, Time: 0},
	}
	out, err := AppendLines(nil, pts, Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeAll(out, DecodeOptions{})
	if err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if len(back) != len(pts) {
		t.Fatalf("round trip %d → %d points:\n%s", len(pts), len(back), out)
	}
	for i := range pts {
		if !pointsEqual(pts[i], back[i]) {
			t.Errorf("point %d:\n got %+v\nwant %+v", i, back[i], pts[i])
		}
	}
}

func TestEncoder_PrecisionTruncates(t *testing.T) {
	p := Point{Measurement: "m", Fields: []Field{{"f", Int(1)}}, Time: 1735689600999999999}
	for _, c := range []struct {
		prec Precision
		want string
	}{
		{Nanosecond, "m f=1i 1735689600999999999\n"},
		{Microsecond, "m f=1i 1735689600999999\n"},
		{Millisecond, "m f=1i 1735689600999\n"},
		{Second, "m f=1i 1735689600\n"},
	} {
		out, err := AppendLines(nil, []Point{p}, c.prec)
		if err != nil || string(out) != c.want {
			t.Errorf("%s: got %q, %v; want %q", c.prec, out, err, c.want)
		}
	}
}

func TestEncoder_BadPointSkippedOutputStaysValid(t *testing.T) {
	pts := []Point{
		{Measurement: "m", Fields: []Field{{"f", Float(1)}}, Time: 1},
		{Measurement: "m", Fields: []Field{{"f", Float(math.NaN())}}, Time: 2},
		{Measurement: "m", Fields: []Field{{"f", String("\xff")}}, Time: 3},
		{Measurement: "m", Tags: []Tag{{"k", "a\x01"}}, Fields: []Field{{"f", Float(1)}}, Time: 4},
		{Measurement: "m", Fields: []Field{{"f", Float(4)}}, Time: 5},
	}
	out, err := AppendLines(nil, pts, Nanosecond)
	if err == nil || !strings.Contains(err.Error(), "point 1") {
		t.Fatalf("err = %v, want one naming point 1", err)
	}
	if string(out) != "m f=1 1\nm f=4 5\n" {
		t.Fatalf("output %q", out)
	}
}

func TestPoint_Validate(t *testing.T) {
	cases := map[string]Point{
		"no measurement": {Fields: []Field{{"f", Float(1)}}},
		"no fields":      {Measurement: "m"},
		"unsorted tags":  {Measurement: "m", Tags: []Tag{{"b", "1"}, {"a", "2"}}, Fields: []Field{{"f", Float(1)}}},
		"dup field":      {Measurement: "m", Fields: []Field{{"f", Float(1)}, {"f", Int(1)}}},
		"inf":            {Measurement: "m", Fields: []Field{{"f", Float(math.Inf(1))}}},
		"invalid value":  {Measurement: "m", Fields: []Field{{"f", Value{}}}},
		"empty tag key":  {Measurement: "m", Tags: []Tag{{"", "x"}}, Fields: []Field{{"f", Float(1)}}},
	}
	for name, p := range cases {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil", name)
		}
	}
	ok, err := NewPoint("m", map[string]string{"b": "1", "a": "2"}, []Field{{"f", Float(1)}}, 1)
	if err != nil || ok.Tags[0].Key != "a" {
		t.Fatalf("NewPoint = %+v, %v", ok, err)
	}
}

func TestPoint_SetTagKeepsOrder(t *testing.T) {
	p := Point{Measurement: "m", Fields: []Field{{"f", Float(1)}}}
	p.SetTag("station", "s1")
	p.SetTag("district", "d1")
	p.SetTag("zone", "z")
	p.SetTag("station", "s2")
	want := []Tag{{"district", "d1"}, {"station", "s2"}, {"zone", "z"}}
	if len(p.Tags) != 3 {
		t.Fatalf("tags %v", p.Tags)
	}
	for i := range want {
		if p.Tags[i] != want[i] {
			t.Fatalf("tags %v, want %v", p.Tags, want)
		}
	}
}

func TestSeriesKey_RoundTrip(t *testing.T) {
	cases := []Point{
		{Measurement: "air", Tags: []Tag{{"district", "d01"}, {"station", "s0001"}}},
		{Measurement: "a b,c", Tags: []Tag{{"k=1", "v 2,3\\"}}},
		{Measurement: "m"},
	}
	for _, p := range cases {
		key := p.SeriesKey("pm 2.5")
		m, tags, f, err := ParseSeriesKey(key)
		if err != nil {
			t.Fatalf("%q: %v", key, err)
		}
		if m != p.Measurement || f != "pm 2.5" || len(tags) != len(p.Tags) {
			t.Fatalf("%q → %q %v %q", key, m, tags, f)
		}
		for i := range tags {
			if tags[i] != p.Tags[i] {
				t.Fatalf("%q: tag %d = %v, want %v", key, i, tags[i], p.Tags[i])
			}
		}
	}
	if got := cases[0].SeriesKey("pm25"); got != "air,district=d01,station=s0001 pm25" {
		t.Fatalf("key = %q", got)
	}
	for _, bad := range []string{"", "m", "m,a f", "m,a=1,b f", " f"} {
		if _, _, _, err := ParseSeriesKey(bad); err == nil {
			t.Errorf("ParseSeriesKey(%q) = nil error", bad)
		}
	}
}

func TestParsePrecision(t *testing.T) {
	for in, want := range map[string]Precision{"": Nanosecond, "n": Nanosecond, "ns": Nanosecond, "u": Microsecond, "us": Microsecond, "µs": Microsecond, "ms": Millisecond, "s": Second} {
		if got, err := ParsePrecision(in); err != nil || got != want {
			t.Errorf("ParsePrecision(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParsePrecision("h"); err == nil {
		t.Error("ParsePrecision(h) = nil error")
	}
}

func pointsEqual(a, b Point) bool {
	if a.Measurement != b.Measurement || a.Time != b.Time || len(a.Tags) != len(b.Tags) || len(a.Fields) != len(b.Fields) {
		return false
	}
	for i := range a.Tags {
		if a.Tags[i] != b.Tags[i] {
			return false
		}
	}
	for i := range a.Fields {
		if a.Fields[i].Key != b.Fields[i].Key || !a.Fields[i].Value.Equal(b.Fields[i].Value) {
			return false
		}
	}
	return true
}

// A line with 20,000 fields is decoded in linear time, and a duplicate far
// into it is still found.
func TestDecode_ManyFields(t *testing.T) {
	var b strings.Builder
	b.WriteString("m ")
	for i := 0; i < 20000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("f")
		b.WriteString(strconv.Itoa(i))
		b.WriteString("=1")
	}
	line := b.String()
	pts, err := DecodeAll([]byte(line+" 1\n"), DecodeOptions{})
	if err != nil || len(pts) != 1 || len(pts[0].Fields) != 20000 {
		t.Fatalf("got %d points, err %v", len(pts), err)
	}
	_, err = DecodeAll([]byte(line+",f19999=2 1\n"), DecodeOptions{})
	if err == nil || !strings.Contains(err.Error(), `field "f19999" is duplicated`) {
		t.Fatalf("err = %v", err)
	}
}
