// Package confx loads CitySense YAML configuration strictly: an unknown key or a
// value of the wrong type is an error naming file:line, every problem is
// reported at once, and ${ENV} / ${ENV:-default} references are expanded
// before parsing. It also provides the Duration and Size value types.
//
// It is shared by the agent's and the collector's config packages and by
// plugins that decode their own YAML block; it imports nothing of CitySense.
package confx

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Problem is one configuration error at a place in a file.
type Problem struct {
	File string
	Line int
	Path string // dotted path of the key, e.g. inputs[0].interval
	Msg  string
}

func (p Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every error found in one file. It unwraps to each Problem.
type Problems []Problem

func (ps Problems) Error() string {
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap exposes each problem to errors.As.
func (ps Problems) Unwrap() []error {
	out := make([]error, len(ps))
	for i := range ps {
		out[i] = ps[i]
	}
	return out
}

// Doc is a parsed YAML document with the line of every key path, so that
// validation done after decoding can still point at the file:line.
type Doc struct {
	File  string
	Root  *yaml.Node
	lines map[string]int
}

// Line returns the line of a key path such as "inputs[0].interval", or of its
// nearest ancestor that exists, or 0.
func (d *Doc) Line(path string) int {
	if d == nil {
		return 0
	}
	for path != "" {
		if l, ok := d.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// At builds a Problem for a path, looking up its line.
func (d *Doc) At(path, format string, args ...any) Problem {
	p := Problem{Path: path, Msg: fmt.Sprintf(format, args...)}
	if d != nil {
		p.File, p.Line = d.File, d.Line(path)
	}
	return p
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${NAME} and ${NAME:-default} in every scalar value of
// the tree. Expanding after parsing, rather than in the raw text, leaves
// comments alone and means a variable's value can never change the YAML
// structure (a password containing ": " or a newline stays one string).
// A reference to an unset variable without a default is a problem, since an
// empty credential or address is almost never what was meant.
func expandEnv(file string, n *yaml.Node, probs *Problems) {
	if n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		var missing []string
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			sub := envRef.FindStringSubmatch(m)
			if v, ok := os.LookupEnv(sub[1]); ok {
				return v
			}
			if sub[2] != "" {
				return sub[3]
			}
			missing = append(missing, sub[1])
			return m
		})
		if len(missing) > 0 {
			*probs = append(*probs, Problem{File: file, Line: n.Line,
				Msg: "environment variable not set: " + strings.Join(missing, ", ")})
		}
		// The parser tagged "${PORT}" as a string; clear the tag so yaml.v3
		// resolves the expanded text, and an unquoted ${PORT} can fill an int
		// field. A quoted reference stays a string.
		n.Tag = ""
		return
	}
	for _, c := range n.Content {
		expandEnv(file, c, probs)
	}
}

// LoadFile reads, expands and strictly decodes a YAML file into v. v should
// already hold the defaults; keys absent from the file keep them.
func LoadFile(path string, v any) (*Doc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config %q: %w", path, err)
	}
	return Load(path, data, v)
}

// Load is LoadFile on bytes already read; file names them in errors.
func Load(file string, data []byte, v any) (*Doc, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlProblems(file, err)
	}
	doc := &Doc{File: file, Root: &root, lines: map[string]int{}}
	if len(root.Content) == 0 {
		return doc, nil // an empty file means all defaults
	}
	var probs Problems
	expandEnv(file, &root, &probs)
	if err := doc.Decode(root.Content[0], "", v); err != nil {
		var more Problems
		if errors.As(err, &more) {
			probs = append(probs, more...)
		} else {
			probs = append(probs, Problem{File: file, Msg: err.Error()})
		}
	}
	if len(probs) > 0 {
		sort.SliceStable(probs, func(i, j int) bool { return probs[i].Line < probs[j].Line })
		return doc, probs
	}
	return doc, nil
}

// Decode strictly decodes node (found at path) into v, recording key lines.
// Plugins whose config arrives as a yaml.Node use it to decode their block.
func (d *Doc) Decode(node *yaml.Node, path string, v any) error {
	var probs Problems
	d.walk(node, reflect.TypeOf(v), path, &probs)
	if err := node.Decode(v); err != nil {
		probs = append(probs, yamlProblems(d.File, err)...)
	}
	if len(probs) == 0 {
		return nil
	}
	sort.SliceStable(probs, func(i, j int) bool { return probs[i].Line < probs[j].Line })
	return dedupe(probs)
}

