package sta

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/protocols"
)

// Store is what SensorThings reads: the stations and series of the index
// and raw points. *store.Store implements it.
type Store interface {
	Stations() ([]store.Station, error)
	Groups() ([]store.Group, error)
	Lookup(sel store.Selector) ([]store.SeriesRef, error)
	ReadRaw(ctx context.Context, refs []store.SeriesRef, from, to int64, fn func(i int, samples []store.Sample) error) error
}

var (
	errStop   = errors.New("stop")   // a reader has what it needs
	errBudget = errors.New("budget") // the request read MaxScan points
)

// budget is what one request may still do.
type budget struct {
	scan     int // raw points left to read
	ents     int // entities left to answer
	maxScan  int
	maxEnts  int
	scanUsed bool // some reading stopped at the scan bound
}

func (b *budget) entity() error {
	if b.ents--; b.ents < 0 {
		return bad("the answer would hold more than %d entities; lower $top or the $top of $expand", b.maxEnts)
	}
	return nil
}

// scanErr is the 400 for a query that would read more than MaxScan points.
func (b *budget) scanErr(what string) error {
	return bad("%s would read more than %d observations; narrow $filter by phenomenonTime or Datastream", what, b.maxScan)
}

// obsQuery reads Observations of candidate Datastreams.
type obsQuery struct {
	src Store
	m   *model
	b   *budget
	ec  *evalCtx
}

// obsPage is one page of Observations.
type obsPage struct {
	items    []ent
	count    int     // with $count
	next     *cursor // continue after this one
	nextSkip int     // or with this $skip (when next is nil)
	more     bool
}

