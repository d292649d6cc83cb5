package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Stats describe the buffer at one moment.
type Stats struct {
	Dir      string         `json:"dir"`
	Segments []SegmentStats `json:"segments"`
	// Bytes is the bytes of the segment files in use; it is what MaxBytes
	// bounds. Files may look larger to ls (bbolt extends them sparsely).
	Bytes     int64                  `json:"bytes"`
	BodyBytes int64                  `json:"body_bytes"` // compressed line protocol kept
	Batches   int64                  `json:"batches"`    // kept for at least one output
	Points    int64                  `json:"points"`
	NextSeq   uint64                 `json:"next_seq"`
	Outputs   map[string]OutputStats `json:"outputs"`
	// Oldest and Newest are when the oldest and newest batch kept were
	// buffered; zero when empty.
	Oldest time.Time `json:"oldest,omitzero"`
	Newest time.Time `json:"newest,omitzero"`
	// OldestPoint and NewestPoint are the point timestamps kept.
	OldestPoint time.Time `json:"oldest_point,omitzero"`
	NewestPoint time.Time `json:"newest_point,omitzero"`
}

// SegmentStats describe one segment file.
type SegmentStats struct {
	File    string    `json:"file"`
	First   uint64    `json:"first"`
	Last    uint64    `json:"last"`
	Bytes   int64     `json:"bytes"`
	Batches int64     `json:"batches"`
	Points  int64     `json:"points"`
	Oldest  time.Time `json:"oldest,omitzero"`
	Newest  time.Time `json:"newest,omitzero"`
	Sealed  bool      `json:"sealed"`
}

// OutputStats is what one output has not acknowledged yet.
type OutputStats struct {
	PendingBatches int64 `json:"pending_batches"`
	PendingPoints  int64 `json:"pending_points"`
}

func unixOrZero(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// Stats returns the current figures; it does no I/O.
func (b *Buffer) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := Stats{Dir: b.dir, NextSeq: b.nextSeq, Outputs: map[string]OutputStats{}}
	for _, o := range b.outputs {
		st.Outputs[o] = OutputStats{}
	}
	var oldest, newest, minT, maxT int64
	for _, s := range b.segs {
		st.Segments = append(st.Segments, SegmentStats{
			File: filepath.Base(s.path), First: s.first, Last: s.last, Bytes: s.size,
			Batches: s.batches, Points: s.points, Oldest: unixOrZero(s.oldest), Newest: unixOrZero(s.newest),
			Sealed: s.sealed.Load(),
		})
		st.Bytes += s.size
		st.BodyBytes += s.bytes
		st.Batches += s.batches
		st.Points += s.points
		for o, n := range s.pending {
			ost := st.Outputs[o]
			ost.PendingPoints += n
			ost.PendingBatches += s.pendingB[o]
			st.Outputs[o] = ost
		}
		if s.batches == 0 {
			continue
		}
		if oldest == 0 || s.oldest < oldest {
			oldest, minT = s.oldest, s.minTime
		}
		minT = min(minT, s.minTime)
		newest = max(newest, s.newest)
		maxT = max(maxT, s.maxTime)
	}
	st.Oldest, st.Newest = unixOrZero(oldest), unixOrZero(newest)
	st.OldestPoint, st.NewestPoint = unixOrZero(minT), unixOrZero(maxT)
	return st
}

// RefusedSince reports whether an Append was refused or had to wait for
// room after t: the buffer is not keeping up with its inputs.
func (b *Buffer) RefusedSince(t time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.refusedAt.IsZero() && b.refusedAt.After(t)
}

// bufferMetrics are the buffer's metrics.
type bufferMetrics struct {
	set                *metrics.Set
	commits            *metrics.Counter
	commitSeconds      *metrics.Histogram
	batchesStored      *metrics.Counter
	pointsStored       *metrics.Counter
	bodyBytes          *metrics.Counter
	flashBytes         *metrics.Counter
	quarantined        *metrics.Counter
	batchesQuarantined *metrics.Counter
	segmentsDropped    *metrics.Counter
	merges             *metrics.Counter
	mergedBatches      *metrics.Counter
	claims             *metrics.Counter
}

