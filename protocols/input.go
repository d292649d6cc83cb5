package protocols

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
)

// Accumulator receives the points an input reads. Write returns only once the
// points are durable (in the agent: fsync'd in the buffer), so an input may
// acknowledge its device after a nil return and must not before. Write must
// be safe for concurrent use. The accumulator takes ownership of pts.
type Accumulator interface {
	Write(ctx context.Context, pts []Point) error
}

// Input reads one device protocol. The registry creates a zero Input with its
// defaults, the config loader decodes the input's YAML block into it (the
// Input's exported fields carry yaml tags), then Init and Run are called.
type Input interface {
	// Init validates the configuration and prepares the input without doing
	// I/O; it reports every problem at once (errors.Join). log is never nil.
	Init(log *slog.Logger) error
	// Run reads until ctx is done and then returns nil; it returns an error
	// only when it cannot go on at all. Bad device data is logged and
	// counted, never fatal.
	Run(ctx context.Context, acc Accumulator) error
}

// SampleConfig is implemented by inputs that document themselves with an
// example YAML block (shown by `citysense-agent inputs`).
type SampleConfig interface {
	SampleConfig() string
}

// Factory returns a new Input of one type with its defaults filled in.
type Factory func() Input

var registry = struct {
	sync.RWMutex
	m map[string]Factory
}{m: map[string]Factory{}}

// Register makes an input type available under name. It is meant to be called
// from init functions and panics on an empty name, a nil factory or a name
// registered twice, since each is a programming error.
func Register(name string, f Factory) {
	if name == "" || f == nil {
		panic("protocols: Register with empty name or nil factory")
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[name]; dup {
		panic(fmt.Sprintf("protocols: input %q registered twice", name))
	}
	registry.m[name] = f
}

// Lookup returns the factory of a registered input type.
func Lookup(name string) (Factory, bool) {
	registry.RLock()
	defer registry.RUnlock()
	f, ok := registry.m[name]
	return f, ok
}

// Types lists the registered input types, sorted.
func Types() []string {
	registry.RLock()
	defer registry.RUnlock()
	out := make([]string, 0, len(registry.m))
	for k := range registry.m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
