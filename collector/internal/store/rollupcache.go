package store

import (
	"slices"
	"sync"
)

// rollupCache keeps decoded rollup chunks of single series, and which
// (group, window or day) has blocks at all, by partition and write
// generation like the block cache. A chart read again — the portal's
// station page, a dashboard — then takes no read transaction, no block
// lookup and no decoding for the hours already on disk: on a core that
// idled before the request, touching a dozen blocks' index and stream
// arrays cost more than the decoding itself.
type rollupCache struct {
	mu sync.Mutex
	c  *lru[rollupKey, rollupEntry]
}

type rollupKey struct {
	p     *partition
	gen   uint64
	base  int64  // the window's or day's start
	id    uint32 // a series, or a group when group is set
	group bool
}

type rollupEntry struct {
	bs  []Bucket // a series' buckets; empty when it has no chunk there
	has bool     // a group's: whether it has blocks there
}

func (e rollupEntry) cost() int { return 96 + 72*cap(e.bs) }

func newRollupCache(max int) *rollupCache {
	return &rollupCache{c: newLRU[rollupKey](max, rollupEntry.cost)}
}

func (c *rollupCache) enabled() bool { return c != nil && c.c.max > 0 }

// forget drops every entry of p, a partition being deleted.
func (c *rollupCache) forget(p *partition) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.drop(func(k rollupKey) bool { return k.p == p })
}

// cachedRollups returns the buckets of g's series at base in p (at
// generation gen) when the cache knows all of them: nil when the group
// has no blocks there. hit is false on a miss.
func (s *Store) cachedRollups(p *partition, gen uint64, base int64, g groupRefs) (db dayBuckets, hit bool) {
	c := s.rollups
	if !c.enabled() {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ge, ok := c.c.get(rollupKey{p: p, gen: gen, base: base, id: g.gid, group: true})
	if !ok {
		return nil, false
	}
	if !ge.has {
		return nil, true
	}
	for _, id := range g.ids {
		if !c.c.has(rollupKey{p: p, gen: gen, base: base, id: id}) {
			return nil, false
		}
	}
	db = newDayBuckets(g)
	for k, id := range g.ids {
		e, _ := c.c.get(rollupKey{p: p, gen: gen, base: base, id: id})
		if len(e.bs) == 0 {
			continue
		}
		// Clipped, so that a caller appending (late points from the
		// head) copies instead of writing into the cached array.
		db[k] = slices.Clip(e.bs)
	}
	return db, true
}

// noteRollups records what a read found at base in p: whether g has
// blocks there and, for each of g's series, its decoded buckets (got[k]
// are those of g.ids[k]; empty when it has no chunk there).
func (s *Store) noteRollups(p *partition, gen uint64, base int64, g groupRefs, has bool, got dayBuckets) {
	c := s.rollups
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.put(rollupKey{p: p, gen: gen, base: base, id: g.gid, group: true}, rollupEntry{has: has})
	if !has {
		return
	}
	for k, id := range g.ids {
		c.c.put(rollupKey{p: p, gen: gen, base: base, id: id}, rollupEntry{bs: got[k]})
	}
}

// cachedDays puts into out, by start, the buckets of g's series at every
// start from first to last (step apart) in p that has blocks, when the
// rollup cache knows all of them at p's current generation; on a miss it
// leaves out as it was and returns false.
func (s *Store) cachedDays(p *partition, g groupRefs, first, last, step int64, out map[int64]dayBuckets) bool {
	if !s.rollups.enabled() {
		return false
	}
	gen := p.gen.Load()
	for base := first; base <= last; base += step {
		db, hit := s.cachedRollups(p, gen, base, g)
		if !hit {
			for b := first; b < base; b += step {
				delete(out, b)
			}
			s.m.rollupMisses.Inc()
			return false
		}
		if db != nil {
			out[base] = db
		}
	}
	s.m.rollupHits.Inc()
	return true
}

// cachedDay is cachedDays for the one day at d: nil and true when the
// group has no blocks there.
func (s *Store) cachedDay(p *partition, g groupRefs, d int64) (dayBuckets, bool) {
	if !s.rollups.enabled() {
		return nil, false
	}
	db, hit := s.cachedRollups(p, p.gen.Load(), d, g)
	if hit {
		s.m.rollupHits.Inc()
	} else {
		s.m.rollupMisses.Inc()
	}
	return db, hit
}
