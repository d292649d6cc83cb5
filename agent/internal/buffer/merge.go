package buffer

import (
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/citysense/citysense/protocols"
)

// # Merging small batches
//
// A commit makes a batch of what arrived since the previous one. A live
// input ticking every few seconds makes batches of one tick each: one
// reading per series, where the columns have nothing to delta against,
// and a page of bbolt overhead per commit. Stored that way a simulated
// city takes about 18 bytes a reading; in full batches of BatchPoints, 2.5.
// While an output is up this does not matter, since the batch leaves within
// milliseconds. While all of them are down, the batches pile up, so the
// committer merges them: once the unclaimed small batches of the active
// segment hold BatchPoints points, it rewrites them as one batch, in one
// transaction. The freed pages take the next small batches, so the file
// grows by the merged bytes only.
//
// A merged batch takes the number of its first part and the other numbers
// are never used again. The collector drops a batch whose number it has
// seen, so a batch that might have reached it must never change: a batch
// is claimed, persistently, before any output gets it. Read claims what
// it returns (one small write transaction) unless the batch was claimed
// when it was committed, which is what happens while an output is live
// (SetLive): then no batch waits long enough to be worth merging and the
// reader pays nothing. Merging never touches a claimed batch, and claiming
// a batch that a merge replaced meanwhile fails, so that Read reads again.
// Entries written before the flag existed count as claimed.
//
// Only batches of at most BatchPoints/2 points are merged; a merged batch
// is never merged again. A segment's leftover small batches are merged
// when it is sealed.

// openBatch is an unclaimed columnar batch that may be merged.
type openBatch struct {
	seq    uint64
	points int
	crc    uint32
}

// addOpen notes a batch just stored or loaded; Buffer.mu must be held (or
// the segment not yet shared).
func (s *segment) addOpen(seq uint64, h header) {
	if !h.claimed && h.format == Columnar {
		s.open = append(s.open, openBatch{seq, h.points, h.crc})
	}
}

// dropOpen forgets batches claimed, merged or deleted; Buffer.mu must be
// held. seqs must be sorted.
func (s *segment) dropOpen(seqs []uint64) {
	if len(s.open) == 0 || len(seqs) == 0 {
		return
	}
	s.open = slices.DeleteFunc(s.open, func(o openBatch) bool {
		_, found := slices.BinarySearch(seqs, o.seq)
		return found
	})
}

// SetLive tells the buffer whether output is delivering now. While any
// output is live, new batches are stored claimed and never merged; while
// none is, they are left unclaimed so that a backlog can be merged. The
// default is not live. Either way is correct: it only decides who pays
// for the claim.
func (b *Buffer) SetLive(output string, live bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if live {
		if b.live == nil {
			b.live = map[string]bool{}
		}
		b.live[output] = true
	} else {
		delete(b.live, output)
	}
}

// anyLiveLocked reports whether a current output is live.
func (b *Buffer) anyLiveLocked() bool {
	for _, o := range b.outputs {
		if b.live[o] {
			return true
		}
	}
	return false
}

// claimRef names a batch Read is about to return unclaimed, with the
// checksum it was read with (a merged batch keeps its first part's number).
type claimRef struct {
	s   *segment
	seq uint64
	crc uint32
}

// errBadPart: a batch to merge does not read back. Only that merge is
// given up; Read moves the batch to the quarantine when an output gets
// to it, as it does for any batch, and the rest of the segment is kept.
var errBadPart = errors.New("damaged batch")

// errReplaced: a merge replaced a batch between reading and claiming it.
var errReplaced = errors.New("batch replaced by a merge")