func newBufferMetrics(b *Buffer, set *metrics.Set) *bufferMetrics {
	m := &bufferMetrics{
		set:                set,
		commits:            set.GetOrCreateCounter("citysense_agent_buffer_commits_total"),
		commitSeconds:      set.GetOrCreateHistogram("citysense_agent_buffer_commit_duration_seconds"),
		batchesStored:      set.GetOrCreateCounter("citysense_agent_buffer_batches_stored_total"),
		pointsStored:       set.GetOrCreateCounter("citysense_agent_buffer_points_stored_total"),
		bodyBytes:          set.GetOrCreateCounter("citysense_agent_buffer_compressed_bytes_total"),
		flashBytes:         set.GetOrCreateCounter("citysense_agent_buffer_flash_bytes_written_total"),
		quarantined:        set.GetOrCreateCounter("citysense_agent_buffer_segments_quarantined_total"),
		batchesQuarantined: set.GetOrCreateCounter("citysense_agent_buffer_batches_quarantined_total"),
		segmentsDropped:    set.GetOrCreateCounter("citysense_agent_buffer_segments_dropped_total"),
		merges:             set.GetOrCreateCounter("citysense_agent_buffer_merges_total"),
		mergedBatches:      set.GetOrCreateCounter("citysense_agent_buffer_merged_batches_total"),
		claims:             set.GetOrCreateCounter("citysense_agent_buffer_claims_total"),
	}
	for _, reason := range []string{"max_bytes", "max_age", "buffer_full", "corrupt"} {
		m.dropped(reason)
	}
	gauge := func(name string, f func(Stats) float64) {
		set.GetOrCreateGauge(name, func() float64 { return f(b.Stats()) })
	}
	gauge("citysense_agent_buffer_bytes", func(s Stats) float64 { return float64(s.Bytes) })
	gauge("citysense_agent_buffer_segments", func(s Stats) float64 { return float64(len(s.Segments)) })
	gauge("citysense_agent_buffer_pending_batches", func(s Stats) float64 { return float64(s.Batches) })
	gauge("citysense_agent_buffer_pending_points", func(s Stats) float64 { return float64(s.Points) })
	gauge("citysense_agent_buffer_pending_bytes", func(s Stats) float64 { return float64(s.BodyBytes) })
	gauge("citysense_agent_buffer_oldest_pending_age_seconds", func(s Stats) float64 {
		if s.Oldest.IsZero() {
			return 0
		}
		return b.opts.Now().Sub(s.Oldest).Seconds()
	})
	return m
}

// dropped returns the counter of points dropped for reason.
func (m *bufferMetrics) dropped(reason string) *metrics.Counter {
	return m.set.GetOrCreateCounter(`citysense_agent_points_dropped_total{reason="` + reason + `"}`)
}

// Inspect opens the buffer in dataDir read-only, for `citysense-agent
// buffer stats|export` on a stopped agent. It fails with ErrLocked while an
// agent runs on the directory. Unreadable segments are reported in the
// returned problems and left where they are. The pending counts cover the
// given output ids (those of the configuration) and every id that ever
// acknowledged something here.
func Inspect(dataDir string, outputs ...string) (*Buffer, []error, error) {
	b := &Buffer{
		dir:      dataDir,
		segDir:   filepath.Join(dataDir, DirName),
		qDir:     filepath.Join(dataDir, QuarantineName),
		readOnly: true,
		stop:     make(chan struct{}),
		dead:     make(chan struct{}),
		changed:  make(chan struct{}),
	}
	b.opts.setDefaults()
	b.log = b.opts.Log
	b.m = newBufferMetrics(b, metrics.NewSet())
	if _, err := os.Stat(b.segDir); err != nil {
		if _, lerr := os.Stat(filepath.Join(dataDir, legacyName)); lerr == nil {
			return nil, nil, fmt.Errorf("%q holds a buffer of an older agent version (%s); start the agent once to convert it", dataDir, legacyName)
		}
		return nil, nil, fmt.Errorf("no buffer in %q: %w", dataDir, err)
	}
	lock, err := lockDir(b.segDir, false)
	if err != nil {
		return nil, nil, err
	}
	b.lock = lock
	entries, err := os.ReadDir(b.segDir)
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("read buffer %q: %w", b.segDir, err)
	}
	var problems []error
	ids := map[string]bool{}
	for _, o := range outputs {
		ids[o] = true
	}
	for _, e := range entries {
		first, ok := parseSegmentName(e.Name())
		if !ok {
			continue
		}
		s, err := loadSegment(filepath.Join(b.segDir, e.Name()), first, true)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		for o := range s.acked {
			ids[o] = true
		}
		b.segs = append(b.segs, s)
		b.openCount.Add(1)
		b.nextSeq = max(b.nextSeq, s.last+1)
	}
	for i, s := range b.segs {
		s.sealed.Store(i < len(b.segs)-1)
	}
	if mark, err := readSeqFile(filepath.Join(b.segDir, seqFileName)); err == nil {
		b.nextSeq = max(b.nextSeq, mark)
	}
	// The outputs are those that ever acknowledged something here; one
	// that never did has every batch pending, like the "" row.
	b.outputs = slices.Sorted(func(yield func(string) bool) {
		for o := range ids {
			if !yield(o) {
				return
			}
		}
	})
	for _, s := range b.segs {
		pending, pendingB, err := s.recount(b, b.outputs)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		s.pending, s.pendingB = pending, pendingB
	}
	return b, problems, nil
}

