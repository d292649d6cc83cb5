package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Batch is one stored batch, as an output reads it.
type Batch struct {
	Seq      uint64 // unique and increasing, never reused: the deduplication id
	Points   int
	Codec    Codec  // compression of Body; the uplink sends with it too
	Format   Format // layout of Body before compression
	Body     []byte // as stored: see Transcoder for line protocol
	Appended time.Time
	MinTime  int64 // oldest point, unix ns
	MaxTime  int64 // newest point
}

// Read returns up to maxBatches batches (and about maxBytes of bodies; at
// least one) with from ≤ Seq < to that output has not acknowledged, oldest
// first. An empty output id reads every batch kept. A batch whose body
// fails its checksum is moved to the quarantine and skipped; a segment
// that fails to read is moved aside whole. Neither is an error of Read.
//
// The batches returned are claimed (merge.go): from now on they keep their
// number and content until acknowledged.
func (b *Buffer) Read(output string, from, to uint64, maxBatches, maxBytes int) ([]Batch, error) {
	if maxBatches <= 0 || from >= to {
		return nil, nil
	}
	for range 100 {
		out, unclaimed, err := b.read(output, from, to, maxBatches, maxBytes)
		if err != nil || len(unclaimed) == 0 || output == "" || b.readOnly {
			return out, err
		}
		err = b.claim(unclaimed)
		if !errors.Is(err, errReplaced) {
			if err != nil {
				return nil, fmt.Errorf("read buffer %q: %w", b.segDir, err)
			}
			return out, nil
		}
		// A merge replaced a batch between reading and claiming it: what
		// was read may be half of it. Read again; the merged batch is
		// there now.
	}
	return nil, fmt.Errorf("read buffer %q: batches kept being merged while read", b.segDir)
}

// read is one attempt of Read; it also returns the batches that are not
// claimed yet.
func (b *Buffer) read(output string, from, to uint64, maxBatches, maxBytes int) ([]Batch, []claimRef, error) {
	type view struct {
		s     *segment
		acked *rangeSet
	}
	var views []view
	b.mu.Lock()
	for _, s := range b.segs {
		if s.first >= to || s.batches == 0 || (s.last < from) {
			continue
		}
		rs := &rangeSet{}
		if output != "" {
			rs = s.ackedSet(output).clone()
		}
		views = append(views, view{s, rs})
	}
	b.mu.Unlock()

	var out []Batch
	var unclaimed []claimRef
	size := 0
	for _, v := range views {
		if len(out) >= maxBatches || (size >= maxBytes && len(out) > 0) {
			break
		}
		var bad []deletedBatch
		err := v.s.use(b, false, func(tx *bolt.Tx) error {
			index, bodies := tx.Bucket(bucketIndex), tx.Bucket(bucketBatches)
			c := index.Cursor()
			k, val := c.Seek(u64(max(from, v.s.first)))
			for k != nil && len(out) < maxBatches && (size < maxBytes || len(out) == 0) {
				seq := binary.BigEndian.Uint64(k)
				if seq >= to {
					break
				}
				if sp, ok := v.acked.spanOf(seq); ok {
					k, val = c.Seek(u64(sp.hi + 1))
					continue
				}
				h, err := parseHeader(val)
				if err != nil {
					return fmt.Errorf("batch %d: %w", seq, err)
				}
				body := getBody(bodies, seq, h.bodyLen)
				if len(body) != h.bodyLen || crc32.Checksum(body, castagnoli) != h.crc {
					bad = append(bad, deletedBatch{seq, h})
					k, val = c.Next()
					continue
				}
				if !h.claimed {
					unclaimed = append(unclaimed, claimRef{v.s, seq, h.crc})
				}
				out = append(out, Batch{
					Seq: seq, Points: h.points, Codec: h.codec, Format: h.format,
					Body:     body,
					Appended: time.Unix(0, h.appended), MinTime: h.minTime, MaxTime: h.maxTime,
				})
				size += len(body)
				k, val = c.Next()
			}
			return nil
		})
		switch {
		case errors.Is(err, errSegmentGone):
		case err != nil && b.readOnly:
			return out, unclaimed, err
		case err != nil:
			b.segmentFailed(v.s, err)
		case len(bad) > 0 && !b.readOnly:
			b.quarantineBatches(v.s, bad)
		}
	}
	return out, unclaimed, nil
}

