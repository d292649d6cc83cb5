package mqtt

import (
	"errors"
	"fmt"
	"strings"
)

// Reserved names in a topic template. Every other {name} becomes a tag.
const (
	levelMeasurement = "_measurement"
	levelField       = "_field"
	levelSkip        = "_"
)

// Template maps the levels of a topic to tags, the measurement and the field
// name. Levels are separated by "/"; each template level is a literal that
// must match, "+" (any level, ignored), "{name}" (the level's text becomes tag
// name), "{_measurement}", "{_field}", "{_}" (ignored) or, last only, "#"
// (any number of remaining levels, ignored).
type Template struct {
	levels []tmplLevel
	multi  bool // ends with "#"
	tags   int  // number of tag levels
}

type tmplLevel struct {
	kind byte   // 'l' literal, 'a' any, 't' tag, 'm' measurement, 'f' field
	text string // literal text or tag name
}

// ParseTemplate compiles a topic template.
func ParseTemplate(s string) (*Template, error) {
	if s == "" {
		return nil, errors.New("empty template")
	}
	t := &Template{}
	parts := strings.Split(s, "/")
	seen := map[string]bool{}
	for i, p := range parts {
		switch {
		case p == "#":
			if i != len(parts)-1 {
				return nil, fmt.Errorf("level %d: # must be the last level", i+1)
			}
			t.multi = true
		case p == "+":
			t.levels = append(t.levels, tmplLevel{kind: 'a'})
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
			name := p[1 : len(p)-1]
			switch name {
			case "":
				return nil, fmt.Errorf("level %d: empty {}", i+1)
			case levelSkip:
				t.levels = append(t.levels, tmplLevel{kind: 'a'})
				continue
			case levelMeasurement:
				t.levels = append(t.levels, tmplLevel{kind: 'm'})
			case levelField:
				t.levels = append(t.levels, tmplLevel{kind: 'f'})
			default:
				if strings.ContainsAny(name, "{}+#/") || strings.HasPrefix(name, "_") {
					return nil, fmt.Errorf("level %d: invalid tag name %q (names starting with _ are reserved)", i+1, name)
				}
				t.levels = append(t.levels, tmplLevel{kind: 't', text: name})
				t.tags++
			}
			if seen[name] {
				return nil, fmt.Errorf("level %d: {%s} appears twice", i+1, name)
			}
			seen[name] = true
		case strings.ContainsAny(p, "{}+#"):
			return nil, fmt.Errorf("level %d: %q mixes text and placeholders; a placeholder must be a whole level", i+1, p)
		default:
			t.levels = append(t.levels, tmplLevel{kind: 'l', text: p})
		}
	}
	return t, nil
}

// topicMatch is what a template extracts from one topic. Tag values are
// substrings of the topic and do not allocate.
type topicMatch struct {
	measurement string
	field       string
	tags        []tagKV
}

type tagKV struct{ key, value string }

// match applies the template to topic, appending tags to m.tags. It reports
// false when the topic has a different shape or a literal level differs.
func (t *Template) match(topic string, m *topicMatch) bool {
	rest := topic
	for i, l := range t.levels {
		lvl, r, more := strings.Cut(rest, "/")
		last := i == len(t.levels)-1
		if !last && !more {
			return false // the topic is shorter than the template
		}
		if last && more && !t.multi {
			return false // the topic is longer than the template
		}
		rest = r
		switch l.kind {
		case 'l':
			if lvl != l.text {
				return false
			}
		case 't':
			if lvl == "" {
				return false // an empty tag value is not a tag
			}
			m.tags = append(m.tags, tagKV{l.text, lvl})
		case 'm':
			if lvl == "" {
				return false
			}
			m.measurement = lvl
		case 'f':
			if lvl == "" {
				return false
			}
			m.field = lvl
		}
	}
	return true
}

// matchFilter reports whether an MQTT topic filter (with + and #) matches a
// topic. A shared subscription's "$share/<group>/" prefix is ignored.
func matchFilter(filter, topic string) bool {
	filter = stripShare(filter)
	// Topics starting with $ are not matched by wildcards at the first level.
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != tl {
			return false
		}
		if !fmore {
			return !tmore
		}
		if !tmore {
			// "a/#" matches "a" too.
			return frest == "#"
		}
		filter, topic = frest, trest
	}
}

// stripShare removes a "$share/<group>/" prefix.
func stripShare(filter string) string {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if _, f, ok := strings.Cut(rest, "/"); ok {
			return f
		}
	}
	return filter
}

// validFilter checks a topic filter's wildcards.
func validFilter(filter string) error {
	f := stripShare(filter)
	if f == "" {
		return errors.New("empty topic filter")
	}
	if strings.HasPrefix(filter, "$share/") && f == filter {
		return errors.New("shared subscription needs $share/<group>/<filter>")
	}
	parts := strings.Split(f, "/")
	for i, p := range parts {
		if strings.Contains(p, "#") && (p != "#" || i != len(parts)-1) {
			return errors.New("# must be a whole level and the last one")
		}
		if strings.Contains(p, "+") && p != "+" {
			return errors.New("+ must be a whole level")
		}
	}
	return nil
}
