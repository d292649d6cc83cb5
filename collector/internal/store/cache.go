package store

import (
	"container/list"
	"sync"
)

// blockCache keeps decompressed blocks for reads, least recently used out
// first: a dashboard asks the same hours again and again, and decompressing
// a block costs more than everything else a read of one series does.
//
// Entries are keyed by partition, the partition's write generation and the
// block key. A write bumps the generation after it commits, so later reads
// never see a block it replaced; entries of old generations age out.
type blockCache struct {
	mu    sync.Mutex
	max   int
	size  int
	lru   *list.List // of *cacheEntry, most recent at the front
	items map[cacheKey]*list.Element
}

type cacheKey struct {
	p   *partition
	gen uint64
	key [keyLen]byte
}

type cacheEntry struct {
	k   cacheKey
	blk *block
}

func newBlockCache(max int) *blockCache {
	return &blockCache{max: max, lru: list.New(), items: map[cacheKey]*list.Element{}}
}

func (c *blockCache) get(k cacheKey) *block {
	if c == nil || c.max <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*cacheEntry).blk
	}
	return nil
}

func (c *blockCache) put(k cacheKey, b *block) {
	if c == nil || c.max <= 0 {
		return
	}
	n := b.cost()
	if n > c.max/4 {
		return // would push out too much else
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.lru.PushFront(&cacheEntry{k: k, blk: b})
	c.size += n
	for c.size > c.max {
		e := c.lru.Back()
		ce := e.Value.(*cacheEntry)
		c.lru.Remove(e)
		delete(c.items, ce.k)
		c.size -= ce.blk.cost()
	}
}

// forget drops every entry of p, a partition being deleted.
func (c *blockCache) forget(p *partition) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.items {
		if k.p == p {
			c.lru.Remove(e)
			delete(c.items, k)
			c.size -= e.Value.(*cacheEntry).blk.cost()
		}
	}
}

// cost is what a cached block holds on to, roughly.
func (b *block) cost() int { return cap(b.data) + 16*len(b.ids) + 64 }

// readBlock decompresses the block stored under key in p (val being its
// bbolt value), through the cache; gen is p's generation as read before the
// transaction the value comes from.
func (s *Store) readBlock(p *partition, gen uint64, key, val []byte) (*block, error) {
	k := cacheKey{p: p, gen: gen}
	copy(k.key[:], key)
	if b := s.cache.get(k); b != nil {
		s.m.cacheHits.Inc()
		return b, nil
	}
	s.m.cacheMisses.Inc()
	b, err := s.codec.decodeBlock(val)
	if err != nil {
		return nil, err
	}
	s.cache.put(k, b)
	return b, nil
}