// claim marks the batches as claimed, one transaction per segment. It
// returns errReplaced when one of them is no longer stored as it was read.
func (b *Buffer) claim(refs []claimRef) error {
	var replaced bool
	for len(refs) > 0 {
		s := refs[0].s
		n := 1
		for n < len(refs) && refs[n].s == s {
			n++
		}
		group := refs[:n]
		refs = refs[n:]
		var done []uint64
		err := s.use(b, true, func(tx *bolt.Tx) error {
			done = done[:0]
			index := tx.Bucket(bucketIndex)
			for _, r := range group {
				k := u64(r.seq)
				v := index.Get(k)
				if v == nil {
					replaced = true
					continue
				}
				h, err := parseHeader(v)
				if err != nil {
					return fmt.Errorf("batch %d: %w", r.seq, err)
				}
				if h.crc != r.crc {
					replaced = true
					continue
				}
				if !h.claimed {
					h.claimed = true
					if err := index.Put(k, h.marshal()); err != nil {
						return err
					}
				}
				done = append(done, r.seq)
			}
			return nil
		})
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				b.segmentFailed(s, err)
			}
			return fmt.Errorf("claim batches in %q: %w", s.path, err)
		}
		slices.Sort(done)
		b.mu.Lock()
		s.dropOpen(done)
		b.mu.Unlock()
		b.m.claims.Inc()
	}
	if replaced {
		return errReplaced
	}
	return nil
}

// mergeOpen merges the segment's unclaimed small batches in groups of up
// to BatchPoints points: only once they hold a full batch, or all of them
// when the segment is sealed (nothing joins them later). It runs on the
// committer; errors are logged and the batches stay as they are.
func (b *Buffer) mergeOpen(s *segment, sealed bool) {
	for range 64 {
		b.mu.Lock()
		group := pickMerge(s.open, b.opts.BatchPoints, sealed)
		b.mu.Unlock()
		if len(group) < 2 {
			return
		}
		err := b.merge(s, group)
		if errors.Is(err, errReplaced) {
			// Claimed meanwhile: the open list is already updated.
			continue
		}
		if errors.Is(err, errSegmentGone) {
			return
		}
		if err != nil {
			b.log.Warn("buffer: cannot merge small batches; they are kept as they are", "segment", s.path, "batches", len(group), "err", err)
			if errors.Is(err, ErrCorrupt) {
				b.segmentFailed(s, err)
			}
			b.mu.Lock()
			s.dropOpen(groupSeqs(group))
			b.mu.Unlock()
			return
		}
	}
}

func groupSeqs(group []openBatch) []uint64 {
	seqs := make([]uint64, len(group))
	for i, g := range group {
		seqs[i] = g.seq
	}
	return seqs
}

// pickMerge chooses the next batches to merge: the oldest small ones, as
// many as fit in per points. Unless sealed, only when the small ones hold
// at least per points, so that the group is a full batch.
func pickMerge(open []openBatch, per int, sealed bool) []openBatch {
	var small []openBatch
	total := 0
	for _, o := range open {
		if o.points <= per/2 {
			small = append(small, o)
			total += o.points
		}
	}
	if len(small) < 2 || (!sealed && total < per) {
		return nil
	}
	n, sum := 0, 0
	for n < len(small) && sum+small[n].points <= per {
		sum += small[n].points
		n++
	}
	return small[:n]
}