// Export writes the line protocol of the batches output has not
// acknowledged (every batch kept, for an empty id) to w, oldest first.
func (b *Buffer) Export(w io.Writer, output string) (batches, points int, err error) {
	tc, err := NewTranscoder()
	if err != nil {
		return 0, 0, err
	}
	defer tc.Close()
	from := uint64(0)
	for {
		bs, err := b.Read(output, from, ^uint64(0), 64, 8<<20)
		if err != nil {
			return batches, points, err
		}
		if len(bs) == 0 {
			return batches, points, nil
		}
		for _, bt := range bs {
			lp, err := tc.Lines(&bt)
			if err != nil {
				return batches, points, fmt.Errorf("batch %d: %w: %w", bt.Seq, ErrCorrupt, err)
			}
			if _, err := w.Write(lp); err != nil {
				return batches, points, err
			}
			batches++
			points += bt.Points
		}
		from = bs[len(bs)-1].Seq + 1
	}
}

// QuarantinedFiles lists the quarantine directory, oldest first.
func QuarantinedFiles(dataDir string) []string {
	entries, err := os.ReadDir(filepath.Join(dataDir, QuarantineName))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".txt") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// importLegacy converts the single-file buffer of earlier versions
// (<data_dir>/buffer.db: one bucket of seq → uvarint points + zstd body)
// into a segment, keeping its numbers, so that an upgrade sends what the
// old version had pending. The old file is removed once the segment is
// durable.
func (b *Buffer) importLegacy() error {
	path := filepath.Join(b.dir, legacyName)
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	fail := func(err error) error {
		b.quarantineFile(path, err)
		return err
	}
	old, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return fmt.Errorf("%q: %w", path, ErrLocked)
		}
		return fail(fmt.Errorf("open %q: %w", path, err))
	}
	type entry struct {
		seq    uint64
		points int
		body   []byte
	}
	var entries []entry
	var next uint64
	err = old.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte("entries"))
		if bk == nil {
			return nil
		}
		next = bk.Sequence() + 1
		return bk.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("bad key")
			}
			n, w := binary.Uvarint(v)
			if w <= 0 {
				return fmt.Errorf("bad entry")
			}
			entries = append(entries, entry{binary.BigEndian.Uint64(k), int(n), append([]byte(nil), v[w:]...)})
			return nil
		})
	})
	old.Close()
	if err != nil {
		return fail(fmt.Errorf("read %q: %w", path, err))
	}
	if len(entries) > 0 {
		first := entries[0].seq
		// A segment of that name can only be from an import interrupted
		// before the old file was removed: new data is numbered after it.
		os.Remove(filepath.Join(b.segDir, segmentName(first)))
		s, err := createSegment(b.segDir, first)
		if err != nil {
			return err
		}
		now := b.opts.Now().UnixNano()
		err = s.db.Update(func(tx *bolt.Tx) error {
			for _, e := range entries {
				h := header{codec: Zstd, crc: crc32.Checksum(e.body, castagnoli), points: e.points, bodyLen: len(e.body), appended: now}
				if err := tx.Bucket(bucketIndex).Put(u64(e.seq), h.marshal()); err != nil {
					return err
				}
				if err := putBody(tx.Bucket(bucketBatches), e.seq, e.body); err != nil {
					return err
				}
			}
			return putUint(tx.Bucket(bucketMeta), keyLast, entries[len(entries)-1].seq)
		})
		s.closeDB()
		if err != nil {
			os.Remove(s.path)
			return fmt.Errorf("import %q: %w", path, err)
		}
	}
	if mark, _ := readSeqFile(filepath.Join(b.segDir, seqFileName)); next > mark {
		if err := writeSeqFile(filepath.Join(b.segDir, seqFileName), next); err != nil {
			return err
		}
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	b.log.Info("buffer: imported the single-file buffer of an earlier version", "file", path, "batches", len(entries))
	return syncDir(b.dir)
}
