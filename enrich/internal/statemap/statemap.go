package statemap

import (
	"strings"
	"sync"
	"sync/atomic"
)

// Map maps station ids to *V. Lookups of existing keys are lock-free and do
// not allocate: sync.Map suits keys that are written once and read forever.
type Map[V any] struct {
	m    sync.Map // string → *V
	n    atomic.Int64
	max  int64
	make func() *V
}

// New returns a map holding at most max entries (≤ 0: unbounded) whose
// values are created by mk.
func New[V any](max int, mk func() *V) *Map[V] {
	return &Map[V]{max: int64(max), make: mk}
}

// Get returns the entry of key, creating it if there is room. It reports
// false when key is new and the map is full.
func (m *Map[V]) Get(key string) (*V, bool) {
	if v, ok := m.m.Load(key); ok {
		return v.(*V), true
	}
	// Reserve a slot first, so that concurrent callers cannot overshoot
	// the bound between checking and storing.
	if n := m.n.Add(1); m.max > 0 && n > m.max {
		m.n.Add(-1)
		if v, ok := m.m.Load(key); ok { // added meanwhile
			return v.(*V), true
		}
		return nil, false
	}
	// Clone the key: it usually points into a decoded batch, which the
	// map must not keep alive.
	v, loaded := m.m.LoadOrStore(strings.Clone(key), m.make())
	if loaded {
		m.n.Add(-1)
	}
	return v.(*V), true
}

// Len returns the number of entries.
func (m *Map[V]) Len() int { return int(m.n.Load()) }
