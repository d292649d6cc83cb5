package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// tier is one resolution of stored data, each in its own directory of
// time-partitioned files.
type tier uint8

const (
	tierRaw tier = iota
	tier1m
	tier1h
	numTiers
)

func (t tier) String() string { return [...]string{"raw", "1m", "1h"}[t] }

var (
	bucketBlocks = []byte("blocks")
	// bucketDays, in 1h partitions, lists the days whose rollups were
	// written, in the same transaction as the rollups.
	bucketDays = []byte("days")
)

// partitionDate is how a partition file is named: the UTC date of its start.
const partitionDate = "2006-01-02"

// partition is one bbolt file holding one tier's blocks for
// [start, start+period).
type partition struct {
	tier  tier
	start int64
	end   int64
	path  string

	once sync.Once
	db   *bolt.DB
	err  error

	// gen counts committed writes, for the block cache.
	gen atomic.Uint64
}

// update runs fn in a write transaction on p's bucket of blocks and bumps
// p's generation once it committed.
func (p *partition) update(db *bolt.DB, fn func(tx *bolt.Tx) error) error {
	err := db.Update(fn)
	p.gen.Add(1)
	return err
}

// partitions opens partition files lazily: a store keeps years of files and
// a query touches a few, and bbolt reads part of every file it opens.
type partitions struct {
	dir    string
	bopts  *bolt.Options
	period [numTiers]int64
	log    *slog.Logger

	mu sync.RWMutex
	m  [numTiers]map[int64]*partition
}

func newPartitions(dir string, period [numTiers]int64, bopts *bolt.Options, log *slog.Logger) (*partitions, error) {
	ps := &partitions{dir: dir, bopts: bopts, period: period, log: log}
	for t := range numTiers {
		ps.m[t] = map[int64]*partition{}
		tdir := filepath.Join(dir, t.String())
		if err := os.MkdirAll(tdir, 0o750); err != nil {
			return nil, fmt.Errorf("create %q: %w", tdir, err)
		}
		ents, err := os.ReadDir(tdir)
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", tdir, err)
		}
		for _, e := range ents {
			name, ok := strings.CutSuffix(e.Name(), ".db")
			if !ok || e.IsDir() {
				continue
			}
			day, err := time.Parse(partitionDate, name)
			start := day.UnixNano()
			if err != nil || floorTo(start, period[t]) != start {
				log.Warn("store: ignoring a file that is not a partition of this layout", "file", filepath.Join(tdir, e.Name()))
				continue
			}
			ps.m[t][start] = &partition{tier: t, start: start, end: start + period[t], path: filepath.Join(tdir, e.Name())}
		}
	}
	return ps, nil
}

func (p *partition) open(bopts *bolt.Options) (*bolt.DB, error) {
	p.once.Do(func() {
		db, err := bolt.Open(p.path, 0o600, bopts)
		if err == nil {
			err = db.Update(func(tx *bolt.Tx) error {
				if _, err := tx.CreateBucketIfNotExists(bucketBlocks); err != nil {
					return err
				}
				if p.tier == tier1h {
					_, err := tx.CreateBucketIfNotExists(bucketDays)
					return err
				}
				return nil
			})
			if err != nil {
				db.Close()
			}
		}
		if err != nil {
			p.err = fmt.Errorf("open partition %q: %w", p.path, err)
			return
		}
		p.db = db
	})
	return p.db, p.err
}

// get returns the partition of tier t holding time ts, or nil.
func (ps *partitions) get(t tier, ts int64) *partition {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	return ps.m[t][floorTo(ts, ps.period[t])]
}

// create returns the partition of tier t holding ts, creating its file.
func (ps *partitions) create(t tier, ts int64) (*partition, *bolt.DB, error) {
	start := floorTo(ts, ps.period[t])
	ps.mu.Lock()
	p := ps.m[t][start]
	if p == nil {
		name := time.Unix(0, start).UTC().Format(partitionDate) + ".db"
		p = &partition{tier: t, start: start, end: start + ps.period[t], path: filepath.Join(ps.dir, t.String(), name)}
		ps.m[t][start] = p
	}
	ps.mu.Unlock()
	db, err := p.open(ps.bopts)
	return p, db, err
}

// list returns the partitions of tier t that overlap [from, to], ascending.
func (ps *partitions) list(t tier, from, to int64) []*partition {
	ps.mu.RLock()
	var out []*partition
	for _, p := range ps.m[t] {
		if p.end > from && p.start <= to {
			out = append(out, p)
		}
	}
	ps.mu.RUnlock()
	slices.SortFunc(out, func(a, b *partition) int { return cmpInt(a.start, b.start) })
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// view runs fn in a read transaction on p's blocks bucket, with p's write
// generation as read before the transaction. A partition that was deleted
// meanwhile reads as empty: its data expired.
func (ps *partitions) view(p *partition, fn func(b *bolt.Bucket, gen uint64) error) error {
	db, err := p.open(ps.bopts)
	if err != nil {
		return err
	}
	gen := p.gen.Load()
	err = db.View(func(tx *bolt.Tx) error { return fn(tx.Bucket(bucketBlocks), gen) })
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return nil
	}
	return err
}

// remove forgets p, closes it (waiting for its readers) and deletes its
// file: the only way to give disk space back, since bbolt never shrinks a
// file.
func (ps *partitions) remove(p *partition) error {
	ps.mu.Lock()
	if ps.m[p.tier][p.start] == p {
		delete(ps.m[p.tier], p.start)
	}
	ps.mu.Unlock()
	// Make sure a later open cannot resurrect it, then close what is open.
	p.once.Do(func() { p.err = berrors.ErrDatabaseNotOpen })
	if p.db != nil {
		if err := p.db.Close(); err != nil {
			return fmt.Errorf("close partition %q: %w", p.path, err)
		}
	}
	if err := os.Remove(p.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove partition %q: %w", p.path, err)
	}
	return nil
}

func (ps *partitions) close() error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var errs []error
	for t := range numTiers {
		for _, p := range ps.m[t] {
			p.once.Do(func() { p.err = berrors.ErrDatabaseNotOpen })
			if p.db != nil {
				if err := p.db.Close(); err != nil {
					errs = append(errs, fmt.Errorf("close partition %q: %w", p.path, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// sizes returns the bytes the partition files of each tier take on disk.
func (ps *partitions) sizes() [numTiers]int64 {
	var out [numTiers]int64
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	for t := range numTiers {
		for _, p := range ps.m[t] {
			if fi, err := os.Stat(p.path); err == nil {
				out[t] += fi.Size()
			}
		}
	}
	return out
}
