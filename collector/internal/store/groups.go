package store

import (
	"cmp"
	"slices"
)

// Group is one measurement+field: what a Selector names besides tags.
type Group struct {
	Measurement string
	Field       string
}

// Groups returns every measurement+field the store holds series of, sorted
// by measurement and then field, so that readers which enumerate series
// (SensorThings' Datastreams) need not know the field names beforehand.
func (s *Store) Groups() ([]Group, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	s.ix.mu.RLock()
	out := make([]Group, 0, len(s.ix.groups))
	for gid := 1; gid < len(s.ix.groups); gid++ {
		g := s.ix.groups[gid]
		out = append(out, Group{Measurement: g.measurement, Field: g.field})
	}
	s.ix.mu.RUnlock()
	slices.SortFunc(out, func(a, b Group) int {
		return cmp.Or(cmp.Compare(a.Measurement, b.Measurement), cmp.Compare(a.Field, b.Field))
	})
	return out, nil
}
