package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/citysense/citysense/protocols"
)

// Sample is one stored value.
type Sample struct {
	Time  int64 // ns since the Unix epoch
	Value protocols.Value
}

// Series is one series with the samples Select found in the range.
type Series struct {
	Measurement string
	Field       string
	Tags        []protocols.Tag // sorted by key
	Samples     []Sample        // ascending time
}

// Lookup returns the series sel selects, ordered by measurement+field group
// and then by creation. When sel.Measurement is empty and sel.Field exists
// in more than one measurement, whatever the tags, the error is an
// *AmbiguousFieldError: the answer would otherwise change as soon as a
// second measurement grows that field.
func (s *Store) Lookup(sel Selector) ([]SeriesRef, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return s.ix.lookup(sel)
}

// Select returns the samples of every series matching sel with from <= time
// <= to (both bounds inclusive, in ns), series ordered by series key. Series
// without samples in the range are left out. See Lookup for the ambiguity
// rule.
func (s *Store) Select(sel Selector, from, to int64) ([]Series, error) {
	refs, err := s.Lookup(sel)
	if err != nil {
		return nil, fmt.Errorf("select %q: %w", sel.Field, err)
	}
	keys := make([]string, len(refs))
	for i := range refs {
		keys[i] = refs[i].Key()
	}
	out := make([]Series, len(refs))
	total := 0
	err = s.ReadRaw(context.Background(), refs, from, to, func(i int, smp []Sample) error {
		if total += len(smp); sel.MaxPoints > 0 && total > sel.MaxPoints {
			return fmt.Errorf("%w: more than %d", ErrTooManyPoints, sel.MaxPoints)
		}
		out[i].Samples = append(out[i].Samples, smp...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("select %q: %w", sel.Field, err)
	}
	order := make([]int, len(refs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	var res []Series
	for _, i := range order {
		if len(out[i].Samples) == 0 {
			continue
		}
		r := &refs[i]
		res = append(res, Series{Measurement: r.Measurement, Field: r.Field, Tags: r.Tags, Samples: out[i].Samples})
	}
	return res, nil
}

// groupRefs splits refs by group: the read paths work a group at a time,
// since a group's series share blocks.
type groupRefs struct {
	gid uint32
	ids []uint32 // ascending
	idx []int    // position in refs of ids[k]
}

func splitGroups(refs []SeriesRef) []groupRefs {
	pos := map[uint32]int{}
	var out []groupRefs
	order := make([]int, len(refs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmpInt(int64(refs[a].gid), int64(refs[b].gid)); c != 0 {
			return c
		}
		return cmpInt(int64(refs[a].id), int64(refs[b].id))
	})
	for _, i := range order {
		r := &refs[i]
		k, ok := pos[r.gid]
		if !ok {
			k = len(out)
			pos[r.gid] = k
			out = append(out, groupRefs{gid: r.gid})
		}
		g := &out[k]
		if n := len(g.ids); n > 0 && g.ids[n-1] == r.id {
			continue // the same series twice
		}
		g.ids = append(g.ids, r.id)
		g.idx = append(g.idx, i)
	}
	return out
}

// seekFrom is where a scan of partition p (starting at pstart) for data
// from time from begins: the start of from's window of size d, or the
// partition's start, whichever is later (and without overflow for
// from = math.MinInt64).
func seekFrom(from, pstart, d int64) int64 {
	if from <= pstart {
		return pstart
	}
	return floorTo(from, d)
}

// windowSrc is one window to read: from its raw partition (nil when only
// the head holds it) and the head.
type windowSrc struct {
	start  int64
	part   *partition
	inHead bool
}

// rawWindows lists the windows holding data of gid that overlap
// [from, to], ascending. The head is listed before the disk, so that a
// window the writer moves from one to the other meanwhile is seen on disk.
func (s *Store) rawWindows(gid uint32, from, to int64) ([]windowSrc, error) {
	return s.listWindows(gid, from, to, false)
}

// listWindows is rawWindows, or with headOnly only the head's windows
// (each with its raw partition, when it has one).
func (s *Store) listWindows(gid uint32, from, to int64, headOnly bool) ([]windowSrc, error) {
	win := int64(s.opts.Window)
	inHead := s.head.starts(gid, win, from, to)
	var out []windowSrc
	var parts []*partition
	if !headOnly {
		parts = s.parts.list(tierRaw, from, to)
	}
	for _, p := range parts {
		err := s.parts.view(p, func(b *bolt.Bucket, gen uint64) error {
			c := b.Cursor()
			for start := seekFrom(from, p.start, win); start < p.end && start <= to; start += win {
				if k, _ := c.Seek(blockKey(start, gid, 0)); k != nil {
					if st, g, _, ok := parseBlockKey(k); ok && st == start && g == gid {
						out = append(out, windowSrc{start: start, part: p})
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, start := range inHead {
		i, found := slices.BinarySearchFunc(out, start, func(w windowSrc, t int64) int { return cmpInt(w.start, t) })
		if found {
			out[i].inHead = true
		} else {
			out = slices.Insert(out, i, windowSrc{start: start, part: s.parts.get(tierRaw, start), inHead: true})
		}
	}
	return out, nil
}

// readWindows reads ids (ascending) in each of wins, in the order given,
// and calls fn for every series that has samples in a window, with its
// samples there merged from disk and head (the head is newer). The column
// passed to fn is only valid during the call.
//
// Blocks are found and decompressed in one read transaction per run of
// windows in the same partition; chunks are decoded and fn called after it
// ended, so that a slow consumer never holds a transaction open. The head
// is read before the disk: a window the writer moves from head to disk in
// between is then read twice (and merged, the copies being equal) rather
// than not at all.
func (s *Store) readWindows(ctx context.Context, gid uint32, ids []uint32, wins []windowSrc, fn func(start int64, k int, c *column) error) error {
	period := s.parts.period[tierRaw]
	samePart := func(a, b windowSrc) bool {
		if a.part != nil || b.part != nil {
			return a.part == b.part
		}
		return floorTo(a.start, period) == floorTo(b.start, period)
	}
	var scratch column
	for len(wins) > 0 {
		n := 1
		for n < len(wins) && samePart(wins[n], wins[0]) {
			n++
		}
		run := wins[:n]
		wins = wins[n:]
		if err := ctx.Err(); err != nil {
			return err
		}
		heads := make([]map[uint32]*column, len(run))
		for k, w := range run {
			heads[k] = s.head.columns(w.start, ids)
		}
		disk := make([]windowBlocks, len(run))
		p := run[0].part
		if p == nil {
			// Only in the head when listed; it may have been written since.
			p = s.parts.get(tierRaw, run[0].start)
		}
		if p != nil {
			err := s.parts.view(p, func(b *bolt.Bucket, gen uint64) error {
				for k, w := range run {
					wb, err := s.windowBlocks(b, p, gen, gid, w.start, ids)
					if err != nil {
						return err
					}
					disk[k] = wb
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		for k, w := range run {
			head := heads[k]
			for j, id := range ids {
				streams := disk[k].chunk(id)
				hc := head[id]
				if streams == nil && hc == nil {
					continue
				}
				c := hc
				if streams != nil {
					if err := decodeChunk(streams, w.start, &scratch); err != nil {
						return fmt.Errorf("series %d in window %d: %w", id, w.start, err)
					}
					c = &scratch
					if hc != nil {
						c = mergeColumns(&scratch, hc)
					}
				}
				if err := fn(w.start, j, c); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// windowBlocks are the decompressed blocks of one window that hold the ids
// asked for.
type windowBlocks struct {
	firsts []uint32
	blocks []*block
}

func (wb *windowBlocks) chunk(id uint32) [][]byte {
	if len(wb.blocks) == 0 {
		return nil
	}
	i, found := slices.BinarySearch(wb.firsts, id)
	if !found {
		i = max(i-1, 0)
	}
	if b := wb.blocks[i]; b != nil {
		if streams, ok := b.chunk(id); ok {
			return streams
		}
	}
	return nil
}

// windowBlocks decompresses (through the cache) the blocks of the window at
// start, in partition p of generation gen, that hold any of ids.
func (s *Store) windowBlocks(b *bolt.Bucket, p *partition, gen uint64, gid uint32, start int64, ids []uint32) (windowBlocks, error) {
	refs := listBlocks(b, gid, start)
	if len(refs) == 0 {
		return windowBlocks{}, nil
	}
	wb := windowBlocks{firsts: make([]uint32, len(refs)), blocks: make([]*block, len(refs))}
	for i, r := range refs {
		wb.firsts[i] = r.first
	}
	for _, id := range ids {
		i := blockFor(refs, id)
		if wb.blocks[i] != nil {
			continue
		}
		blk, err := s.readBlock(p, gen, refs[i].key, refs[i].val)
		if err != nil {
			return windowBlocks{}, fmt.Errorf("block %x: %w", refs[i].key, err)
		}
		wb.blocks[i] = blk
	}
	return wb, nil
}

// ReadRaw calls fn with the samples of refs[i] with from <= time <= to,
// in time order: window by window, so several times per series, never
// with an empty slice. The slice is reused once fn returns. Of two writes
// of the same series and time, the later one is returned.
func (s *Store) ReadRaw(ctx context.Context, refs []SeriesRef, from, to int64, fn func(i int, samples []Sample) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if from > to {
		return nil
	}
	var buf []Sample
	for _, g := range splitGroups(refs) {
		wins, err := s.rawWindows(g.gid, from, to)
		if err != nil {
			return err
		}
		err = s.readWindows(ctx, g.gid, g.ids, wins, func(_ int64, k int, c *column) error {
			sl := c.slice(from, to)
			if sl.len() == 0 {
				return nil
			}
			buf = buf[:0]
			for j, t := range sl.ts {
				buf = append(buf, Sample{Time: t, Value: sl.value(j)})
			}
			return fn(g.idx[k], buf)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Latest calls fn once for each series of refs that has a sample with
// from <= time <= at, with the newest such sample.
func (s *Store) Latest(ctx context.Context, refs []SeriesRef, from, at int64, fn func(i int, smp Sample) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if from > at {
		return nil
	}
	for _, g := range splitGroups(refs) {
		wins, err := s.rawWindows(g.gid, from, at)
		if err != nil {
			return err
		}
		slices.Reverse(wins)
		remaining := slices.Clone(g.ids)
		pos := map[uint32]int{}
		for k, id := range g.ids {
			pos[id] = g.idx[k]
		}
		// Newest window first; each window's read drops the series it
		// answered, so a quiet station costs a few more windows, not all.
		for len(wins) > 0 && len(remaining) > 0 {
			found := map[uint32]bool{}
			err := s.readWindows(ctx, g.gid, remaining, wins[:1], func(_ int64, k int, c *column) error {
				sl := c.slice(from, at)
				if sl.len() == 0 {
					return nil
				}
				id := remaining[k]
				found[id] = true
				last := sl.len() - 1
				return fn(pos[id], Sample{Time: sl.ts[last], Value: sl.value(last)})
			})
			if err != nil {
				return err
			}
			remaining = slices.DeleteFunc(remaining, func(id uint32) bool { return found[id] })
			wins = wins[1:]
		}
	}
	return nil
}

// ReadRollups calls fn with the buckets of resolution res (time.Minute or
// time.Hour) of refs[i] whose start lies in [floor(from), to], in time order,
// day by day. Hours of closed days are read from the 1-hour rollups, those of
// the current day (and late points still in the head) aggregated from raw
// points; minutes are aggregated from raw points while those are kept, and
// read from the 1-minute rollups after. Series of strings have no buckets.
func (s *Store) ReadRollups(ctx context.Context, refs []SeriesRef, res time.Duration, from, to int64, fn func(i int, bs []Bucket) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if res != time.Minute && res != time.Hour {
		return fmt.Errorf("read rollups: resolution %s, want 1m or 1h", res)
	}
	if from > minTime+int64(res) {
		from = floorTo(from, int64(res))
	}
	if from > to {
		return nil
	}
	for _, g := range splitGroups(refs) {
		if err := s.readRollups(ctx, g, int64(res), from, to, fn); err != nil {
			return err
		}
	}
	return nil
}

// dayBuckets collects one day's buckets of a group's series before they
// are passed on: db[k] are those of the group's ids[k]. (A slice, not a
// map by id: a map for each day of a one-station chart was most of what
// the read allocated, and allocating is what a request on a core that
// idled before it pays for most.)
type dayBuckets [][]Bucket

func newDayBuckets(g groupRefs) dayBuckets { return make(dayBuckets, len(g.ids)) }

func (db dayBuckets) emit(g groupRefs, from, to int64, fn func(i int, bs []Bucket) error) error {
	for k := range g.ids {
		bs := db[k]
		lo, _ := slices.BinarySearchFunc(bs, from, func(b Bucket, t int64) int { return cmpInt(b.Start, t) })
		hi, found := slices.BinarySearchFunc(bs, to, func(b Bucket, t int64) int { return cmpInt(b.Start, t) })
		if found {
			hi++
		}
		if lo < hi {
			if err := fn(g.idx[k], bs[lo:hi]); err != nil {
				return err
			}
		}
	}
	return nil
}

// readTierDays reads the rollup chunks of g's series for every day in
// [from, to] that has any in tier t: one read transaction per partition
// file (a 1-hour file holds four weeks), not one per day.
func (s *Store) readTierDays(t tier, g groupRefs, from, to, res int64) (map[int64]dayBuckets, error) {
	out := map[int64]dayBuckets{}
	for _, p := range s.parts.list(t, from, to) {
		first := seekFrom(from, p.start, int64(day))
		// All of the file's days from the rollup cache, or one read
		// transaction for all of them.
		if s.cachedDays(p, g, first, min(p.end-1, to), int64(day), out) {
			continue
		}
		err := s.parts.view(p, func(b *bolt.Bucket, gen uint64) error {
			for d := first; d < p.end && d <= to; d += int64(day) {
				blocks := listBlocks(b, g.gid, d)
				if len(blocks) == 0 {
					s.noteRollups(p, gen, d, g, false, nil)
					continue
				}
				db := newDayBuckets(g)
				if err := s.decodeRollups(p, gen, blocks, g, d, res, 0, db); err != nil {
					return err
				}
				out[d] = db
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// decodeRollups decodes the rollup chunks of g's series in blocks (those
// of one group and start in p, read at generation gen) and appends their
// buckets to db; a series' first slice gets capacity hint.
//
// The series' new buckets also go to the rollup cache, with the fact that
// the group has blocks at base.
func (s *Store) decodeRollups(p *partition, gen uint64, blocks []blockRef, g groupRefs, base, res int64, hint int, db dayBuckets) error {
	var got dayBuckets
	if s.rollups.enabled() {
		got = newDayBuckets(g)
	}
	err := s.eachChunk(p, gen, blocks, g.ids, func(k int, streams [][]byte) error {
		bs := db[k]
		if bs == nil && hint > 0 {
			bs = make([]Bucket, 0, hint)
		}
		n := len(bs)
		bs, err := decodeRollupChunk(streams, base, res, bs)
		if err != nil {
			return err
		}
		db[k] = bs
		if got != nil {
			got[k] = slices.Clone(bs[n:])
		}
		return nil
	})
	if err != nil {
		return err
	}
	if got != nil {
		s.noteRollups(p, gen, base, g, true, got)
	}
	return nil
}

// eachChunk calls fn with the streams of each of ids (ascending; k is the
// position in them) that has a chunk in blocks (those of one group and
// start in p, read at generation gen), reading each block once through the
// block cache.
func (s *Store) eachChunk(p *partition, gen uint64, blocks []blockRef, ids []uint32, fn func(k int, streams [][]byte) error) error {
	cur, curBlk := -1, (*block)(nil)
	var streams [][]byte
	for k, id := range ids {
		i := blockFor(blocks, id)
		if i != cur {
			blk, err := s.readBlock(p, gen, blocks[i].key, blocks[i].val)
			if err != nil {
				return fmt.Errorf("block %x: %w", blocks[i].key, err)
			}
			cur, curBlk = i, blk
		}
		var ok bool
		if streams, ok = curBlk.chunkInto(id, streams); !ok {
			continue
		}
		if err := fn(k, streams); err != nil {
			return fmt.Errorf("series %d in block %x: %w", id, blocks[i].key, err)
		}
	}
	return nil
}

// openDayHours returns the hours of g's series in the windows of day d
// written to p (the day's raw partition, not rolled up yet). They are
// computed from the raw chunks (the windows' merged raw points, so any
// order or repetition of writes gives the same hours) and kept in the
// rollup cache for the day as a whole, like a rolled-up day's, so that a
// chart of today read again decodes nothing; a write to the day's file
// changes its generation and with it every key.
func (s *Store) openDayHours(g groupRefs, p *partition, d int64) (dayBuckets, error) {
	if db, ok := s.cachedDay(p, g, d); ok {
		return db, nil
	}
	win, hour := int64(s.opts.Window), int64(time.Hour)
	hint := int(int64(day) / hour)
	db := newDayBuckets(g)
	var scratch column
	err := s.parts.view(p, func(b *bolt.Bucket, gen uint64) error {
		has := false
		for start := d; start < d+int64(day); start += win {
			blocks := listBlocks(b, g.gid, start)
			if len(blocks) == 0 {
				continue
			}
			has = true
			err := s.eachChunk(p, gen, blocks, g.ids, func(k int, streams [][]byte) error {
				if err := decodeChunk(streams, start, &scratch); err != nil {
					return err
				}
				bs := db[k]
				if bs == nil {
					bs = make([]Bucket, 0, hint)
				}
				db[k] = appendBuckets(bs, &scratch, hour)
				return nil
			})
			if err != nil {
				return err
			}
		}
		for k, bs := range db {
			db[k] = slices.Clip(bs) // shared with the cache from here on
		}
		s.noteRollups(p, gen, d, g, has, db)
		return nil
	})
	return db, err
}

// rawBuckets aggregates the raw points (disk and head) of g's series in
// wins into buckets of res, replacing whatever db held for those windows.
func (s *Store) rawBuckets(ctx context.Context, g groupRefs, wins []windowSrc, res int64, db dayBuckets) error {
	win := int64(s.opts.Window)
	// A window that has no samples of a series leaves its buckets alone:
	// the head never deletes points.
	var fresh []Bucket
	return s.readWindows(ctx, g.gid, g.ids, wins, func(start int64, k int, c *column) error {
		fresh = appendBuckets(fresh[:0], c, res)
		if old := db[k]; len(old) == 0 || old[len(old)-1].Start < start {
			db[k] = append(old, fresh...) // the usual case: windows in order
		} else {
			db[k] = replaceBuckets(old, fresh, start, start+win)
		}
		return nil
	})
}

// readRollups reads g's buckets of res day by day. For hours, a day whose
// rollups were written (it closed) comes from the 1h tier, with the windows
// the head still holds (late points) aggregated from raw points; a day still
// open is aggregated from its raw points, the written windows' hours
// through the rollup cache. For minutes, a day whose raw points are kept is
// aggregated from them, an older one comes from the 1m tier.
func (s *Store) readRollups(ctx context.Context, g groupRefs, res, from, to int64, fn func(i int, bs []Bucket) error) error {
	// An hourly read needs only the head's windows listed: a rolled-up
	// day's written windows are in its rollups, an open day's are found
	// by openDayHours, so no raw partition is looked at here.
	hourly := res == int64(time.Hour) && s.parts.period[tierRaw] == int64(day)
	rawWins, err := s.listWindows(g.gid, from, to, hourly)
	if err != nil {
		return err
	}
	byDay := map[int64][]windowSrc{}
	for _, w := range rawWins {
		d := floorTo(w.start, int64(day))
		byDay[d] = append(byDay[d], w)
	}
	t := tier1m
	if res == int64(time.Hour) {
		t = tier1h
	}
	tier, err := s.readTierDays(t, g, from, to, res)
	if err != nil {
		return err
	}
	days := make([]int64, 0, len(tier)+len(byDay))
	for d := range tier {
		days = append(days, d)
	}
	for d := range byDay {
		if !slices.Contains(days, d) {
			days = append(days, d)
		}
	}
	if hourly {
		for _, p := range s.parts.list(tierRaw, from, to) {
			if !s.rolledUp(p.start) && !slices.Contains(days, p.start) {
				days = append(days, p.start)
			}
		}
	}
	slices.Sort(days)
	for _, d := range days {
		if err := ctx.Err(); err != nil {
			return err
		}
		var useTier bool
		if t == tier1h {
			useTier = s.rolledUp(d)
		} else {
			useTier = byDay[d] == nil && s.parts.get(tierRaw, d) == nil
		}
		var db dayBuckets
		wins := byDay[d]
		switch {
		case useTier:
			db = tier[d]
			// Late points in the head are not in the closed day's
			// rollups yet.
			wins = slices.DeleteFunc(slices.Clone(wins), func(w windowSrc) bool { return !w.inHead })
		case hourly:
			// An open day: the written windows' hours from their raw
			// chunks (cached); the head's windows, merged with what is
			// written of them, from raw points below.
			if p := s.parts.get(tierRaw, d); p != nil {
				if db, err = s.openDayHours(g, p, d); err != nil {
					return err
				}
			}
		}
		if db == nil {
			db = newDayBuckets(g)
		}
		if err := s.rawBuckets(ctx, g, wins, res, db); err != nil {
			return err
		}
		if err := db.emit(g, from, to, fn); err != nil {
			return err
		}
	}
	return nil
}

// RawHorizon is the earliest time whose raw points are kept: older data
// exists only as rollups. math.MinInt64 when raw points are kept forever.
func (s *Store) RawHorizon() int64 {
	return s.rawCutoff(s.opts.Now().UnixNano())
}
