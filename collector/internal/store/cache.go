package store

import "sync"

// blockCache keeps decompressed blocks for reads, least recently used out
// first: a dashboard asks the same hours again and again, and decompressing
// a block costs more than everything else a read of one series does.
//
// Entries are keyed by partition, the partition's write generation and the
// block key. A write bumps the generation after it commits, so later reads
// never see a block it replaced; entries of old generations age out.
type blockCache struct {
	mu sync.Mutex
	c  *lru[cacheKey, *block]
}

type cacheKey struct {
	p   *partition
	gen uint64
	key [keyLen]byte
}

func newBlockCache(max int) *blockCache {
	return &blockCache{c: newLRU[cacheKey](max, (*block).cost)}
}

func (c *blockCache) get(k cacheKey) *block {
	if c == nil || c.c.max <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b, _ := c.c.get(k)
	return b
}

func (c *blockCache) put(k cacheKey, b *block) {
	if c == nil || c.c.max <= 0 {
		return
	}
	if b.cost() > c.c.max/4 {
		return // would push out too much else
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.c.has(k) {
		c.c.put(k, b)
	}
}

// forget drops every entry of p, a partition being deleted.
func (c *blockCache) forget(p *partition) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.drop(func(k cacheKey) bool { return k.p == p })
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
