package query

import (
	"context"
	"sync/atomic"

	"github.com/citysense/citysense/collector/internal/store"
)

// ContextLookuper is an optional interface of a Source whose Lookup needs
// the request's context: one that asks other nodes, and may find that some
// of them cannot answer (see MarkPartial). The engine calls LookupContext
// instead of Lookup when the Source has it.
type ContextLookuper interface {
	LookupContext(ctx context.Context, sel store.Selector) ([]store.SeriesRef, error)
}

type partialKey struct{}

// partialMark is set by MarkPartial during one request; the calls of a
// request may run on several goroutines.
type partialMark struct{ set atomic.Bool }

// withPartial returns ctx carrying a fresh mark.
func withPartial(ctx context.Context) (context.Context, *partialMark) {
	m := &partialMark{}
	return context.WithValue(ctx, partialKey{}, m), m
}

// MarkPartial records, for the request ctx belongs to, that the Source's
// answer may be incomplete (a node holding part of the data could not be
// reached): the engine then answers with Result.Partial set. It is a no-op
// when ctx carries no mark, as outside Engine.Series, Latest and RawPage.
// It is safe for concurrent use.
func MarkPartial(ctx context.Context) {
	if m, ok := ctx.Value(partialKey{}).(*partialMark); ok {
		m.set.Store(true)
	}
}

// marked reports whether MarkPartial was called for m's request.
func (m *partialMark) marked() bool { return m != nil && m.set.Load() }
