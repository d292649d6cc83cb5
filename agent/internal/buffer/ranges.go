package buffer

import "sort"

// span is an inclusive range of sequence numbers.
type span struct{ lo, hi uint64 }

// rangeSet is a set of sequence numbers kept as sorted, disjoint,
// non-adjacent spans. An output acknowledges batches mostly in order, so its
// set within a segment is one or two spans however many batches it holds.
type rangeSet struct{ spans []span }

// add inserts [lo, hi] and merges it with the spans it touches.
func (r *rangeSet) add(lo, hi uint64) {
	if lo > hi {
		return
	}
	// i: the first span that ends at or after lo-1 (could merge).
	i := sort.Search(len(r.spans), func(i int) bool { return r.spans[i].hi+1 >= lo })
	j := i
	for j < len(r.spans) && r.spans[j].lo <= hi+1 {
		lo = min(lo, r.spans[j].lo)
		hi = max(hi, r.spans[j].hi)
		j++
	}
	if i == j {
		r.spans = append(r.spans, span{})
		copy(r.spans[i+1:], r.spans[i:])
		r.spans[i] = span{lo, hi}
		return
	}
	r.spans[i] = span{lo, hi}
	r.spans = append(r.spans[:i+1], r.spans[j:]...)
}

// contains reports whether seq is in the set.
func (r *rangeSet) contains(seq uint64) bool {
	_, ok := r.spanOf(seq)
	return ok
}

// spanOf returns the span holding seq.
func (r *rangeSet) spanOf(seq uint64) (span, bool) {
	i := sort.Search(len(r.spans), func(i int) bool { return r.spans[i].hi >= seq })
	if i < len(r.spans) && r.spans[i].lo <= seq {
		return r.spans[i], true
	}
	return span{}, false
}

// clone returns an independent copy.
func (r *rangeSet) clone() *rangeSet {
	return &rangeSet{spans: append([]span(nil), r.spans...)}
}
