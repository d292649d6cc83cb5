package query

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/protocols"
)

// ErrBadRequest wraps every error about the request itself (an unknown
// aggregation, a step that does not fit, group_by without a step): the
// caller should answer 400.
var ErrBadRequest = errors.New("bad query")

// ErrTooManySeries is returned when more series match than Engine.MaxSeries.
var ErrTooManySeries = store.ErrTooManySeries

// ErrTooManyPoints is returned when the answer would hold more points than
// Engine.MaxPoints, or an aggregation over raw points would read more than
// Engine.MaxScan.
var ErrTooManyPoints = store.ErrTooManyPoints

// Source is the store as the engine reads it.
type Source interface {
	Lookup(sel store.Selector) ([]store.SeriesRef, error)
	ReadRaw(ctx context.Context, refs []store.SeriesRef, from, to int64, fn func(i int, samples []store.Sample) error) error
	ReadRollups(ctx context.Context, refs []store.SeriesRef, res time.Duration, from, to int64, fn func(i int, bs []store.Bucket) error) error
	Latest(ctx context.Context, refs []store.SeriesRef, from, at int64, fn func(i int, smp store.Sample) error) error
	RawHorizon() int64
}

// Agg is how the points of a bucket become one value.
type Agg string

// The aggregations. Percentiles are computed from raw points, the others
// from rollups when the step allows.
const (
	AggMean  Agg = "mean"
	AggMin   Agg = "min"
	AggMax   Agg = "max"
	AggSum   Agg = "sum"
	AggCount Agg = "count"
	AggFirst Agg = "first"
	AggLast  Agg = "last"
	AggP50   Agg = "p50"
	AggP95   Agg = "p95"
)

// Aggs lists every aggregation, for help texts and validation.
var Aggs = []Agg{AggMean, AggMin, AggMax, AggSum, AggCount, AggFirst, AggLast, AggP50, AggP95}

// ParseAgg checks an aggregation name.
func ParseAgg(s string) (Agg, error) {
	if a := Agg(s); slices.Contains(Aggs, a) {
		return a, nil
	}
	names := make([]string, len(Aggs))
	for i, a := range Aggs {
		names[i] = string(a)
	}
	return "", fmt.Errorf("%w: agg %q: want one of %s", ErrBadRequest, s, strings.Join(names, ", "))
}

func (a Agg) quantile() (float64, bool) {
	switch a {
	case AggP50:
		return 0.5, true
	case AggP95:
		return 0.95, true
	}
	return 0, false
}

// Request is a range query.
type Request struct {
	// Measurement may be empty when Field exists in one measurement.
	Measurement string
	// Field is required.
	Field string
	// Matchers select series by tag (station, district, ...).
	Matchers []store.Matcher
	// From and To bound the range in ns, both inclusive.
	From, To int64
	// Step is the bucket width; zero returns raw points. Buckets are
	// aligned to multiples of Step from the Unix epoch, labelled by their
	// start, and returned whole: every bucket that overlaps [From, To].
	Step time.Duration
	// Agg is required with a Step (mean when empty) and not allowed
	// without.
	Agg Agg
	// GroupBy aggregates the series that share these tags' values into
	// one; it needs a Step. Without it every series is answered alone.
	GroupBy []string
}

// Resolution names the data an answer was computed from.
type Resolution string

// The resolutions.
const (
	ResRaw    Resolution = "raw"
	ResMinute Resolution = "1m"
	ResHour   Resolution = "1h"
)

// Result is the answer to a query.
type Result struct {
	Series []Series
	// Partial is set when part of the range is older than the raw
	// retention and the answer needed raw points (raw output or a
	// percentile): those parts are missing. It is also set when the
	// Source called MarkPartial during the request (a node holding part
	// of the data could not be reached).
	Partial bool
	// Resolution is what the answer was computed from.
	Resolution Resolution
}

// Series is one answered series, or one group.
type Series struct {
	Measurement string
	Field       string
	// Tags are the series' tags, or with GroupBy the group's tag values
	// (a tag the group's series lack is left out).
	Tags   []protocols.Tag
	Points []Point
}

