package mqtt

import (
	"testing"
)

// FuzzJSONParser: any payload either yields valid points or an error, never
// a panic or an invalid point.
func FuzzJSONParser(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":[1,2,{"c":true}]},"ts":"1.5"}`, `[{"ts":1,"v":2}]`, `{"ts":1e400}`, `{"v":"x"}`, `{"":1}`} {
		f.Add([]byte(s))
	}
	parsers := []*jsonParser{
		newJSONParser(JSONOptions{}),
		newJSONParser(JSONOptions{TimePath: "ts", TimeFormat: TimeUnix}),
		newJSONParser(JSONOptions{Fields: []string{"v", "a.b"}, Tags: []string{"t"}, TimePath: "ts", TimeFormat: TimeRFC3339}),
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, jp := range parsers {
			var a alloc
			pts, err := jp.parse(nil, payload, env("station", "s1"), &a)
			if err != nil {
				continue
			}
			for i := range pts {
				if verr := pts[i].Validate(); verr != nil {
					t.Fatalf("invalid point %v from %q: %v", pts[i], payload, verr)
				}
			}
		}
	})
}

// FuzzTemplate: parsing any template and matching any topic never panics;
// a match yields non-empty tag values that are levels of the topic.
func FuzzTemplate(f *testing.F) {
	f.Add("sensors/{district}/{station}/{_measurement}", "sensors/d01/s1/air")
	f.Add("a/+/#", "a/b/c")
	f.Add("{_field}", "x")
	f.Fuzz(func(t *testing.T, tmpl, topic string) {
		tm, err := ParseTemplate(tmpl)
		if err != nil {
			return
		}
		var m topicMatch
		if !tm.match(topic, &m) {
			return
		}
		if len(m.tags) != tm.tags {
			t.Fatalf("%q on %q: %d tags, template has %d", tmpl, topic, len(m.tags), tm.tags)
		}
		for _, kv := range m.tags {
			if kv.value == "" {
				t.Fatalf("%q on %q: empty tag value for %q", tmpl, topic, kv.key)
			}
		}
		_ = matchFilter(tmpl, topic)
	})
}

// FuzzValueTemplate: any template and payload either yields fields or an error.
func FuzzValueTemplate(f *testing.F) {
	f.Add("T={temperature};H={humidity}", "T=21.5;H=40")
	f.Add("{v} C", "12 C")
	f.Fuzz(func(t *testing.T, tmpl, payload string) {
		vt, err := ParseValueTemplate(tmpl)
		if err != nil {
			return
		}
		var a alloc
		fields, err := vt.Fields(nil, payload, &a)
		if err != nil {
			return
		}
		for _, fl := range fields {
			if fl.Key == "" {
				t.Fatalf("%q on %q: empty field name", tmpl, payload)
			}
		}
	})
}