func dedupe(ps Problems) Problems {
	out := ps[:0]
	seen := map[string]bool{}
	for _, p := range ps {
		if k := p.Error(); !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	return out
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlProblems turns yaml.v3's errors ("line 3: cannot unmarshal ...") into Problems.
func yamlProblems(file string, err error) Problems {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out Problems
	for _, m := range msgs {
		p := Problem{File: file, Msg: m}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			p.Line, _ = strconv.Atoi(sm[1])
			p.Msg = sm[2]
		}
		out = append(out, p)
	}
	return out
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	nodeType        = reflect.TypeFor[yaml.Node]()
)

// walk checks mapping keys against struct fields and records lines. yaml.v3
// can do strict decoding only from a Decoder, not from a Node, and then stops
// at the first error; walking ourselves reports every unknown key.
func (d *Doc) walk(n *yaml.Node, t reflect.Type, path string, probs *Problems) {
	if n == nil || t == nil {
		return
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		if _, ok := d.lines[path]; !ok {
			d.lines[path] = n.Line
		}
	}
	for t.Kind() == reflect.Pointer {
		if t.Implements(unmarshalerType) {
			return
		}
		t = t.Elem()
	}
	if t == nodeType || reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // yaml.v3 reports the type mismatch itself
		}
		fields := structFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			sub := joinPath(path, k.Value)
			d.lines[sub] = k.Line
			f, ok := fields[k.Value]
			if !ok {
				*probs = append(*probs, Problem{File: d.File, Line: k.Line, Path: sub,
					Msg: fmt.Sprintf("unknown key %q (known: %s)", k.Value, knownKeys(fields))})
				continue
			}
			d.walk(val, f, sub, probs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			sub := joinPath(path, k.Value)
			d.lines[sub] = k.Line
			d.walk(n.Content[i+1], t.Elem(), sub, probs)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			d.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), probs)
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// structFields maps YAML key names to field types, following yaml.v3's rules:
// the tag name, or the lowercased field name, and ",inline" structs flattened.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range structFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func knownKeys(fields map[string]reflect.Type) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// Duration is a time.Duration written as "10s", "5m", "1h30m" or "90d".
type Duration time.Duration

// UnmarshalYAML parses Go durations plus a "d" (24 h) unit.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration in Go's notation.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// ParseDuration accepts Go durations and whole days ("90d").
func ParseDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		n, err := strconv.ParseInt(strings.TrimSuffix(s, "d"), 10, 64)
		if err == nil && n >= 0 && n < 1<<20 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 10s, 5m, 2h, 90d)", s)
	}
	return v, nil
}

// Size is a byte count written as "256MiB", "1GB", "64k" or a plain number.
type Size int64

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1000, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1000 * 1000, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1000 * 1000 * 1000, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1000 * 1000 * 1000 * 1000, "tib": 1 << 40,
}

// ParseSize reads a byte count with an optional unit.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 512KiB, 256MiB, 1GB)", s)
	}
	return int64(f * float64(mult)), nil
}

// UnmarshalYAML parses a size.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = Size(v)
	return nil
}

// MarshalYAML writes the size in bytes.
func (s Size) MarshalYAML() (any, error) { return int64(s), nil }

// Key is a scalar taken out of a mapping by Without, with its line.
type Key struct {
	Value string
	Line  int // 0 when the key was absent
}

// Without returns a copy of the mapping n without the given keys, and the
// values those keys had. Plugin blocks use it: `type:` (and `name:`) select
// and label a plugin and are not fields of its configuration, so they are
// taken out before the block is decoded strictly into the plugin.
func Without(n *yaml.Node, keys ...string) (*yaml.Node, map[string]Key) {
	taken := make(map[string]Key, len(keys))
	cp := *n
	cp.Content = make([]*yaml.Node, 0, len(n.Content))
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if slices.Contains(keys, k.Value) {
			taken[k.Value] = Key{Value: v.Value, Line: k.Line}
			continue
		}
		cp.Content = append(cp.Content, k, v)
	}
	return &cp, taken
}

// Place appends the problems in err to probs, positioned for a plugin
// block at path base: a Problem that already has a place (a file or a line,
// possibly in another file such as a station registry) keeps it; one with a
// path relative to the block goes to base.path; anything else, a plain
// error included, goes to base. Joined errors are taken apart.
func (d *Doc) Place(probs Problems, base string, err error) Problems {
	var leaves []error
	var flatten func(error)
	flatten = func(e error) {
		if m, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range m.Unwrap() {
				flatten(x)
			}
			return
		}
		leaves = append(leaves, e)
	}
	flatten(err)
	for _, e := range leaves {
		var p Problem
		switch {
		case errors.As(e, &p) && (p.File != "" || p.Line > 0):
			probs = append(probs, p)
		case errors.As(e, &p) && p.Path != "":
			probs = append(probs, d.At(joinPath(base, p.Path), "%s", p.Msg))
		case errors.As(e, &p):
			probs = append(probs, d.At(base, "%s", p.Msg))
		default:
			probs = append(probs, d.At(base, "%v", e))
		}
	}
	return probs
}

// CheckListen validates a listen address host:port (an empty host means
// every interface, port 0 a free one). example is shown in the error, e.g.
// "127.0.0.1:8186", so the message fits the key it is about.
func CheckListen(addr, example string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port such as %s, got %q", example, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid port %q", port)
	}
	return nil
}