// Point is one value of a series: a raw point, or a bucket's aggregate
// labelled by the bucket start. Aggregates are floats, counts integers.
type Point struct {
	Time  int64 // ns
	Value protocols.Value
}

// LatestRequest asks for the newest point of each series.
type LatestRequest struct {
	Measurement string
	Field       string
	Matchers    []store.Matcher
	// At is the instant asked about, in ns; zero means now.
	At int64
	// Window bounds how old the point may be: [At-Window, At]. Zero
	// means an hour.
	Window time.Duration
}

// Default limits.
const (
	DefaultMaxSeries = 10_000
	DefaultMaxPoints = 1_000_000
	DefaultMaxScan   = 100_000_000
)

// Engine answers queries from a Source. The zero limits mean the defaults.
// It is safe for concurrent use.
type Engine struct {
	Source Source
	// MaxSeries bounds the series a query may select.
	MaxSeries int
	// MaxPoints bounds the points in an answer.
	MaxPoints int
	// MaxScan bounds the raw points an aggregation over raw points reads
	// (and, for percentiles, holds in memory).
	MaxScan int
	// Now is the clock for LatestRequest.At zero; nil means time.Now.
	Now func() time.Time
}

func (e *Engine) limits() (series, points, scan int) {
	series, points, scan = e.MaxSeries, e.MaxPoints, e.MaxScan
	if series <= 0 {
		series = DefaultMaxSeries
	}
	if points <= 0 {
		points = DefaultMaxPoints
	}
	if scan <= 0 {
		scan = DefaultMaxScan
	}
	return series, points, scan
}

func (e *Engine) lookup(ctx context.Context, measurement, field string, ms []store.Matcher, maxSeries int) ([]store.SeriesRef, error) {
	if field == "" {
		return nil, fmt.Errorf("%w: no field", ErrBadRequest)
	}
	sel := store.Selector{Measurement: measurement, Field: field, Matchers: ms, MaxSeries: maxSeries}
	var refs []store.SeriesRef
	var err error
	if cl, ok := e.Source.(ContextLookuper); ok {
		refs, err = cl.LookupContext(ctx, sel)
	} else {
		refs, err = e.Source.Lookup(sel)
	}
	if errors.Is(err, store.ErrTooManySeries) {
		return nil, fmt.Errorf("query: more than %d series match; select fewer (by station or district): %w", maxSeries, ErrTooManySeries)
	}
	return refs, err
}

// plan picks the resolution for a step and aggregation: raw points for
// percentiles and steps that are not whole minutes, 1-hour rollups for
// whole hours, else 1-minute ones (which the store itself aggregates from
// raw points for days whose raw points it keeps).
func plan(step time.Duration, agg Agg) Resolution {
	if _, ok := agg.quantile(); ok {
		return ResRaw
	}
	switch {
	case step%time.Hour == 0:
		return ResHour
	case step%time.Minute == 0:
		return ResMinute
	}
	return ResRaw
}

// Series answers a range query.
func (e *Engine) Series(ctx context.Context, req Request) (Result, error) {
	ctx, mark := withPartial(ctx)
	res, err := e.series(ctx, req)
	res.Partial = res.Partial || mark.marked()
	return res, err
}