// merge replaces the batches of group with one batch under the first one's
// number, if all of them are still stored unclaimed as noted.
func (b *Buffer) merge(s *segment, group []openBatch) error {
	b.tcOnce.Do(func() { b.tc, b.tcErr = NewTranscoder() })
	if b.tcErr != nil {
		return b.tcErr
	}
	var (
		parts  = make([]header, len(group))
		bodies = make([][]byte, len(group))
		stale  bool
	)
	// check reports whether every part is still stored unclaimed as
	// noted, reading their index entries into parts; false sets stale.
	check := func(index *bolt.Bucket) error {
		for i, g := range group {
			v := index.Get(u64(g.seq))
			if v == nil {
				stale = true
				return nil
			}
			h, err := parseHeader(v)
			if err != nil {
				return fmt.Errorf("batch %d: %w", g.seq, err)
			}
			parts[i] = h
			if h.claimed || h.crc != g.crc || h.format != Columnar {
				stale = true
				return nil
			}
		}
		return nil
	}
	err := s.use(b, false, func(tx *bolt.Tx) error {
		index, bk := tx.Bucket(bucketIndex), tx.Bucket(bucketBatches)
		if err := check(index); err != nil || stale {
			return err
		}
		for i := range group {
			bodies[i] = getBody(bk, group[i].seq, parts[i].bodyLen)
			if crc32.Checksum(bodies[i], castagnoli) != parts[i].crc {
				return fmt.Errorf("%w: batch %d: body checksum mismatch", errBadPart, group[i].seq)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if stale {
		b.refreshOpen(s, group)
		return errReplaced
	}

	merged := header{codec: b.opts.Codec, format: Columnar, appended: parts[0].appended, minTime: parts[0].minTime, maxTime: parts[0].maxTime}
	pts := make([]protocols.Point, 0, func() (n int) {
		for _, g := range group {
			n += g.points
		}
		return n
	}())
	raw := scratch.get()
	defer putScratch(raw)
	for i, h := range parts {
		*raw, err = b.tc.decompress((*raw)[:0], &Batch{Codec: h.codec, Body: bodies[i]})
		if err != nil {
			return fmt.Errorf("%w: batch %d: %v", errBadPart, group[i].seq, err)
		}
		err = decodeColumnar(*raw, func(p *protocols.Point) error {
			q := *p
			q.Fields = slices.Clone(p.Fields)
			pts = append(pts, q)
			return nil
		})
		if err != nil {
			return fmt.Errorf("%w: batch %d: %v", errBadPart, group[i].seq, err)
		}
		merged.appended = min(merged.appended, h.appended)
		merged.minTime = min(merged.minTime, h.minTime)
		merged.maxTime = max(merged.maxTime, h.maxTime)
	}
	if len(pts) != cap(pts) {
		return fmt.Errorf("%w: batches %d..%d decoded to %d points, their index says %d", errBadPart, group[0].seq, group[len(group)-1].seq, len(pts), cap(pts))
	}
	col := colScratch.get()
	*col = encodeColumnar((*col)[:0], [][]protocols.Point{pts})
	body := b.compress(*col)
	colScratch.put(col)
	merged.points, merged.bodyLen, merged.crc = len(pts), len(body), crc32.Checksum(body, castagnoli)

	var written int64
	err = s.use(b, true, func(tx *bolt.Tx) error {
		index, bk := tx.Bucket(bucketIndex), tx.Bucket(bucketBatches)
		index.FillPercent, bk.FillPercent = 1, 1
		if err := check(index); err != nil || stale {
			return err
		}
		for _, g := range group {
			if err := index.Delete(u64(g.seq)); err != nil {
				return err
			}
			if err := deleteBody(bk, g.seq); err != nil {
				return err
			}
		}
		if err := index.Put(u64(group[0].seq), merged.marshal()); err != nil {
			return err
		}
		if err := putBody(bk, group[0].seq, body); err != nil {
			return err
		}
		pageSize := int64(tx.DB().Info().PageSize)
		tx.OnCommit(func() {
			st := tx.Stats()
			written = st.GetPageAlloc() + pageSize
		})
		return nil
	})
	if err != nil {
		return err
	}
	if stale {
		b.refreshOpen(s, group)
		return errReplaced
	}
	var size int64
	_ = s.use(b, false, func(tx *bolt.Tx) error { size = tx.Size(); return nil })

	b.mu.Lock()
	for i, g := range group {
		s.removePresent(parts[i])
		for o := range s.pending {
			if !s.ackedSet(o).contains(g.seq) {
				s.pending[o] -= int64(parts[i].points)
				s.pendingB[o]--
			}
		}
	}
	s.addPresent(merged)
	for o := range s.pending {
		if !s.ackedSet(o).contains(group[0].seq) {
			s.pending[o] += int64(merged.points)
			s.pendingB[o]++
		}
	}
	if size > 0 {
		s.size = size
	}
	s.dropOpen(groupSeqs(group))
	b.notifyLocked()
	b.mu.Unlock()

	b.m.merges.Inc()
	b.m.mergedBatches.Add(len(group))
	b.m.flashBytes.Add(int(written))
	return nil
}

// refreshOpen drops from the open list the batches of group that are no
// longer stored unclaimed as noted, after a merge found them changed.
func (b *Buffer) refreshOpen(s *segment, group []openBatch) {
	var gone []uint64
	_ = s.use(b, false, func(tx *bolt.Tx) error {
		index := tx.Bucket(bucketIndex)
		for _, g := range group {
			v := index.Get(u64(g.seq))
			h, err := parseHeader(v)
			if v == nil || err != nil || h.claimed || h.crc != g.crc {
				gone = append(gone, g.seq)
			}
		}
		return nil
	})
	if len(gone) == 0 {
		gone = groupSeqs(group) // cannot tell: do not try these again
	}
	b.mu.Lock()
	s.dropOpen(gone)
	b.mu.Unlock()
}
