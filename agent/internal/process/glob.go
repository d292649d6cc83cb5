package process

import (
	"path"
	"strings"
)

// globKind selects how a glob is matched. Most patterns in a processor
// configuration are a literal, a prefix or a suffix; matching those with
// string functions instead of path.Match keeps the hot path free of the
// general matcher while giving exactly its answers (see FuzzGlob).
type globKind uint8

const (
	globLiteral  globKind = iota // no metacharacters: equality
	globAny                      // "*"
	globPrefix                   // "abc*"
	globSuffix                   // "*abc"
	globContains                 // "*abc*"
	globGeneral                  // anything else: path.Match
)

// glob is one compiled path.Match pattern. As in path.Match, '*' and '?' do
// not match '/', so "sensors/*" matches "sensors/a" but not "sensors/a/b".
type glob struct {
	pattern string
	kind    globKind
	lit     string
}

func compileGlob(pattern string) (glob, error) {
	// path.Match validates the whole pattern even when the name does not
	// match, so matching against "" finds every malformed pattern up front.
	if _, err := path.Match(pattern, ""); err != nil {
		return glob{}, err
	}
	g := glob{pattern: pattern, kind: globGeneral}
	const meta = `*?[\`
	switch {
	case !strings.ContainsAny(pattern, meta):
		g.kind, g.lit = globLiteral, pattern
	case pattern == "*":
		g.kind = globAny
	case strings.HasSuffix(pattern, "*") && !strings.ContainsAny(pattern[:len(pattern)-1], meta):
		g.kind, g.lit = globPrefix, pattern[:len(pattern)-1]
	case strings.HasPrefix(pattern, "*") && !strings.ContainsAny(pattern[1:], meta):
		g.kind, g.lit = globSuffix, pattern[1:]
	case len(pattern) > 2 && pattern[0] == '*' && pattern[len(pattern)-1] == '*' &&
		!strings.ContainsAny(pattern[1:len(pattern)-1], meta+"/"):
		g.kind, g.lit = globContains, pattern[1:len(pattern)-1]
	}
	return g, nil
}

func (g *glob) match(s string) bool {
	switch g.kind {
	case globLiteral:
		return s == g.lit
	case globAny:
		return strings.IndexByte(s, '/') < 0
	case globPrefix:
		return strings.HasPrefix(s, g.lit) && strings.IndexByte(s[len(g.lit):], '/') < 0
	case globSuffix:
		return strings.HasSuffix(s, g.lit) && strings.IndexByte(s[:len(s)-len(g.lit)], '/') < 0
	case globContains:
		return strings.IndexByte(s, '/') < 0 && strings.Contains(s, g.lit)
	}
	ok, _ := path.Match(g.pattern, s) // validated in compileGlob
	return ok
}

// matcher matches a name against a list of globs; it matches when any
// glob does. The zero matcher matches nothing; a stage whose list is
// optional uses all (set when the list was left out) for "everything".
type matcher struct {
	all   bool
	globs []glob
}

// matchAll is the matcher of a selector that was left out.
var matchAll = matcher{all: true}

func (m *matcher) match(s string) bool {
	if m.all {
		return true
	}
	for i := range m.globs {
		if m.globs[i].match(s) {
			return true
		}
	}
	return false
}
