package mqtt

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
)

const now = int64(1_767_225_600_000_000_000) // 2026-01-01T00:00:00Z

func env(tags ...string) *envelope {
	e := &envelope{measurement: "air", field: "value", now: now}
	for i := 0; i+1 < len(tags); i += 2 {
		e.tags = append(e.tags, protocols.Tag{Key: tags[i], Value: tags[i+1]})
	}
	return e
}

func pt(m string, tags []protocols.Tag, ts int64, kv ...any) protocols.Point {
	p := protocols.Point{Measurement: m, Tags: tags, Time: ts}
	for i := 0; i+1 < len(kv); i += 2 {
		var v protocols.Value
		switch x := kv[i+1].(type) {
		case float64:
			v = protocols.Float(x)
		case int:
			v = protocols.Int(int64(x))
		case bool:
			v = protocols.Bool(x)
		case string:
			v = protocols.String(x)
		}
		p.Fields = append(p.Fields, protocols.Field{Key: kv[i].(string), Value: v})
	}
	return p
}

func tags(kv ...string) []protocols.Tag {
	var out []protocols.Tag
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, protocols.Tag{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

func TestJSONParser_parse(t *testing.T) {
	st := tags("station", "s1")
	tests := []struct {
		name    string
		opts    JSONOptions
		payload string
		want    []protocols.Point
		wantErr string
	}{
		{"flat all numbers", JSONOptions{}, `{"pm25":12.3,"no2":31,"ok":true,"note":"x"}`,
			[]protocols.Point{pt("air", st, now, "pm25", 12.3, "no2", 31.0, "ok", true)}, ""},
		{"nested flattened", JSONOptions{}, `{"a":{"b":1,"c":{"d":2}},"v":[3,4],"n":null}`,
			[]protocols.Point{pt("air", st, now, "a_b", 1.0, "a_c_d", 2.0, "v_0", 3.0, "v_1", 4.0)}, ""},
		{"selected fields incl. string", JSONOptions{Fields: []string{"data.pm25", "status"}}, `{"data":{"pm25":5,"pm10":7},"status":"ok"}`,
			[]protocols.Point{pt("air", st, now, "data_pm25", 5.0, "status", "ok")}, ""},
		{"tags from payload", JSONOptions{Tags: []string{"meta.sensor", "id"}}, `{"meta":{"sensor":"sds011"},"id":7,"pm25":1}`,
			[]protocols.Point{pt("air", tags("id", "7", "meta_sensor", "sds011", "station", "s1"), now, "pm25", 1.0)}, ""},
		{"unix seconds", JSONOptions{TimePath: "ts"}, `{"ts":1735689600,"v":1}`,
			[]protocols.Point{pt("air", st, 1735689600e9, "v", 1.0)}, ""},
		{"unix fractional", JSONOptions{TimePath: "ts", TimeFormat: "unix"}, `{"ts":1735689600.25,"v":1}`,
			[]protocols.Point{pt("air", st, 1735689600250000000, "v", 1.0)}, ""},
		{"unix ms string", JSONOptions{TimePath: "t.ms", TimeFormat: "unix_ms"}, `{"t":{"ms":"1735689600123"},"v":1}`,
			[]protocols.Point{pt("air", st, 1735689600123000000, "v", 1.0)}, ""},
		{"unix ns exact", JSONOptions{TimePath: "ts", TimeFormat: "unix_ns"}, `{"ts":1735689600123456789,"v":1}`,
			[]protocols.Point{pt("air", st, 1735689600123456789, "v", 1.0)}, ""},
		{"rfc3339", JSONOptions{TimePath: "time", TimeFormat: "rfc3339"}, `{"time":"2025-01-01T01:00:00.5+01:00","v":1}`,
			[]protocols.Point{pt("air", st, 1735689600500000000, "v", 1.0)}, ""},
		{"go layout", JSONOptions{TimePath: "time", TimeFormat: "2006-01-02 15:04:05"}, `{"time":"2025-01-01 00:00:00","v":1}`,
			[]protocols.Point{pt("air", st, 1735689600e9, "v", 1.0)}, ""},
		{"array of objects", JSONOptions{TimePath: "ts"}, `[{"ts":1,"v":1},{"ts":2,"v":2}]`,
			[]protocols.Point{pt("air", st, 1e9, "v", 1.0), pt("air", st, 2e9, "v", 2.0)}, ""},
		{"missing time", JSONOptions{TimePath: "ts"}, `{"v":1}`, nil, `no timestamp at "ts"`},
		{"bad time", JSONOptions{TimePath: "ts"}, `{"ts":"soon","v":1}`, nil, `invalid unix timestamp "soon"`},
		{"no fields", JSONOptions{}, `{"note":"x"}`, nil, "no fields"},
		{"not json", JSONOptions{}, `{"v":`, nil, "json:"},
		{"scalar", JSONOptions{}, `42`, nil, "want an object"},
		{"array of scalars", JSONOptions{}, `[1]`, nil, "element 0 is number"},
		{"duplicate key", JSONOptions{}, `{"v":1,"v":2}`, nil, `field "v" is duplicated`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jp := newJSONParser(tt.opts)
			var a alloc
			got, err := jp.parse(nil, []byte(tt.payload), env("station", "s1"), &a)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestParseUnix(t *testing.T) {
	tests := []struct {
		s, format string
		want      int64
		ok        bool
	}{
		{"1", TimeUnix, 1e9, true},
		{"1.5", TimeUnix, 15e8, true},
		{"-1.5", TimeUnix, -15e8, true},
		{"1.0000000019", TimeUnix, 1000000001, true},
		{"1e3", TimeUnixMS, 1e9, true},
		{"1735689600123", TimeUnixMS, 1735689600123e6, true},
		{"9223372036854775807", TimeUnix, 0, false},
		{"1.x", TimeUnix, 0, false},
		{"", TimeUnix, 0, false},
	}
	for _, tt := range tests {
		got, err := parseUnix(tt.s, tt.format)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseUnix(%q, %s) = %d, %v; want %d ok=%v", tt.s, tt.format, got, err, tt.want, tt.ok)
		}
	}
}

func TestValueParser_parse(t *testing.T) {
	st := tags("station", "s1")
	tests := []struct {
		dataType, payload string
		want              protocols.Value
		ok                bool
	}{
		{TypeFloat, " 21.5\n", protocols.Float(21.5), true},
		{TypeInt, "42", protocols.Int(42), true},
		{TypeUint, "42", protocols.Uint(42), true},
		{TypeBool, "true", protocols.Bool(true), true},
		{TypeString, "on", protocols.String("on"), true},
		{TypeFloat, "NaN", protocols.Value{}, false},
		{TypeFloat, "abc", protocols.Value{}, false},
		{TypeInt, "1.5", protocols.Value{}, false},
	}
	for _, tt := range tests {
		vp := &valueParser{dataType: tt.dataType}
		var a alloc
		e := env("station", "s1")
		e.field = "power"
		got, err := vp.parse(nil, []byte(tt.payload), e, &a)
		if !tt.ok {
			if err == nil {
				t.Errorf("%s %q: no error", tt.dataType, tt.payload)
			}
			continue
		}
		want := []protocols.Point{{Measurement: "air", Tags: st, Fields: []protocols.Field{{Key: "power", Value: tt.want}}, Time: now}}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s %q: got %v, %v; want %v", tt.dataType, tt.payload, got, err, want)
		}
	}
}

func TestValueTemplate_Fields(t *testing.T) {
	tests := []struct {
		tmpl, payload string
		want          []protocols.Field
		wantErr       string
	}{
		{"T={temperature};H={humidity}", "T=21.5;H=40", []protocols.Field{{Key: "temperature", Value: protocols.Float(21.5)}, {Key: "humidity", Value: protocols.Float(40)}}, ""},
		{"{v} C", "12 C", []protocols.Field{{Key: "v", Value: protocols.Float(12)}}, ""},
		{"{state},{_},{n}", "on,junk,3", []protocols.Field{{Key: "state", Value: protocols.String("on")}, {Key: "n", Value: protocols.Float(3)}}, ""},
		{"{ok}", "true", []protocols.Field{{Key: "ok", Value: protocols.Bool(true)}}, ""},
		{"T={t};", "X=1;", nil, "does not start with"},
		{"T={t};H={h}", "T=1", nil, `no ";H="`},
		{"{v} C", "12 C extra", nil, "unexpected text"},
	}
	for _, tt := range tests {
		vt, err := ParseValueTemplate(tt.tmpl)
		if err != nil {
			t.Fatalf("%q: %v", tt.tmpl, err)
		}
		var a alloc
		got, err := vt.Fields(nil, tt.payload, &a)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q on %q: err = %v, want %q", tt.tmpl, tt.payload, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q on %q: got %v, %v; want %v", tt.tmpl, tt.payload, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "abc", "{a}{b}", "{a", "{a}}", "{a};{a}", "{_}"} {
		if _, err := ParseValueTemplate(bad); err == nil {
			t.Errorf("ParseValueTemplate(%q) = nil error", bad)
		}
	}
}

func TestLineParser_parse(t *testing.T) {
	lp := &lineParser{precision: protocols.Second}
	got, err := lp.parse(nil, []byte("air,station=s9 pm25=1 1735689600\nbad line\nair pm25=2\n"), env("district", "d1", "station", "s1"), nil)
	var de *protocols.DecodeErrors
	if !errors.As(err, &de) || len(de.Errs) != 1 || de.Errs[0].Line != 2 {
		t.Fatalf("err = %v, want line 2 named", err)
	}
	want := []protocols.Point{
		pt("air", tags("district", "d1", "station", "s9"), 1735689600e9, "pm25", 1.0),
		pt("air", tags("district", "d1", "station", "s1"), time.Unix(0, now).UnixNano(), "pm25", 2.0),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}

func TestAlloc_pointsOwnTheirSlices(t *testing.T) {
	var a alloc
	e := env("station", "s1")
	p1, _ := a.point("m", e, nil, []protocols.Field{{Key: "a", Value: protocols.Float(1)}}, 1)
	p2, _ := a.point("m", e, nil, []protocols.Field{{Key: "b", Value: protocols.Float(2)}}, 2)
	p1.SetTag("x", "y")
	p1.Fields = append(p1.Fields, protocols.Field{Key: "c", Value: protocols.Float(3)})
	if len(p2.Tags) != 1 || p2.Tags[0].Key != "station" || p2.Fields[0].Key != "b" {
		t.Fatalf("appending to one point changed another: %v", p2)
	}
}
