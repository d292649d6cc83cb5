package mqtt

import (
	"reflect"
	"testing"
)

func TestTemplate_match(t *testing.T) {
	tests := []struct {
		name, tmpl, topic string
		ok                bool
		want              topicMatch
	}{
		{"tags and measurement", "sensors/{district}/{station}/{_measurement}", "sensors/d01/s0001/air", true,
			topicMatch{measurement: "air", tags: []tagKV{{"district", "d01"}, {"station", "s0001"}}}},
		{"field", "meters/{meter}/{_field}", "meters/m1/power", true, topicMatch{field: "power", tags: []tagKV{{"meter", "m1"}}}},
		{"skip levels", "a/+/{_}/{x}", "a/b/c/d", true, topicMatch{tags: []tagKV{{"x", "d"}}}},
		{"hash rest", "a/{x}/#", "a/b/c/d/e", true, topicMatch{tags: []tagKV{{"x", "b"}}}},
		{"hash matches nothing more", "a/{x}/#", "a/b", true, topicMatch{tags: []tagKV{{"x", "b"}}}},
		{"too short", "a/{x}/{y}", "a/b", false, topicMatch{}},
		{"too long", "a/{x}", "a/b/c", false, topicMatch{}},
		{"literal differs", "a/{x}", "b/c", false, topicMatch{}},
		{"empty tag level", "a/{x}/c", "a//c", false, topicMatch{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm, err := ParseTemplate(tt.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			var got topicMatch
			ok := tm.match(tt.topic, &got)
			if ok != tt.ok {
				t.Fatalf("match = %v, want %v", ok, tt.ok)
			}
			if ok && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseTemplate_errors(t *testing.T) {
	for _, s := range []string{"", "a/#/b", "a/{}", "a/{x}/{x}", "a/x{y}", "a/{_m}", "a/{b/c}"} {
		if _, err := ParseTemplate(s); err == nil {
			t.Errorf("ParseTemplate(%q) = nil error", s)
		}
	}
}

func TestMatchFilter(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/#", "a/b/c", true},
		{"a/#", "a", true},
		{"#", "a/b", true},
		{"+/b", "$SYS/b", false},
		{"#", "$SYS/x", false},
		{"$share/g/a/+", "a/b", true},
		{"a/b/c", "a/b", false},
		{"+", "", true},
	}
	for _, tt := range tests {
		if got := matchFilter(tt.filter, tt.topic); got != tt.want {
			t.Errorf("matchFilter(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestValidFilter(t *testing.T) {
	for f, ok := range map[string]bool{"a/b": true, "a/+/c": true, "a/#": true, "#": true, "$share/g/a/#": true,
		"": false, "a/#/b": false, "a/b#": false, "a+/b": false, "$share/g": false} {
		if err := validFilter(f); (err == nil) != ok {
			t.Errorf("validFilter(%q) = %v, want ok=%v", f, err, ok)
		}
	}
}
