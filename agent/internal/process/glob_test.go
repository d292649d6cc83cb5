package process

import (
	"path"
	"testing"
)

func TestCompileGlob_kind(t *testing.T) {
	tests := []struct {
		pattern string
		kind    globKind
		lit     string
	}{
		{"pm25", globLiteral, "pm25"},
		{"*", globAny, ""},
		{"pm*", globPrefix, "pm"},
		{"*_debug", globSuffix, "_debug"},
		{"*temp*", globContains, "temp"},
		{"*a/b*", globGeneral, ""},
		{"pm?5", globGeneral, ""},
		{"s[0-9]*", globGeneral, ""},
		{`a\*`, globGeneral, ""},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			g, err := compileGlob(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if g.kind != tt.kind || g.lit != tt.lit {
				t.Errorf("kind %d lit %q, want %d %q", g.kind, g.lit, tt.kind, tt.lit)
			}
		})
	}
}

func TestCompileGlob_bad(t *testing.T) {
	for _, p := range []string{"a[", "[", `x\`, "s[0-"} {
		if _, err := compileGlob(p); err == nil {
			t.Errorf("compileGlob(%q) accepted a malformed pattern", p)
		}
	}
}

func TestGlob_match(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"pm25", "pm25", true},
		{"pm25", "pm2", false},
		{"pm*", "pm10", true},
		{"pm*", "pm", true},
		{"pm*", "no2", false},
		{"*_debug", "x_debug", true},
		{"*_debug", "_debug", true},
		{"*_debug", "debug", false},
		{"*temp*", "air_temperature", true},
		{"test-*", "test-01", true},
		{"s000?", "s0001", true},
		{"s[0-9]*", "s1x", true},
		{"s[0-9]*", "sx", false},
		// As in path.Match, '*' does not cross '/'.
		{"*", "a/b", false},
		{"sensors/*", "sensors/a", true},
		{"sensors/*", "sensors/a/b", false},
		{"*/b", "a/b", true},
		{"*/b", "x/a/b", false},
	}
	for _, tt := range tests {
		g, err := compileGlob(tt.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.match(tt.name); got != tt.want {
			t.Errorf("%q.match(%q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

// FuzzGlob checks that the fast paths give exactly path.Match's answers.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"pm*", "pm25"}, {"*x", "a/x"}, {"*a*", "b/a"}, {"*", ""}, {"a*b", "a/b"}, {"[a-", "a"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		want, err := path.Match(pattern, name)
		g, cerr := compileGlob(pattern)
		if err != nil && cerr == nil {
			t.Fatalf("compileGlob(%q) accepted what path.Match rejects: %v", pattern, err)
		}
		if cerr != nil {
			return
		}
		if got := g.match(name); got != want {
			t.Fatalf("%q.match(%q) = %v, path.Match says %v", pattern, name, got, want)
		}
	})
}
