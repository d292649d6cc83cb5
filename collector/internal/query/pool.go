package query

import "sync"

// Answers' point slices are reused: a Q1-sized answer (73 hourly points,
// 2.9 KB) was half of what a query allocated, and on a server that sat
// idle between requests a fresh span from the allocator costs far more
// than the reuse of one (the allocator's own structures are out of cache
// too). Release hands them back.
var pointPool sync.Pool // *[]Point

// maxPooledPoints bounds what the pool keeps: a rare huge answer is left
// to the garbage collector rather than held for the next small one.
const maxPooledPoints = 1 << 16

// getPoints returns an empty slice with room for n points.
func getPoints(n int) []Point {
	if p, ok := pointPool.Get().(*[]Point); ok {
		if cap(*p) >= n {
			return (*p)[:0]
		}
		pointPool.Put(p)
	}
	return make([]Point, 0, n)
}

// Release hands r's point slices back for later queries. r and every
// slice taken from it must not be used afterwards; a caller that keeps
// any part of the answer does not call it.
func (r *Result) Release() {
	for i := range r.Series {
		pts := r.Series[i].Points
		r.Series[i].Points = nil
		if cap(pts) == 0 || cap(pts) > maxPooledPoints {
			continue
		}
		clear(pts[:cap(pts)]) // drop string values for the collector
		pts = pts[:0]
		pointPool.Put(&pts)
	}
	r.Series = nil
}