func (e *Engine) series(ctx context.Context, req Request) (Result, error) {
	maxSeries, maxPoints, maxScan := e.limits()
	if req.From > req.To {
		return Result{}, fmt.Errorf("%w: from is after to", ErrBadRequest)
	}
	// Far enough from the ends of int64 that bucket arithmetic cannot
	// overflow: 1823 to 2116.
	if req.From < -1<<62 || req.To > 1<<62 {
		return Result{}, fmt.Errorf("%w: from/to outside 1823..2116", ErrBadRequest)
	}
	if req.Step < 0 {
		return Result{}, fmt.Errorf("%w: negative step", ErrBadRequest)
	}
	if req.Step == 0 {
		if req.Agg != "" {
			return Result{}, fmt.Errorf("%w: agg %s needs a step", ErrBadRequest, req.Agg)
		}
		if len(req.GroupBy) > 0 {
			return Result{}, fmt.Errorf("%w: group_by needs a step", ErrBadRequest)
		}
	} else {
		if req.Step < time.Millisecond || req.Step > 100*365*24*time.Hour {
			return Result{}, fmt.Errorf("%w: step %s: want a millisecond to a hundred years", ErrBadRequest, req.Step)
		}
		if req.Agg == "" {
			req.Agg = AggMean
		}
		if _, err := ParseAgg(string(req.Agg)); err != nil {
			return Result{}, err
		}
	}
	refs, err := e.lookup(ctx, req.Measurement, req.Field, req.Matchers, maxSeries)
	if err != nil {
		return Result{}, err
	}
	if req.Step == 0 {
		return e.raw(ctx, req, refs, maxPoints)
	}

	step := int64(req.Step)
	first, last := floorTo(req.From, step), floorTo(req.To, step)
	nb := (last-first)/step + 1
	groups, groupOf := groupRefs(refs, req.GroupBy)
	// rank orders series by key, for first and last between equal times.
	// Without group_by every series is its own group, in key order.
	rank := groupOf
	if len(req.GroupBy) > 0 {
		rank = make([]int, len(refs))
		for r, i := range byKey(refs) {
			rank[i] = r
		}
	}
	if nb > int64(maxPoints) || nb*int64(len(groups)) > int64(maxPoints) {
		return Result{}, fmt.Errorf("query: the answer would hold up to %d points (%d buckets × %d series), more than %d; narrow from/to, raise step or select fewer series: %w",
			nb*int64(len(groups)), nb, len(groups), maxPoints, ErrTooManyPoints)
	}
	res := plan(req.Step, req.Agg)
	accs := newAccTable(len(groups), nb)
	defer accs.release()
	get := func(g int, start int64) *acc { return accs.get(g, (floorTo(start, step)-first)/step) }
	out := Result{Resolution: res}
	end := last + step - 1
	switch res {
	case ResRaw:
		out.Partial = first < e.Source.RawHorizon()
		q, keep := req.Agg.quantile()
		scanned := 0
		err = e.Source.ReadRaw(ctx, refs, first, end, func(i int, smp []store.Sample) error {
			if scanned += len(smp); scanned > maxScan {
				return fmt.Errorf("query: the aggregation would read more than %d raw points; narrow from/to or select fewer series: %w", maxScan, ErrTooManyPoints)
			}
			g := groupOf[i]
			for _, s := range smp {
				v, ok := s.Value.AsFloat()
				if !ok {
					continue // strings are not aggregated
				}
				get(g, s.Time).add(v, s.Time, rank[i], keep)
			}
			return nil
		})
		if err != nil {
			return Result{}, err
		}
		accs.each(func(_ int, _ int64, a *acc) { a.quantile(q) })
	default:
		r := time.Hour
		if res == ResMinute {
			r = time.Minute
		}
		err = e.Source.ReadRollups(ctx, refs, r, first, end, func(i int, bs []store.Bucket) error {
			g := groupOf[i]
			for _, b := range bs {
				get(g, b.Start).merge(b, rank[i])
			}
			return nil
		})
		if err != nil {
			return Result{}, err
		}
	}
	for g, grp := range groups {
		var s Series
		accs.inOrder(g, func(k int64, a *acc) {
			if v, ok := a.value(req.Agg); ok {
				if s.Points == nil {
					s = Series{Measurement: grp.measurement, Field: grp.field, Tags: grp.tags, Points: getPoints(accs.count(g))}
				}
				s.Points = append(s.Points, Point{Time: first + k*step, Value: v})
			}
		})
		if len(s.Points) > 0 {
			out.Series = append(out.Series, s)
		}
	}
	return out, nil
}