// scan calls fn with the points of ds with from <= t <= to in time order
// until fn returns false. Of two series of one Datastream with a point at
// the same time (a tag changed), the newer series' point is kept.
func (q *obsQuery) scan(ctx context.Context, ds *dstream, from, to int64, fn func(t int64, v protocols.Value) bool) error {
	if from > to {
		return nil
	}
	if len(ds.refs) == 1 {
		err := q.src.ReadRaw(ctx, ds.refs, from, to, func(_ int, smp []store.Sample) error {
			for _, s := range smp {
				if q.b.scan--; q.b.scan < 0 {
					q.b.scanUsed = true
					return errBudget
				}
				if !fn(s.Time, s.Value) {
					return errStop
				}
			}
			return nil
		})
		if errors.Is(err, errStop) {
			return nil
		}
		return err
	}
	type rs struct {
		i int
		s store.Sample
	}
	var all []rs
	err := q.src.ReadRaw(ctx, ds.refs, from, to, func(i int, smp []store.Sample) error {
		for _, s := range smp {
			if q.b.scan--; q.b.scan < 0 {
				q.b.scanUsed = true
				return errBudget
			}
			all = append(all, rs{i, s})
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortStableFunc(all, func(a, b rs) int { return cmp.Or(cmp.Compare(a.s.Time, b.s.Time), cmp.Compare(a.i, b.i)) })
	for k, x := range all {
		if k+1 < len(all) && all[k+1].s.Time == x.s.Time {
			continue
		}
		if !fn(x.s.Time, x.s.Value) {
			return nil
		}
	}
	return nil
}

// scanAll calls fn with every point of every ds with from <= t <= to, in
// no particular order, reading all of them in one pass over the store.
func (q *obsQuery) scanAll(ctx context.Context, ds []*dstream, from, to int64, fn func(d *dstream, t int64, v protocols.Value)) error {
	if from > to || len(ds) == 0 {
		return nil
	}
	var refs []store.SeriesRef
	var owner []*dstream
	var multiRef []*dstream
	for _, d := range ds {
		if len(d.refs) > 1 {
			multiRef = append(multiRef, d)
			continue
		}
		refs = append(refs, d.refs[0])
		owner = append(owner, d)
	}
	err := q.src.ReadRaw(ctx, refs, from, to, func(i int, smp []store.Sample) error {
		if q.b.scan -= len(smp); q.b.scan < 0 {
			q.b.scanUsed = true
			return errBudget
		}
		d := owner[i]
		for _, s := range smp {
			fn(d, s.Time, s.Value)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range multiRef {
		if err := q.scan(ctx, d, from, to, func(t int64, v protocols.Value) bool { fn(d, t, v); return true }); err != nil {
			return err
		}
	}
	return nil
}

// plan splits a filter on Observations into time bounds and conditions on
// the Datastream (pushed down: they choose what is read) and the rest.
func (q *obsQuery) plan(cands []*dstream, filter node) (ds []*dstream, from, to int64, residual []node) {
	from, to = math.MinInt64, math.MaxInt64
	var dsConds []node
	if filter != nil {
		for _, c := range conjuncts(filter) {
			if f, t, ok := timeBound(c); ok {
				from, to = max(from, f), min(to, t)
				continue
			}
			if dsID, t, ok := idBound(c); ok {
				// @iot.id eq '<datastream>:<ns>': one point of one
				// Datastream.
				from, to = max(from, t), min(to, t)
				dsConds = append(dsConds, binary{"eq", path{[]string{"Datastream", "@iot.id"}}, lit{dsID}})
				continue
			}
			if onlyDatastream(c) {
				dsConds = append(dsConds, c)
				continue
			}
			residual = append(residual, c)
		}
	}
	for _, d := range cands {
		e := entEnv{q.m, ent{set: setObservations, ds: d}}
		keep := true
		for _, c := range dsConds {
			if !truthy(q.ec.eval(c, e)) {
				keep = false
				break
			}
		}
		if keep {
			ds = append(ds, d)
		}
	}
	return ds, from, to, residual
}

func isTimePath(n node) bool {
	p, ok := n.(path)
	return ok && len(p.segs) == 1 && (p.segs[0] == "phenomenonTime" || p.segs[0] == "resultTime")
}

// timeBound reads `phenomenonTime op <time>` (either way round) as an
// inclusive range.
func timeBound(n node) (from, to int64, ok bool) {
	b, isBin := n.(binary)
	if !isBin {
		return 0, 0, false
	}
	op := b.op
	l, r := b.l, b.r
	if !isTimePath(l) {
		l, r = r, l
		op = map[string]string{"gt": "lt", "lt": "gt", "ge": "le", "le": "ge", "eq": "eq"}[op]
	}
	lv, isLit := r.(lit)
	if !isTimePath(l) || !isLit {
		return 0, 0, false
	}
	var t int64
	switch v := lv.v.(type) {
	case tval:
		t = int64(v)
	case string:
		ns, err := parseTimeLiteral(v)
		if err != nil {
			return 0, 0, false
		}
		t = ns
	default:
		return 0, 0, false
	}
	from, to = math.MinInt64, math.MaxInt64
	switch op {
	case "eq":
		return t, t, true
	case "gt":
		if t == math.MaxInt64 {
			return 1, 0, true
		}
		return t + 1, to, true
	case "ge":
		return t, to, true
	case "lt":
		if t == math.MinInt64 {
			return 1, 0, true
		}
		return from, t - 1, true
	case "le":
		return from, t, true
	}
	return 0, 0, false
}

// idBound reads `@iot.id eq '<datastream id>:<ns>'` (either way round).
func idBound(n node) (ds string, t int64, ok bool) {
	b, isBin := n.(binary)
	if !isBin || b.op != "eq" {
		return "", 0, false
	}
	l, r := b.l, b.r
	if _, isLit := l.(lit); isLit {
		l, r = r, l
	}
	p, isPath := l.(path)
	v, isLit := r.(lit)
	id, isStr := v.v.(string)
	if !isPath || !isLit || !isStr || len(p.segs) != 1 || p.segs[0] != "@iot.id" && p.segs[0] != "id" {
		return "", 0, false
	}
	i := strings.LastIndexByte(id, ':')
	if i < 0 {
		return "", 0, false
	}
	t, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return id[:i], t, true
}

// onlyDatastream reports whether every path of n goes through the
// Observation's Datastream or FeatureOfInterest.
func onlyDatastream(n node) bool {
	ok, any := true, false
	walk(n, func(x node) {
		if p, isPath := x.(path); isPath {
			any = true
			if p.segs[0] != "Datastream" && p.segs[0] != "FeatureOfInterest" {
				ok = false
			}
		}
		if c, isCall := x.(call); isCall && c.fn == "now" {
			ok = false
		}
	})
	return ok && any
}

func (q *obsQuery) matches(e ent, residual []node) bool {
	if len(residual) == 0 {
		return true
	}
	env := entEnv{q.m, e}
	for _, c := range residual {
		if !truthy(q.ec.eval(c, env)) {
			return false
		}
	}
	return true
}

// run answers a query on the Observations of cands (sorted by id).
func (q *obsQuery) run(ctx context.Context, cands []*dstream, qo *query) (obsPage, error) {
	ds, from, to, residual := q.plan(cands, qo.filter)
	var page obsPage
	if qo.count {
		n := 0
		err := q.scanAll(ctx, ds, from, to, func(d *dstream, t int64, v protocols.Value) {
			if q.matches(ent{set: setObservations, ds: d, t: t, v: v}, residual) {
				n++
			}
		})
		if errors.Is(err, errBudget) {
			return page, q.b.scanErr("$count")
		}
		if err != nil {
			return page, err
		}
		page.count = n
	}
	if qo.top == 0 {
		return page, nil
	}
	var desc bool
	switch {
	case len(qo.orderby) == 0:
		return q.byDatastream(ctx, ds, from, to, residual, qo, page)
	case len(qo.orderby) == 1 && isTimePath(qo.orderby[0].expr):
		desc = qo.orderby[0].desc
		return q.byTime(ctx, ds, from, to, residual, qo, desc, page)
	}
	return q.sorted(ctx, ds, from, to, residual, qo, page)
}

// byDatastream reads in the default order, Datastream by Datastream and
// each in time order, stopping once the page is full. A page that reached
// the scan bound ends early with a cursor where it stopped.
func (q *obsQuery) byDatastream(ctx context.Context, ds []*dstream, from, to int64, residual []node, qo *query, page obsPage) (obsPage, error) {
	start := 0
	if c := qo.cursor; c != nil {
		start = sort.Search(len(ds), func(i int) bool { return ds[i].id >= c.ds })
	}
	skip := qo.skip
	var last cursor
	scanned := false
	for _, d := range ds[start:] {
		lo := from
		if c := qo.cursor; c != nil && d.id == c.ds {
			if c.t == math.MaxInt64 {
				continue
			}
			lo = max(lo, c.t+1)
		}
		err := q.scan(ctx, d, lo, to, func(t int64, v protocols.Value) bool {
			e := ent{set: setObservations, ds: d, t: t, v: v}
			if !q.matches(e, residual) {
				last, scanned = cursor{d.id, t}, true
				return true
			}
			if skip > 0 {
				skip--
				last, scanned = cursor{d.id, t}, true
				return true
			}
			if len(page.items) == qo.top {
				page.more = true
				return false
			}
			page.items = append(page.items, e)
			last, scanned = cursor{d.id, t}, true
			return true
		})
		if errors.Is(err, errBudget) {
			if !scanned {
				return page, q.b.scanErr("this page")
			}
			page.more, page.nextSkip = true, skip
			c := last
			page.next = &c
			return page, nil
		}
		if err != nil {
			return page, err
		}
		if page.more {
			c := last
			page.next = &c
			return page, nil
		}
	}
	return page, nil
}

// byTime reads in time order (ties by Datastream id) in slabs of time
// that grow fourfold from one minute, so that the newest (or oldest) page
// reads little more than it answers, whether it spans one Datastream or
// thousands.
func (q *obsQuery) byTime(ctx context.Context, ds []*dstream, from, to int64, residual []node, qo *query, desc bool, page obsPage) (obsPage, error) {
	c := qo.cursor
	if c != nil {
		if desc {
			to = min(to, c.t)
		} else {
			from = max(from, c.t)
		}
	}
	need := qo.skip + qo.top + 1
	// Start where the data is: near the newest last-seen time of the
	// candidates' stations. The first slab reaches up to the end of the
	// range, so points newer than a lagging last-seen are not missed.
	anchor := int64(math.MinInt64)
	for _, d := range ds {
		anchor = max(anchor, d.st.lastSeen)
	}
	span := int64(time.Minute)
	var acc []ent
	lo, hi := from, to
	if desc {
		lo = max(from, satAdd(min(to, anchor), -span))
		if anchor == math.MinInt64 {
			lo = from
		}
	} else {
		hi = min(to, satAdd(from, span))
	}
	for {
		var slab []ent
		err := q.scanAll(ctx, ds, lo, hi, func(d *dstream, t int64, v protocols.Value) {
			if c != nil && t == c.t && d.id <= c.ds {
				return
			}
			e := ent{set: setObservations, ds: d, t: t, v: v}
			if q.matches(e, residual) {
				slab = append(slab, e)
			}
		})
		if errors.Is(err, errBudget) {
			return page, q.b.scanErr("ordering by time")
		}
		if err != nil {
			return page, err
		}
		slices.SortFunc(slab, func(a, b ent) int {
			ct := cmp.Compare(a.t, b.t)
			if desc {
				ct = -ct
			}
			return cmp.Or(ct, strings.Compare(a.ds.id, b.ds.id))
		})
		acc = append(acc, slab...)
		if len(acc) >= need {
			break
		}
		if span > math.MaxInt64/4 {
			span = math.MaxInt64
		} else {
			span *= 4
		}
		if desc {
			if lo <= from {
				break
			}
			hi, lo = lo-1, max(from, satAdd(lo, -span))
		} else {
			if hi >= to {
				break
			}
			lo, hi = hi+1, min(to, satAdd(hi, span))
		}
	}
	if qo.skip < len(acc) {
		page.items = acc[qo.skip:min(len(acc), qo.skip+qo.top)]
	}
	if len(acc) > qo.skip+qo.top {
		page.more = true
		l := page.items[len(page.items)-1]
		page.next = &cursor{l.ds.id, l.t}
	}
	return page, nil
}

func satAdd(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}

// sorted answers any other $orderby by reading every matching point
// (within the scan bound) and sorting.
func (q *obsQuery) sorted(ctx context.Context, ds []*dstream, from, to int64, residual []node, qo *query, page obsPage) (obsPage, error) {
	var all []ent
	err := q.scanAll(ctx, ds, from, to, func(d *dstream, t int64, v protocols.Value) {
		e := ent{set: setObservations, ds: d, t: t, v: v}
		if q.matches(e, residual) {
			all = append(all, e)
		}
	})
	if errors.Is(err, errBudget) {
		return page, q.b.scanErr("this $orderby")
	}
	if err != nil {
		return page, err
	}
	sortEnts(q.m, q.ec, all, qo.orderby)
	if qo.skip < len(all) {
		page.items = all[qo.skip:min(len(all), qo.skip+qo.top)]
	}
	if len(all) > qo.skip+qo.top {
		page.more, page.nextSkip = true, qo.skip+qo.top
	}
	return page, nil
}

// sortEnts sorts by the $orderby keys, then by id (Observations: by
// Datastream and time) so that pages are stable. Nulls sort first.
func sortEnts(m *model, ec *evalCtx, es []ent, keys []orderKey) {
	if len(keys) == 0 {
		return // already in id order
	}
	vals := make([][]any, len(es))
	for i, e := range es {
		env := entEnv{m, e}
		vals[i] = make([]any, len(keys))
		for k, key := range keys {
			v := ec.eval(key.expr, env)
			if mv, ok := v.(multi); ok {
				v = nil
				if len(mv) > 0 {
					v = mv[0]
				}
			}
			vals[i][k] = v
		}
	}
	idx := make([]int, len(es))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		for k, key := range keys {
			c := orderCompare(vals[a][k], vals[b][k])
			if key.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return tieBreak(es[a], es[b])
	})
	out := make([]ent, len(es))
	for i, j := range idx {
		out[i] = es[j]
	}
	copy(es, out)
}

func tieBreak(a, b ent) int {
	if a.set == setObservations {
		return cmp.Or(strings.Compare(a.ds.id, b.ds.id), cmp.Compare(a.t, b.t))
	}
	return strings.Compare(a.id(), b.id())
}

// orderCompare orders any two values: null first, then by type, then by
// value.
func orderCompare(a, b any) int {
	if c, ok := compareValues(a, b); ok {
		return c
	}
	return cmp.Compare(typeRank(a), typeRank(b))
}

func typeRank(v any) int {
	switch v.(type) {
	case nil:
		return 0
	case bool:
		return 1
	case float64:
		return 2
	case tval:
		return 3
	case string:
		return 4
	}
	return 5
}

// getObservation reads one Observation by id.
func (q *obsQuery) get(ctx context.Context, id string) (ent, bool, error) {
	i := strings.LastIndexByte(id, ':')
	if i < 0 {
		return ent{}, false, nil
	}
	d, ok := q.m.dsByID[id[:i]]
	t, err := strconv.ParseInt(id[i+1:], 10, 64)
	if !ok || err != nil {
		return ent{}, false, nil
	}
	var out ent
	found := false
	err = q.scan(ctx, d, t, t, func(ts int64, v protocols.Value) bool {
		out, found = ent{set: setObservations, ds: d, t: ts, v: v}, true
		return false
	})
	return out, found, err
}
