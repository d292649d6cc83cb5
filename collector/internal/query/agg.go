package query

import (
	"math"
	"slices"
	"sync"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/protocols"
)

// acc accumulates one output bucket of one series or group, from raw
// points or from rollup buckets.
type acc struct {
	b      store.Bucket
	fr, lr int       // rank (series key order) of the series First and Last came from
	vals   []float64 // raw values, kept for percentiles only
	q      float64   // the percentile, computed once reading is done
}

func (a *acc) add(v float64, t int64, rank int, keep bool) {
	a.merge(store.Bucket{Count: 1, Sum: v, Min: v, Max: v, First: v, Last: v, FirstTime: t, LastTime: t}, rank)
	if keep {
		a.vals = append(a.vals, v)
	}
}

// merge folds in a bucket of the series at rank. Of several series with a
// point at the same earliest (latest) time, first (last) is taken from the
// one whose key sorts first (last), so that answers do not depend on the
// order data is read in.
func (a *acc) merge(b store.Bucket, rank int) {
	if b.Count == 0 {
		return
	}
	if a.b.Count == 0 {
		a.b, a.fr, a.lr = b, rank, rank
		return
	}
	if b.FirstTime < a.b.FirstTime || b.FirstTime == a.b.FirstTime && rank < a.fr {
		a.b.First, a.b.FirstTime, a.fr = b.First, b.FirstTime, rank
	}
	if b.LastTime > a.b.LastTime || b.LastTime == a.b.LastTime && rank > a.lr {
		a.b.Last, a.b.LastTime, a.lr = b.Last, b.LastTime, rank
	}
	a.b.Count += b.Count
	a.b.Sum += b.Sum
	a.b.Min = math.Min(a.b.Min, b.Min)
	a.b.Max = math.Max(a.b.Max, b.Max)
}

// quantile computes the q-quantile of the kept values by linear
// interpolation between the two nearest ranks (as numpy's default and
// Prometheus' quantile_over_time do) and drops the values.
func (a *acc) quantile(q float64) {
	if len(a.vals) == 0 {
		return
	}
	slices.Sort(a.vals)
	rank := q * float64(len(a.vals)-1)
	lo := math.Floor(rank)
	hi := math.Ceil(rank)
	a.q = a.vals[int(lo)] + (a.vals[int(hi)]-a.vals[int(lo)])*(rank-lo)
	a.vals = nil
}

// value is the bucket's answer for agg; false when the bucket is empty.
func (a *acc) value(agg Agg) (protocols.Value, bool) {
	b := &a.b
	if b.Count == 0 {
		return protocols.Value{}, false
	}
	switch agg {
	case AggCount:
		return protocols.Int(b.Count), true
	case AggSum:
		return protocols.Float(b.Sum), true
	case AggMin:
		return protocols.Float(b.Min), true
	case AggMax:
		return protocols.Float(b.Max), true
	case AggFirst:
		return protocols.Float(b.First), true
	case AggLast:
		return protocols.Float(b.Last), true
	case AggP50, AggP95:
		return protocols.Float(a.q), true
	default:
		return protocols.Float(b.Sum / float64(b.Count)), true
	}
}

// accTable holds the accumulators of a bucketed answer, by group and
// bucket number. A small answer (most: a station's chart, a district's
// days) gets one dense slice, allocated once; a large or sparse one a map
// per group, so that memory follows the buckets that have data.
type accTable struct {
	nb     int64
	dense  []acc // group g's bucket k at g*nb+k
	sparse []map[int64]*acc
}

// maxDenseAccs bounds the dense table (about 2 MB).
const maxDenseAccs = 1 << 14

// densePool keeps dense tables between queries: a chart's query is
// answered from memory the previous one left warm in the cache, instead
// of zeroing fresh memory (a quarter of what Q1 allocated).
var densePool sync.Pool // *[]acc

func newAccTable(groups int, nb int64) *accTable {
	t := &accTable{nb: nb}
	if n := int64(groups) * nb; n > 0 && n <= maxDenseAccs {
		if p, _ := densePool.Get().(*[]acc); p != nil && int64(cap(*p)) >= n {
			t.dense = (*p)[:n]
			clear(t.dense)
		} else {
			t.dense = make([]acc, n, max(n, 256))
		}
		return t
	}
	t.sparse = make([]map[int64]*acc, groups)
	for g := range t.sparse {
		t.sparse[g] = map[int64]*acc{}
	}
	return t
}

// release gives a dense table back for the next query; t must not be
// used after.
func (t *accTable) release() {
	if t.dense != nil {
		d := t.dense[:0]
		t.dense = nil
		densePool.Put(&d)
	}
}

// get returns group g's accumulator of bucket k, making it.
func (t *accTable) get(g int, k int64) *acc {
	if t.dense != nil && k >= 0 && k < t.nb {
		return &t.dense[int64(g)*t.nb+k]
	}
	if t.dense != nil {
		// Out of the planned range: cannot happen for data read within
		// it, but must not corrupt a neighbour if it does.
		t.toSparse()
	}
	a := t.sparse[g][k]
	if a == nil {
		a = &acc{}
		t.sparse[g][k] = a
	}
	return a
}

func (t *accTable) toSparse() {
	groups := len(t.dense) / int(t.nb)
	t.sparse = make([]map[int64]*acc, groups)
	for g := range t.sparse {
		t.sparse[g] = map[int64]*acc{}
		for k := range t.nb {
			if a := &t.dense[int64(g)*t.nb+k]; a.b.Count > 0 {
				t.sparse[g][k] = a
			}
		}
	}
	t.dense = nil
}

// inOrder calls fn for group g's accumulators that saw data, by bucket.
func (t *accTable) inOrder(g int, fn func(k int64, a *acc)) {
	if t.dense != nil {
		row := t.dense[int64(g)*t.nb : int64(g+1)*t.nb]
		for k := range row {
			if row[k].b.Count > 0 {
				fn(int64(k), &row[k])
			}
		}
		return
	}
	m := t.sparse[g]
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fn(k, m[k])
	}
}

// count returns an upper bound of group g's accumulators with data.
func (t *accTable) count(g int) int {
	if t.dense != nil {
		return int(t.nb)
	}
	return len(t.sparse[g])
}

// each calls fn for every accumulator that saw data, in no order.
func (t *accTable) each(fn func(g int, k int64, a *acc)) {
	if t.dense != nil {
		for i := range t.dense {
			if t.dense[i].b.Count > 0 {
				fn(i/int(t.nb), int64(i)%t.nb, &t.dense[i])
			}
		}
		return
	}
	for g, m := range t.sparse {
		for k, a := range m {
			fn(g, k, a)
		}
	}
}
