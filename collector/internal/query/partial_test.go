package query

import (
	"context"
	"testing"
	"time"

	"github.com/citysense/citysense/collector/internal/store"
)

// markingSource is the shared store, marking the answer partial from the
// calls named in marks; it counts the calls to LookupContext and Lookup.
type markingSource struct {
	*store.Store
	marks               map[string]bool
	ctxLookups, lookups int
}

func (m *markingSource) Lookup(sel store.Selector) ([]store.SeriesRef, error) {
	m.lookups++
	return m.Store.Lookup(sel)
}

func (m *markingSource) LookupContext(ctx context.Context, sel store.Selector) ([]store.SeriesRef, error) {
	m.ctxLookups++
	if m.marks["lookup"] {
		MarkPartial(ctx)
	}
	return m.Store.Lookup(sel)
}

func (m *markingSource) ReadRaw(ctx context.Context, refs []store.SeriesRef, from, to int64, fn func(int, []store.Sample) error) error {
	if m.marks["raw"] {
		MarkPartial(ctx)
	}
	return m.Store.ReadRaw(ctx, refs, from, to, fn)
}

func (m *markingSource) ReadRollups(ctx context.Context, refs []store.SeriesRef, res time.Duration, from, to int64, fn func(int, []store.Bucket) error) error {
	if m.marks["rollups"] {
		MarkPartial(ctx)
	}
	return m.Store.ReadRollups(ctx, refs, res, from, to, fn)
}

func (m *markingSource) Latest(ctx context.Context, refs []store.SeriesRef, from, at int64, fn func(int, store.Sample) error) error {
	if m.marks["latest"] {
		MarkPartial(ctx)
	}
	return m.Store.Latest(ctx, refs, from, at, fn)
}

type otherKey struct{}

func TestMarkPartial_withoutMark(t *testing.T) {
	MarkPartial(context.Background()) // must not panic
	ctx, mark := withPartial(context.Background())
	if mark.marked() {
		t.Fatal("fresh mark is set")
	}
	MarkPartial(context.WithValue(ctx, otherKey{}, 1)) // through a derived context
	if !mark.marked() {
		t.Fatal("mark not set through a derived context")
	}
}

func TestEngine_partialMark(t *testing.T) {
	f := sharedFixture(t)
	from, to := t0.Add(time.Hour).UnixNano(), t0.Add(3*time.Hour).UnixNano()
	hourly := Request{Field: "pm25", From: from, To: to, Step: time.Hour, Agg: AggMax}
	raw := Request{Field: "pm25", From: from, To: to}
	latest := LatestRequest{Field: "pm25", At: to}
	type call func(e *Engine) (Result, error)
	series := func(req Request) call {
		return func(e *Engine) (Result, error) { return e.Series(context.Background(), req) }
	}
	tests := []struct {
		name  string
		marks string
		call  call
		want  bool
	}{
		{"series, no mark", "", series(hourly), false},
		{"series, rollups mark", "rollups", series(hourly), true},
		{"series, lookup mark", "lookup", series(hourly), true},
		{"series, raw mark unused by rollups", "raw", series(hourly), false},
		{"raw series, raw mark", "raw", series(raw), true},
		{"latest, latest mark", "latest", func(e *Engine) (Result, error) { return e.Latest(context.Background(), latest) }, true},
		{"latest, no mark", "", func(e *Engine) (Result, error) { return e.Latest(context.Background(), latest) }, false},
		{"page, raw mark", "raw", func(e *Engine) (Result, error) {
			r, _, err := e.RawPage(context.Background(), raw, nil, 10)
			return r, err
		}, true},
		{"page, lookup mark", "lookup", func(e *Engine) (Result, error) {
			r, _, err := e.RawPage(context.Background(), raw, nil, 10)
			return r, err
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &markingSource{Store: f.st, marks: map[string]bool{tt.marks: tt.marks != ""}}
			e := &Engine{Source: src}
			got, err := tt.call(e)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Series) == 0 {
				t.Fatal("no series")
			}
			if got.Partial != tt.want {
				t.Errorf("Partial = %v, want %v", got.Partial, tt.want)
			}
			if src.ctxLookups != 1 || src.lookups != 0 {
				t.Errorf("LookupContext called %d times and Lookup %d, want 1 and 0", src.ctxLookups, src.lookups)
			}
			// The same engine over the bare store: nothing carries over
			// between requests.
			again, err := tt.call(&Engine{Source: f.st})
			if err != nil || again.Partial {
				t.Errorf("plain store: Partial = %v, %v", again.Partial, err)
			}
		})
	}
}
