package query

import (
	"math"
	"slices"

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
