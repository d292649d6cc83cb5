package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/citysense/citysense/protocols"
)

// A request is one Append on its way to a commit.
const (
	reqWaiting  int32 = iota
	reqTaken          // the committer owns it; it will be answered
	reqCanceled       // the caller gave up before that; it is skipped
)

type request struct {
	pts   []protocols.Point // valid points, the caller's: read only until answered
	state atomic.Int32
	done  chan error // buffered; answered once
}

func (r *request) points() int { return len(r.pts) }

// take claims r for a commit; it fails if the caller gave up.
func (r *request) take() bool { return r.state.CompareAndSwap(reqWaiting, reqTaken) }

// commitLoop is the only writer of batches. It gathers requests for one
// commit until FlushInterval has passed since the previous commit began or
// FlushPoints points wait, whichever comes first. A lone writer after a
// quiet spell is committed at once; under load every commit carries what
// arrived during the previous one, so the fsync rate stays at most one per
// FlushInterval whatever the number of writers.
func (b *Buffer) commitLoop() {
	defer b.wg.Done()
	defer close(b.dead)
	var (
		group   []*request
		points  int
		last    time.Time
		stopped bool
	)
	// Sealed segments whose leftovers were not merged when they were
	// sealed (the agent stopped first) are merged now.
	b.mu.Lock()
	var sealed []*segment
	for _, s := range b.segs {
		if s.sealed.Load() && len(s.open) > 1 {
			sealed = append(sealed, s)
		}
	}
	b.mu.Unlock()
	for _, s := range sealed {
		b.mergeOpen(s, true)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	add := func(r *request) {
		group = append(group, r)
		points += r.points()
	}
	for {
		if len(group) == 0 {
			if stopped {
				return
			}
			select {
			case r := <-b.reqs:
				add(r)
			case <-b.stop:
				stopped = true
				continue
			}
		}
		wait := time.Until(last.Add(b.opts.FlushInterval))
	gather:
		for points < b.opts.FlushPoints {
			if wait <= 0 || stopped {
				select {
				case r := <-b.reqs:
					add(r)
					continue
				default:
					break gather
				}
			}
			timer.Reset(wait)
			select {
			case r := <-b.reqs:
				add(r)
			case <-timer.C:
				wait = 0
			case <-b.stop:
				stopped = true
			}
		}
		timer.Stop()
		last = time.Now()
		b.commit(group)
		clear(group)
		group, points = group[:0], 0
	}
}

// newBatch is a batch being built by a commit.
type newBatch struct {
	spans   [][]protocols.Point // the requests' points it takes, in order
	body    []byte
	points  int
	minTime int64
	maxTime int64
}

// commit stores the requests in one transaction and answers them.
func (b *Buffer) commit(group []*request) {
	start := time.Now()
	group = b.waitForRoom(group)
	if len(group) == 0 {
		return
	}
	live := group[:0]
	for _, r := range group {
		if r.take() {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	answer := func(err error) {
		for _, r := range live {
			r.done <- err
		}
	}
	batches := b.buildBatches(live)
	b.encodeAll(batches)
	est := estimateSize(batches)
	b.mu.Lock()
	policy := b.opts.Policy
	b.mu.Unlock()
	if policy == DropOldest {
		b.dropOldest(est)
	}
	s, sealed, err := b.activeSegment(est)
	if err != nil {
		answer(fmt.Errorf("append to buffer %q: %w", b.segDir, err))
		return
	}

	b.mu.Lock()
	first := b.nextSeq
	outputs := b.outputs
	claimed := b.anyLiveLocked()
	b.mu.Unlock()
	n := uint64(len(batches))
	if first+n > b.reserved {
		mark := first + n + seqReserve
		if err := writeSeqFile(filepath.Join(b.segDir, seqFileName), mark); err != nil {
			answer(fmt.Errorf("append to buffer %q: %w", b.segDir, err))
			return
		}
		b.reserved = mark
	}

	now := b.opts.Now().UnixNano()
	headers := make([]header, len(batches))
	var size int64
	var written int64
	err = s.use(b, true, func(tx *bolt.Tx) error {
		meta, index, bodies := tx.Bucket(bucketMeta), tx.Bucket(bucketIndex), tx.Bucket(bucketBatches)
		// Keys only ever grow: pack pages full instead of bbolt's half-full
		// default, which is meant for random inserts.
		index.FillPercent, bodies.FillPercent = 1, 1
		for i, nb := range batches {
			headers[i] = header{
				codec: b.opts.Codec, format: Columnar, crc: crc32.Checksum(nb.body, castagnoli),
				points: nb.points, bodyLen: len(nb.body),
				appended: now, minTime: nb.minTime, maxTime: nb.maxTime,
				claimed: claimed,
			}
			k := u64(first + uint64(i))
			if err := index.Put(k, headers[i].marshal()); err != nil {
				return err
			}
			if err := putBody(bodies, first+uint64(i), nb.body); err != nil {
				return err
			}
		}
		pageSize := int64(tx.DB().Info().PageSize)
		tx.OnCommit(func() {
			st := tx.Stats()
			written = st.GetPageAlloc() + pageSize
		})
		return putUint(meta, keyLast, first+n-1)
	})
	if err == nil {
		// Only a transaction begun after the commit knows the file's new
		// high-water mark.
		err = s.use(b, false, func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	}
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			b.segmentFailed(s, err)
		}
		answer(fmt.Errorf("append to buffer %q: %w", b.segDir, err))
		return
	}

	var points, bytes int
	b.mu.Lock()
	b.nextSeq = first + n
	s.last = first + n - 1
	s.size = size
	for i, h := range headers {
		s.addPresent(h)
		s.addOpen(first+uint64(i), h)
		for _, o := range outputs {
			s.pending[o] += int64(h.points)
			s.pendingB[o]++
		}
		points += h.points
		bytes += h.bodyLen
	}
	b.notifyLocked()
	b.mu.Unlock()

	b.m.commits.Inc()
	b.m.commitSeconds.UpdateDuration(start)
	b.m.batchesStored.Add(len(batches))
	b.m.pointsStored.Add(points)
	b.m.bodyBytes.Add(bytes)
	b.m.flashBytes.Add(int(written))
	answer(nil)
	if sealed != nil {
		b.mergeOpen(sealed, true)
	}
	b.mergeOpen(s, false)
}

// buildBatches cuts the requests' points into batches of at most
// BatchPoints points. Small Appends (an MQTT message is often one point)
// share batches, which is what makes compression worth it.
func (b *Buffer) buildBatches(reqs []*request) []*newBatch {
	total := 0
	for _, r := range reqs {
		total += r.points()
	}
	per := b.opts.BatchPoints
	out := make([]*newBatch, 0, (total+per-1)/per)
	var cur *newBatch
	for _, r := range reqs {
		for i := 0; i < r.points(); {
			if cur == nil || cur.points == per {
				cur = &newBatch{minTime: r.pts[i].Time, maxTime: r.pts[i].Time}
				out = append(out, cur)
			}
			j := min(i+per-cur.points, r.points())
			cur.spans = append(cur.spans, r.pts[i:j])
			for k := i; k < j; k++ {
				t := r.pts[k].Time
				cur.minTime = min(cur.minTime, t)
				cur.maxTime = max(cur.maxTime, t)
			}
			cur.points += j - i
			i = j
		}
	}
	return out
}

// encodeAll encodes and compresses the batches, in parallel when there are
// several.
func (b *Buffer) encodeAll(batches []*newBatch) {
	encode := func(nb *newBatch) {
		scratch := colScratch.get()
		*scratch = encodeColumnar((*scratch)[:0], nb.spans)
		nb.body = b.compress(*scratch)
		nb.spans = nil
		colScratch.put(scratch)
	}
	if len(batches) == 1 {
		encode(batches[0])
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for _, nb := range batches {
		sem <- struct{}{}
		wg.Go(func() {
			encode(nb)
			<-sem
		})
	}
	wg.Wait()
}

// colScratch holds the uncompressed columnar form of a batch while it is
// compressed.
var colScratch = newFreeList(func() *[]byte { return new([]byte) })

// estimateSize guesses how much the batches grow the file: bodies larger
// than a quarter page get pages of their own (rounded up), small ones share
// leaves; plus the index entries and the pages a commit rewrites.
func estimateSize(batches []*newBatch) int64 {
	const page = 4096
	var n int64
	for _, nb := range batches {
		l := int64(len(nb.body)) + 64
		if l > page/4 {
			l = (l + page - 1) / page * page
		}
		n += l + 48
	}
	return n + 2*page
}

// totalBytesLocked returns the bytes of all segment files; b.mu held.
func (b *Buffer) totalBytesLocked() int64 {
	var n int64
	for _, s := range b.segs {
		n += s.size
	}
	return n
}

// fits reports whether est more bytes stay within MaxBytes.
func (b *Buffer) fits(est int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opts.MaxBytes <= 0 || b.totalBytesLocked()+est <= b.opts.MaxBytes
}

// waitForRoom applies drop_newest and block before the requests are taken.
// It returns the requests to commit.
func (b *Buffer) waitForRoom(group []*request) []*request {
	b.mu.Lock()
	policy, maxBytes := b.opts.Policy, b.opts.MaxBytes
	b.mu.Unlock()
	if maxBytes <= 0 || policy == DropOldest {
		return group
	}
	// The compressed size is not known yet: guess pessimistically; a
	// wrong guess costs a little slack.
	pts := 0
	for _, r := range group {
		pts += r.points()
	}
	est := int64(pts)*8 + 8192
	if b.fits(est) {
		return group
	}
	b.mu.Lock()
	b.refusedAt = time.Now()
	b.mu.Unlock()
	if policy == DropNewest {
		refused := 0
		for _, r := range group {
			if r.take() {
				refused += r.points()
				r.done <- fmt.Errorf("append to buffer %q: %w (max_bytes %d, policy drop_newest)", b.segDir, ErrFull, maxBytes)
			}
		}
		b.m.dropped("buffer_full").Add(refused)
		return nil
	}
	// Block: wait for acknowledgements to free a segment. Requests whose
	// callers give up meanwhile drop out; on Close the rest is refused.
	b.log.Warn("buffer full: appends wait for the uplink to free space (policy block)", "max_bytes", maxBytes)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for !b.fits(est) {
		select {
		case <-b.Changed():
		case <-tick.C:
		case <-b.stop:
			for _, r := range group {
				if r.take() {
					r.done <- fmt.Errorf("append to buffer %q: %w while waiting for room", b.segDir, ErrClosed)
				}
			}
			return nil
		}
		b.mu.Lock()
		b.refusedAt = time.Now()
		b.mu.Unlock()
		kept := group[:0]
		for _, r := range group {
			if r.state.Load() == reqWaiting {
				kept = append(kept, r)
			}
		}
		group = kept
		if len(group) == 0 {
			return nil
		}
	}
	return group
}

// dropOldest deletes the oldest sealed segments until est more bytes fit.
func (b *Buffer) dropOldest(est int64) {
	for {
		b.mu.Lock()
		maxBytes := b.opts.MaxBytes
		if maxBytes <= 0 || b.totalBytesLocked()+est <= maxBytes || len(b.segs) < 2 {
			b.mu.Unlock()
			return
		}
		s := b.segs[0]
		points, batches := s.points, s.batches
		b.mu.Unlock()
		b.m.dropped("max_bytes").Add(int(points))
		b.m.segmentsDropped.Inc()
		b.log.Warn("buffer full: dropped the oldest segment (policy drop_oldest)", "segment", filepath.Base(s.path),
			"points", points, "batches", batches, "max_bytes", maxBytes)
		b.removeSegment(s, nil)
	}
}

// activeSegment returns the segment to write est bytes to, sealing the
// current one and starting the next when it is full or unusable; sealed is
// the segment it sealed, if any.
func (b *Buffer) activeSegment(est int64) (_, sealed *segment, _ error) {
	b.mu.Lock()
	var s *segment
	if len(b.segs) > 0 {
		s = b.segs[len(b.segs)-1]
	}
	full := s != nil && s.last > 0 && s.size+est > b.opts.SegmentSize
	next := b.nextSeq
	b.mu.Unlock()
	if s != nil && !s.sealed.Load() && !full {
		return s, nil, nil
	}
	ns, err := createSegment(b.segDir, next)
	if err != nil {
		return nil, nil, err
	}
	b.openCount.Add(1)
	b.mu.Lock()
	for _, o := range b.outputs {
		ns.pending[o], ns.pendingB[o] = 0, 0
	}
	b.segs = append(b.segs, ns)
	var empty bool
	if s != nil {
		s.sealed.Store(true)
		empty = s.batches == 0 && slices.Contains(b.segs, s)
	}
	b.mu.Unlock()
	if empty {
		b.removeSegment(s, nil) // everything in it was delivered
		s = nil
	}
	b.trimOpen()
	return ns, s, nil
}

// ageLoop drops batches older than MaxAge, by the time they were buffered.
func (b *Buffer) ageLoop() {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		maxAge := b.opts.MaxAge
		b.mu.Unlock()
		if maxAge <= 0 {
			return
		}
		every := min(max(maxAge/16, time.Second), time.Minute)
		select {
		case <-b.stop:
			return
		case <-time.After(every):
		}
		b.dropOlderThan(b.opts.Now().Add(-maxAge).UnixNano())
	}
}

// dropOlderThan deletes the batches appended before cutoff (unix ns): whole
// sealed segments when all of theirs are, single batches otherwise.
func (b *Buffer) dropOlderThan(cutoff int64) {
	b.mu.Lock()
	segs := append([]*segment(nil), b.segs...)
	b.mu.Unlock()
	for _, s := range segs {
		b.mu.Lock()
		oldest, newest, points, batches := s.oldest, s.newest, s.points, s.batches
		b.mu.Unlock()
		if batches == 0 {
			continue
		}
		if oldest >= cutoff {
			return
		}
		if newest < cutoff && s.sealed.Load() {
			b.m.dropped("max_age").Add(int(points))
			b.log.Warn("buffer: dropped a segment older than max_age", "segment", filepath.Base(s.path), "points", points, "batches", batches)
			b.removeSegment(s, nil)
			continue
		}
		var dropped []deletedBatch
		err := s.use(b, true, func(tx *bolt.Tx) error {
			dropped = dropped[:0]
			index, bodies := tx.Bucket(bucketIndex), tx.Bucket(bucketBatches)
			c := index.Cursor()
			for k, v := c.First(); k != nil; k, v = c.First() {
				h, err := parseHeader(v)
				if err != nil {
					return err
				}
				if h.appended >= cutoff {
					break
				}
				seq := binary.BigEndian.Uint64(k)
				if err := index.Delete(k); err != nil {
					return err
				}
				if err := deleteBody(bodies, seq); err != nil {
					return err
				}
				dropped = append(dropped, deletedBatch{seq, h})
			}
			return nil
		})
		if err != nil {
			b.segmentFailed(s, err)
			continue
		}
		n := b.forget(s, dropped)
		if n > 0 {
			b.m.dropped("max_age").Add(n)
			b.log.Warn("buffer: dropped batches older than max_age", "segment", filepath.Base(s.path), "points", n, "batches", len(dropped))
		}
	}
}

type deletedBatch struct {
	seq uint64
	h   header
}

// forget takes deleted batches out of a segment's counts and returns their
// points. A sealed segment left empty is deleted.
func (b *Buffer) forget(s *segment, deleted []deletedBatch) int {
	if len(deleted) == 0 {
		return 0
	}
	points := 0
	seqs := make([]uint64, len(deleted))
	for i, d := range deleted {
		seqs[i] = d.seq
	}
	slices.Sort(seqs)
	b.mu.Lock()
	s.dropOpen(seqs)
	for _, d := range deleted {
		s.removePresent(d.h)
		for o := range s.pending {
			if !s.ackedSet(o).contains(d.seq) {
				s.pending[o] -= int64(d.h.points)
				s.pendingB[o]--
			}
		}
		points += d.h.points
	}
	empty := s.batches == 0 && s.sealed.Load()
	b.notifyLocked()
	b.mu.Unlock()
	if empty {
		b.removeSegment(s, nil)
	}
	return points
}