// raw answers a query without step: the points themselves.
func (e *Engine) raw(ctx context.Context, req Request, refs []store.SeriesRef, maxPoints int) (Result, error) {
	out := Result{Resolution: ResRaw, Partial: req.From < e.Source.RawHorizon()}
	pts := make([][]Point, len(refs))
	total := 0
	err := e.Source.ReadRaw(ctx, refs, req.From, req.To, func(i int, smp []store.Sample) error {
		if total += len(smp); total > maxPoints {
			return fmt.Errorf("query: the answer would hold more than %d points; narrow from/to, give a step or select fewer series: %w", maxPoints, ErrTooManyPoints)
		}
		for _, s := range smp {
			pts[i] = append(pts[i], Point{Time: s.Time, Value: s.Value})
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	for _, i := range byKey(refs) {
		if len(pts[i]) == 0 {
			continue
		}
		r := &refs[i]
		out.Series = append(out.Series, Series{Measurement: r.Measurement, Field: r.Field, Tags: r.Tags, Points: pts[i]})
	}
	return out, nil
}

// Latest answers the newest point of each selected series within the
// window, series ordered by key.
func (e *Engine) Latest(ctx context.Context, req LatestRequest) (Result, error) {
	ctx, mark := withPartial(ctx)
	res, err := e.latest(ctx, req)
	res.Partial = res.Partial || mark.marked()
	return res, err
}

func (e *Engine) latest(ctx context.Context, req LatestRequest) (Result, error) {
	maxSeries, _, _ := e.limits()
	if req.Window < 0 {
		return Result{}, fmt.Errorf("%w: negative window", ErrBadRequest)
	}
	if req.Window == 0 {
		req.Window = time.Hour
	}
	if req.At == 0 {
		now := time.Now
		if e.Now != nil {
			now = e.Now
		}
		req.At = now().UnixNano()
	}
	refs, err := e.lookup(ctx, req.Measurement, req.Field, req.Matchers, maxSeries)
	if err != nil {
		return Result{}, err
	}
	got := make([]*store.Sample, len(refs))
	err = e.Source.Latest(ctx, refs, req.At-int64(req.Window), req.At, func(i int, smp store.Sample) error {
		got[i] = &smp
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	out := Result{Resolution: ResRaw, Partial: req.At-int64(req.Window) < e.Source.RawHorizon()}
	for _, i := range byKey(refs) {
		if got[i] == nil {
			continue
		}
		r := &refs[i]
		out.Series = append(out.Series, Series{Measurement: r.Measurement, Field: r.Field, Tags: r.Tags,
			Points: []Point{{Time: got[i].Time, Value: got[i].Value}}})
	}
	return out, nil
}

// byKey returns the indexes of refs in series key order, the order answers
// list series in.
func byKey(refs []store.SeriesRef) []int {
	keys := make([]string, len(refs))
	order := make([]int, len(refs))
	for i := range refs {
		keys[i] = refs[i].Key()
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	return order
}

type group struct {
	measurement, field string
	tags               []protocols.Tag
	key                string
}

// groupRefs returns the output groups, ordered, and each ref's group: one
// per series without groupBy, one per distinct value combination with.
func groupRefs(refs []store.SeriesRef, groupBy []string) ([]group, []int) {
	groupOf := make([]int, len(refs))
	if len(groupBy) == 0 {
		groups := make([]group, len(refs))
		for i := range refs {
			r := &refs[i]
			groups[i] = group{measurement: r.Measurement, field: r.Field, tags: r.Tags}
			if len(refs) > 1 { // the key only sorts
				groups[i].key = r.Key()
			}
		}
		order := make([]int, len(refs))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return strings.Compare(groups[a].key, groups[b].key) })
		sorted := make([]group, len(refs))
		for pos, i := range order {
			sorted[pos] = groups[i]
			groupOf[i] = pos
		}
		return sorted, groupOf
	}
	keys := slices.Clone(groupBy)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	byKey := map[string]int{}
	var groups []group
	var sb strings.Builder
	for i := range refs {
		r := &refs[i]
		sb.Reset()
		var tags []protocols.Tag
		for _, k := range keys {
			v := r.Tag(k)
			sb.WriteString(v)
			sb.WriteByte(0)
			if v != "" {
				tags = append(tags, protocols.Tag{Key: k, Value: v})
			}
		}
		k := r.Measurement + "\x00" + sb.String()
		g, ok := byKey[k]
		if !ok {
			g = len(groups)
			byKey[k] = g
			groups = append(groups, group{measurement: r.Measurement, field: r.Field, tags: tags, key: k})
		}
		groupOf[i] = g
	}
	order := make([]int, len(groups))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(groups[a].key, groups[b].key) })
	pos := make([]int, len(groups))
	sorted := make([]group, len(groups))
	for p, g := range order {
		pos[g] = p
		sorted[p] = groups[g]
	}
	for i := range groupOf {
		groupOf[i] = pos[groupOf[i]]
	}
	return sorted, groupOf
}

func floorTo(t, d int64) int64 {
	q := t / d
	if t%d != 0 && t < 0 {
		q--
	}
	return q * d
}

// Interface guards.
var _ Source = (*store.Store)(nil)

// Cursor is where a page of raw points ended: the key of the series
// (store.SeriesRef.Key) and the time of its last point returned. Pages
// list series in key order and each series' points in time order, so a
// cursor names one position in a stable total order: paging never skips
// or repeats a point that was stored before the first page was asked for.
type Cursor struct {
	Key  string
	Time int64
}

// errPageFull stops a read once a page has its points.
var errPageFull = errors.New("page full")

// RawPage answers req (which must have no step) one page at a time: at
// most limit points, starting after after (nil: from the start). The
// returned cursor is nil on the last page.
func (e *Engine) RawPage(ctx context.Context, req Request, after *Cursor, limit int) (Result, *Cursor, error) {
	ctx, mark := withPartial(ctx)
	res, next, err := e.rawPage(ctx, req, after, limit)
	res.Partial = res.Partial || mark.marked()
	return res, next, err
}

func (e *Engine) rawPage(ctx context.Context, req Request, after *Cursor, limit int) (Result, *Cursor, error) {
	maxSeries, maxPoints, _ := e.limits()
	if req.Step != 0 || req.Agg != "" || len(req.GroupBy) > 0 {
		return Result{}, nil, fmt.Errorf("%w: pages are for raw points; an aggregated answer is bounded by its step", ErrBadRequest)
	}
	if limit < 1 || limit > maxPoints {
		return Result{}, nil, fmt.Errorf("%w: limit %d: want 1 to %d", ErrBadRequest, limit, maxPoints)
	}
	if req.From > req.To {
		return Result{}, nil, fmt.Errorf("%w: from is after to", ErrBadRequest)
	}
	refs, err := e.lookup(ctx, req.Measurement, req.Field, req.Matchers, maxSeries)
	if err != nil {
		return Result{}, nil, err
	}
	out := Result{Resolution: ResRaw, Partial: req.From < e.Source.RawHorizon()}
	total := 0
	var next *Cursor
	for _, i := range byKey(refs) {
		r := &refs[i]
		key := r.Key()
		from := req.From
		if after != nil {
			if c := strings.Compare(key, after.Key); c < 0 || (c == 0 && after.Time >= req.To) {
				continue
			} else if c == 0 {
				from = max(from, after.Time+1)
			}
		}
		if next != nil {
			break // the page is full and this series has points after it
		}
		var pts []Point
		err := e.Source.ReadRaw(ctx, refs[i:i+1], from, req.To, func(_ int, smp []store.Sample) error {
			for _, s := range smp {
				if total == limit {
					// One more point exists: the page ends before it.
					next = &Cursor{Key: key, Time: pts[len(pts)-1].Time}
					return errPageFull
				}
				pts = append(pts, Point{Time: s.Time, Value: s.Value})
				total++
			}
			return nil
		})
		if err != nil && !errors.Is(err, errPageFull) {
			return Result{}, nil, err
		}
		if len(pts) > 0 {
			out.Series = append(out.Series, Series{Measurement: r.Measurement, Field: r.Field, Tags: r.Tags, Points: pts})
		}
		if total == limit && next == nil {
			// Full at the end of this series: whether anything follows
			// is known only by looking, so the next page may be empty.
			next = &Cursor{Key: key, Time: req.To}
			if len(pts) > 0 {
				next.Time = pts[len(pts)-1].Time
			}
		}
	}
	return out, next, nil
}