// quarantineBatches moves batches that fail their checksum to the
// quarantine directory and deletes them from the queue.
func (b *Buffer) quarantineBatches(s *segment, bad []deletedBatch) {
	err := s.use(b, true, func(tx *bolt.Tx) error {
		index, bodies := tx.Bucket(bucketIndex), tx.Bucket(bucketBatches)
		for _, d := range bad {
			k := u64(d.seq)
			reason := fmt.Sprintf("batch %d of %s: body checksum mismatch (%d points lost)", d.seq, filepath.Base(s.path), d.h.points)
			b.saveQuarantined(fmt.Sprintf("corrupt-%d", d.seq), getBody(bodies, d.seq, d.h.bodyLen), reason)
			if err := index.Delete(k); err != nil {
				return err
			}
			if err := deleteBody(bodies, d.seq); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.segmentFailed(s, err)
		return
	}
	n := b.forget(s, bad)
	b.m.dropped("corrupt").Add(n)
	b.m.batchesQuarantined.Add(len(bad))
	b.log.Error("BUFFER BATCHES CORRUPT: moved to quarantine", "segment", s.path, "batches", len(bad), "points", n, "dir", b.qDir)
}

// Quarantine keeps a batch an output refuses for good (an HTTP 400) in the
// quarantine directory with the reason, so it can be inspected instead of
// retried forever: as line protocol compressed with its codec, what was
// sent. The directory is bounded: the oldest files go first.
func (b *Buffer) Quarantine(output string, bt Batch, reason string) {
	body := bt.Body
	if bt.Format != LineProtocol {
		b.tcOnce.Do(func() { b.tc, b.tcErr = NewTranscoder() })
		var err error
		if b.tcErr == nil {
			body, err = b.tc.Wire(&bt)
		}
		if err = errors.Join(b.tcErr, err); err != nil {
			// Keep it as stored: `buffer export` of a copy can still read it.
			body = bt.Body
			reason += fmt.Sprintf(" (kept in the buffer's %s form: %v)", bt.Format, err)
		}
	}
	b.saveQuarantined(fmt.Sprintf("rejected-%s-%d.%s", output, bt.Seq, bt.Codec), body, reason)
}

// Quarantine bounds: what an installer needs to see a pattern, no more.
const (
	maxQuarantineFiles = 200
	maxQuarantineBytes = 16 << 20
)

func (b *Buffer) saveQuarantined(name string, body []byte, reason string) {
	if err := os.MkdirAll(b.qDir, 0o750); err != nil {
		b.log.Error("buffer: cannot create the quarantine directory", "dir", b.qDir, "err", err)
		return
	}
	path := filepath.Join(b.qDir, name)
	if err := os.WriteFile(path, body, 0o600); err != nil {
		b.log.Error("buffer: cannot write to quarantine", "file", path, "err", err)
		return
	}
	_ = os.WriteFile(path+".txt", []byte(reason+"\n"), 0o600)
	b.trimQuarantine()
}

// trimQuarantine deletes the oldest quarantined batches beyond the bounds.
// Quarantined segments (seg-*) are never deleted automatically: they may
// hold data an operator wants to salvage.
func (b *Buffer) trimQuarantine() {
	entries, err := os.ReadDir(b.qDir)
	if err != nil {
		return
	}
	type file struct {
		name string
		size int64
		mod  time.Time
	}
	var files []file
	var total int64
	for _, e := range entries {
		if len(e.Name()) >= len(segPrefix) && e.Name()[:len(segPrefix)] == segPrefix {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		files = append(files, file{e.Name(), info.Size(), info.ModTime()})
		total += info.Size()
	}
	slices.SortFunc(files, func(x, y file) int { return x.mod.Compare(y.mod) })
	for len(files) > 0 && (len(files) > 2*maxQuarantineFiles || total > maxQuarantineBytes) {
		os.Remove(filepath.Join(b.qDir, files[0].name))
		total -= files[0].size
		files = files[1:]
	}
}

// Ack records that output delivered the batches seqs, in one commit per
// segment they fall in. A batch every current output has acknowledged is
// deleted, and a sealed segment left empty is deleted whole. Numbers no
// longer kept (dropped meanwhile) are ignored, so acknowledging twice is
// harmless.
func (b *Buffer) Ack(output string, seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	if b.readOnly {
		return errors.New("buffer opened read-only")
	}
	seqs = slices.Compact(slices.Sorted(slices.Values(seqs)))
	b.mu.Lock()
	outputs := b.outputs
	type group struct {
		s    *segment
		seqs []uint64
	}
	var groups []group
	i := 0
	for _, s := range b.segs {
		last := s.last
		for i < len(seqs) && seqs[i] < s.first {
			i++ // in a segment that is gone
		}
		j := i
		for j < len(seqs) && seqs[j] <= last {
			j++
		}
		if j > i {
			groups = append(groups, group{s, seqs[i:j]})
		}
		i = j
	}
	b.mu.Unlock()

	var errs []error
	for _, g := range groups {
		if err := b.ackSegment(g.s, output, outputs, g.seqs); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("ack buffer %q: %w", b.segDir, errors.Join(errs...))
	}
	return nil
}

func (b *Buffer) ackSegment(s *segment, output string, outputs []string, seqs []uint64) error {
	var (
		acked   *rangeSet
		newly   []deletedBatch // present batches this output had pending
		deleted []deletedBatch
		written int64
	)
	err := s.use(b, true, func(tx *bolt.Tx) error {
		newly, deleted = newly[:0], deleted[:0]
		acked = readAckedTx(tx, output)
		others := make([]*rangeSet, 0, len(outputs))
		for _, o := range outputs {
			if o != output {
				others = append(others, readAckedTx(tx, o))
			}
		}
		index, bodies := tx.Bucket(bucketIndex), tx.Bucket(bucketBatches)
		for _, seq := range seqs {
			if acked.contains(seq) {
				continue
			}
			acked.add(seq, seq)
			k := u64(seq)
			v := index.Get(k)
			if v == nil {
				continue
			}
			h, err := parseHeader(v)
			if err != nil {
				return fmt.Errorf("batch %d: %w", seq, err)
			}
			newly = append(newly, deletedBatch{seq, h})
			all := true
			for _, rs := range others {
				all = all && rs.contains(seq)
			}
			if all {
				if err := index.Delete(k); err != nil {
					return err
				}
				if err := deleteBody(bodies, seq); err != nil {
					return err
				}
				deleted = append(deleted, deletedBatch{seq, h})
			}
		}
		pageSize := int64(tx.DB().Info().PageSize)
		tx.OnCommit(func() {
			st := tx.Stats()
			written = st.GetPageAlloc() + pageSize
		})
		return writeAckedTx(tx, output, acked)
	})
	if errors.Is(err, errSegmentGone) {
		return nil
	}
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			b.segmentFailed(s, err)
			return nil
		}
		return err
	}
	b.m.flashBytes.Add(int(written))
	b.mu.Lock()
	s.acked[output] = acked
	if _, current := s.pending[output]; current {
		for _, d := range newly {
			s.pending[output] -= int64(d.h.points)
			s.pendingB[output]--
		}
	}
	b.mu.Unlock()
	if len(deleted) > 0 {
		b.forget(s, deleted)
	} else {
		b.notify()
	}
	return nil
}

// deleteAcked deletes the batches every current output has acknowledged.
func (b *Buffer) deleteAcked(s *segment, _ []uint64) error {
	if b.readOnly {
		return nil
	}
	b.mu.Lock()
	outputs := b.outputs
	b.mu.Unlock()
	var deleted []deletedBatch
	err := s.use(b, true, func(tx *bolt.Tx) error {
		deleted = deleted[:0]
		sets := make([]*rangeSet, len(outputs))
		for i, o := range outputs {
			sets[i] = readAckedTx(tx, o)
		}
		index, bodies := tx.Bucket(bucketIndex), tx.Bucket(bucketBatches)
		c := index.Cursor()
		for k, v := c.First(); k != nil; {
			seq := binary.BigEndian.Uint64(k)
			all := true
			for _, rs := range sets {
				all = all && rs.contains(seq)
			}
			if !all {
				k, v = c.Next()
				continue
			}
			h, err := parseHeader(v)
			if err != nil {
				return err
			}
			if err := deleteBody(bodies, seq); err != nil {
				return err
			}
			if err := c.Delete(); err != nil {
				return err
			}
			deleted = append(deleted, deletedBatch{seq, h})
			k, v = c.Seek(u64(seq + 1))
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.forget(s, deleted)
	return nil
}

// Oldest returns the oldest batch output has not acknowledged, without its
// body; ok is false when there is none. An empty output id means any.
func (b *Buffer) Oldest(output string) (bt Batch, ok bool) {
	b.mu.Lock()
	segs := slices.Clone(b.segs)
	b.mu.Unlock()
	for _, s := range segs {
		b.mu.Lock()
		n := s.batches
		if output != "" {
			n = s.pendingB[output]
		}
		rs := &rangeSet{}
		if output != "" {
			rs = s.ackedSet(output).clone()
		}
		b.mu.Unlock()
		if n <= 0 {
			continue
		}
		err := s.use(b, false, func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketIndex).Cursor()
			for k, v := c.Seek(u64(s.first)); k != nil; {
				seq := binary.BigEndian.Uint64(k)
				if sp, in := rs.spanOf(seq); in {
					k, v = c.Seek(u64(sp.hi + 1))
					continue
				}
				h, err := parseHeader(v)
				if err != nil {
					return err
				}
				bt = Batch{Seq: seq, Points: h.points, Codec: h.codec, Format: h.format, Appended: time.Unix(0, h.appended), MinTime: h.minTime, MaxTime: h.maxTime}
				ok = true
				return nil
			}
			return nil
		})
		if ok || (err != nil && !errors.Is(err, errSegmentGone)) {
			return bt, ok
		}
	}
	return Batch{}, false
}
