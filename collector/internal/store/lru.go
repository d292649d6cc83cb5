package store

import "container/list"

// lru is a map bounded by the summed cost of its values, least recently
// used out first. It does no locking: its owner does.
type lru[K comparable, V any] struct {
	max   int
	size  int
	cost  func(V) int
	order *list.List // of *lruEntry[K, V], most recent at the front
	items map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	k K
	v V
}

func newLRU[K comparable, V any](max int, cost func(V) int) *lru[K, V] {
	return &lru[K, V]{max: max, cost: cost, order: list.New(), items: map[K]*list.Element{}}
}

// get returns k's value and makes it the most recent.
func (c *lru[K, V]) get(k K) (V, bool) {
	e, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry[K, V]).v, true
}

// has reports whether k is held, without making it recent.
func (c *lru[K, V]) has(k K) bool {
	_, ok := c.items[k]
	return ok
}

// put stores v under k, replacing what k held, and evicts the least
// recently used entries beyond max.
func (c *lru[K, V]) put(k K, v V) {
	if old, ok := c.items[k]; ok {
		c.size -= c.cost(old.Value.(*lruEntry[K, V]).v)
		c.order.Remove(old)
	}
	c.items[k] = c.order.PushFront(&lruEntry[K, V]{k, v})
	c.size += c.cost(v)
	for c.size > c.max {
		last := c.order.Back()
		le := last.Value.(*lruEntry[K, V])
		c.order.Remove(last)
		delete(c.items, le.k)
		c.size -= c.cost(le.v)
	}
}

// drop removes every entry whose key matches.
func (c *lru[K, V]) drop(match func(K) bool) {
	for k, e := range c.items {
		if match(k) {
			c.order.Remove(e)
			delete(c.items, k)
			c.size -= c.cost(e.Value.(*lruEntry[K, V]).v)
		}
	}
}
