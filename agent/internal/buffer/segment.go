package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// A segment file is one bbolt database holding a contiguous range of
// sequence numbers:
//
//	meta    version, first, last (the highest number ever stored)
//	index   seq → codec and format (low and high half of a byte),
//	        crc32c of the body, points, body length, append time, oldest
//	        and newest point time (small: scanning it on start reads a few
//	        pages, not the bodies)
//	batches seq+chunk → the compressed body (columnar, or line protocol
//	        as earlier versions stored it), cut into chunks of chunkSize
//	acked   one sub-bucket per output id: lo → hi, inclusive ranges of
//	        numbers that output has delivered
//
// A batch every current output has acknowledged, or one dropped by a bound,
// is deleted; a sealed segment with no batches left is deleted whole, which
// is how disk space comes back (a bbolt file never shrinks).
var (
	bucketMeta    = []byte("meta")
	bucketIndex   = []byte("index")
	bucketBatches = []byte("batches")
	bucketAcked   = []byte("acked")

	keyVersion = []byte("version")
	keyFirst   = []byte("first")
	keyLast    = []byte("last")
)

const (
	segmentVersion = 1
	segPrefix      = "seg-"
	segSuffix      = ".db"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errSegmentGone is returned by operations on a segment deleted meanwhile.
var errSegmentGone = errors.New("segment deleted")

// ErrCorrupt marks data that cannot be read back: a bbolt structure that
// fails its check, an index entry that does not parse, a body whose
// checksum does not match.
var ErrCorrupt = errors.New("corrupt buffer data")

func segmentName(first uint64) string { return fmt.Sprintf("%s%020d%s", segPrefix, first, segSuffix) }

// parseSegmentName returns the first sequence number a file name carries.
func parseSegmentName(name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, segPrefix)
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, segSuffix)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil && v > 0
}

// header is a batch's index entry.
type header struct {
	codec    Codec
	format   Format
	crc      uint32
	points   int
	bodyLen  int
	appended int64 // unix ns
	minTime  int64 // oldest point, unix ns
	maxTime  int64 // newest point
	// claimed: the batch may have been handed to an output, so it may
	// have reached a destination under its number and must keep it; only
	// unclaimed batches are merged (merge.go). Entries written before the
	// flag existed count as claimed.
	claimed bool
}

// Flags byte after the index entry's numbers.
const flagClaimed = 1

func (h *header) marshal() []byte {
	b := make([]byte, 5, 6+6*binary.MaxVarintLen64)
	b[0] = byte(h.codec) | byte(h.format)<<4
	binary.BigEndian.PutUint32(b[1:5], h.crc)
	b = binary.AppendUvarint(b, uint64(h.points))
	b = binary.AppendUvarint(b, uint64(h.bodyLen))
	b = binary.AppendVarint(b, h.appended)
	b = binary.AppendVarint(b, h.minTime)
	b = binary.AppendVarint(b, h.maxTime)
	var flags byte
	if h.claimed {
		flags |= flagClaimed
	}
	return append(b, flags)
}

func parseHeader(b []byte) (header, error) {
	var h header
	if len(b) < 5 {
		return h, fmt.Errorf("%w: short index entry", ErrCorrupt)
	}
	h.codec, h.format, h.crc = Codec(b[0]&0x0f), Format(b[0]>>4), binary.BigEndian.Uint32(b[1:5])
	b = b[5:]
	var vals [5]uint64
	for i := range vals {
		var n int
		if i < 2 {
			vals[i], n = binary.Uvarint(b)
		} else {
			var v int64
			v, n = binary.Varint(b)
			vals[i] = uint64(v)
		}
		if n <= 0 {
			return h, fmt.Errorf("%w: truncated index entry", ErrCorrupt)
		}
		b = b[n:]
	}
	if !h.codec.valid() || !h.format.valid() || vals[0] == 0 || vals[0] > 1<<31 || vals[1] > 1<<31 {
		return h, fmt.Errorf("%w: implausible index entry", ErrCorrupt)
	}
	h.points, h.bodyLen = int(vals[0]), int(vals[1])
	h.appended, h.minTime, h.maxTime = int64(vals[2]), int64(vals[3]), int64(vals[4])
	h.claimed = len(b) == 0 || b[0]&flagClaimed != 0
	return h, nil
}

// segment is one file. Its counters are guarded by Buffer.mu; its bbolt
// handle by io, which users hold for reading while they run a transaction
// and the closer holds for writing, so a handle is never closed under a
// transaction. Sealed segments are opened on demand and closed again when
// too many are open, so that a long backlog does not exhaust file
// descriptors or a 32-bit gateway's address space.
type segment struct {
	first uint64
	path  string

	// Guarded by Buffer.mu.
	last     uint64 // highest number ever stored here; 0: none yet
	batches  int64  // present
	points   int64
	bytes    int64 // compressed bodies present
	size     int64 // bytes of the file in use (bbolt's high-water mark)
	oldest   int64 // append time of the oldest present batch, unix ns
	newest   int64
	minTime  int64 // oldest point time present
	maxTime  int64
	acked    map[string]*rangeSet
	pending  map[string]int64 // points not yet acknowledged, per current output
	pendingB map[string]int64 // batches, likewise
	open     []openBatch      // unclaimed columnar batches, in order: what merge.go may merge

	sealed  atomic.Bool
	lastUse atomic.Int64

	io   sync.RWMutex
	db   *bolt.DB // nil while closed
	gone bool     // deleted or quarantined; guarded by io
}

func boltOptions(readOnly bool) *bolt.Options {
	return &bolt.Options{
		Timeout:  time.Second,
		ReadOnly: readOnly,
		// NoFreelistSync would save a page of flash per commit, but
		// rebuilding the freelist of a damaged file panics in a goroutine
		// of bbolt's own, which no recover can catch.
		FreelistType: bolt.FreelistMapType,
	}
}

// openDB opens the segment's file; io must be held for writing.
func (s *segment) openDB(readOnly bool) error {
	db, err := bolt.Open(s.path, 0o600, boltOptions(readOnly))
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return fmt.Errorf("open segment %q: %w", s.path, errLockHeld)
		}
		return fmt.Errorf("open segment %q: %w: %w", s.path, ErrCorrupt, err)
	}
	s.db = db
	return nil
}

// closeDB closes the handle; io must be held for writing.
func (s *segment) closeDB() error {
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}

// use runs fn in a transaction on the segment, opening it if needed.
// A panic inside bbolt, which is how it reacts to some corrupted pages,
// becomes an ErrCorrupt error: one bad file must not take the agent down.
func (s *segment) use(b *Buffer, write bool, fn func(tx *bolt.Tx) error) (err error) {
	for {
		s.io.RLock()
		if s.db != nil || s.gone {
			break
		}
		s.io.RUnlock()
		s.io.Lock()
		if s.db == nil && !s.gone {
			if err := s.openDB(b.readOnly); err != nil {
				s.io.Unlock()
				return err
			}
			b.opened(s)
		}
		s.io.Unlock()
	}
	defer s.io.RUnlock()
	if s.gone {
		return errSegmentGone
	}
	s.lastUse.Store(b.useTick.Add(1))
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("segment %q: %w: %v", s.path, ErrCorrupt, r)
		}
	}()
	if write {
		return s.db.Update(fn)
	}
	return s.db.View(fn)
}

// create makes a new empty segment file holding numbers from first on.
func createSegment(dir string, first uint64) (*segment, error) {
	s := newSegment(filepath.Join(dir, segmentName(first)), first)
	if _, err := os.Stat(s.path); err == nil {
		return nil, fmt.Errorf("create segment %q: file exists", s.path)
	}
	if err := s.openDB(false); err != nil {
		return nil, err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bucketIndex, bucketBatches, bucketAcked} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		if err := putUint(meta, keyVersion, segmentVersion); err != nil {
			return err
		}
		return putUint(meta, keyFirst, first)
	})
	if err == nil {
		err = syncDir(dir)
	}
	if err == nil {
		err = s.db.View(func(tx *bolt.Tx) error { s.size = tx.Size(); return nil })
	}
	if err != nil {
		s.closeDB()
		os.Remove(s.path)
		return nil, fmt.Errorf("create segment %q: %w", s.path, err)
	}
	return s, nil
}

func newSegment(path string, first uint64) *segment {
	return &segment{
		first:    first,
		path:     path,
		acked:    map[string]*rangeSet{},
		pending:  map[string]int64{},
		pendingB: map[string]int64{},
	}
}

// load opens an existing segment, checks it and reads its index and
// acknowledgements. Any error means the file cannot be trusted; the caller
// moves it aside. The handle stays open.
func loadSegment(path string, first uint64, readOnly bool) (_ *segment, err error) {
	// Garbage in a page can send bbolt reading outside its mapping; make
	// that a panic recovered below instead of a fatal fault.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	s := newSegment(path, first)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("load segment %q: %w: %v", path, ErrCorrupt, r)
		}
		if err != nil && s.db != nil {
			// A handle bbolt left half-open after a panic may fail to
			// close; the file is being moved aside either way.
			func() {
				defer func() { _ = recover() }()
				s.closeDB()
			}()
		}
	}()
	if err := s.openDB(readOnly); err != nil {
		return nil, err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		s.size = tx.Size()
		meta, index, batches, acked := tx.Bucket(bucketMeta), tx.Bucket(bucketIndex), tx.Bucket(bucketBatches), tx.Bucket(bucketAcked)
		if meta == nil || index == nil || batches == nil || acked == nil {
			return fmt.Errorf("%w: buckets missing", ErrCorrupt)
		}
		if v := getUint(meta, keyVersion); v != segmentVersion {
			return fmt.Errorf("%w: format version %d, want %d", ErrCorrupt, v, segmentVersion)
		}
		if f := getUint(meta, keyFirst); f != first {
			return fmt.Errorf("%w: holds numbers from %d but is named for %d", ErrCorrupt, f, first)
		}
		s.last = getUint(meta, keyLast)
		err := acked.ForEachBucket(func(k []byte) error {
			rs := &rangeSet{}
			err := acked.Bucket(k).ForEach(func(lo, hi []byte) error {
				if len(lo) != 8 || len(hi) != 8 {
					return fmt.Errorf("%w: bad acknowledgement range", ErrCorrupt)
				}
				rs.add(binary.BigEndian.Uint64(lo), binary.BigEndian.Uint64(hi))
				return nil
			})
			s.acked[string(k)] = rs
			return err
		})
		if err != nil {
			return err
		}
		c := index.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return fmt.Errorf("%w: bad index key", ErrCorrupt)
			}
			seq := binary.BigEndian.Uint64(k)
			h, err := parseHeader(v)
			if err != nil {
				return fmt.Errorf("batch %d: %w", seq, err)
			}
			if seq < first || seq > s.last {
				return fmt.Errorf("%w: batch %d outside the segment's range %d..%d", ErrCorrupt, seq, first, s.last)
			}
			if !hasBody(batches, seq) {
				return fmt.Errorf("%w: batch %d: body missing", ErrCorrupt, seq)
			}
			s.addPresent(h)
			s.addOpen(seq, h)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load segment %q: %w", path, err)
	}
	return s, nil
}

// addPresent counts a stored batch in the segment's totals.
func (s *segment) addPresent(h header) {
	if s.batches == 0 {
		s.oldest, s.minTime, s.maxTime = h.appended, h.minTime, h.maxTime
	}
	s.batches++
	s.points += int64(h.points)
	s.bytes += int64(h.bodyLen)
	s.newest = max(s.newest, h.appended)
	s.oldest = min(s.oldest, h.appended)
	s.minTime = min(s.minTime, h.minTime)
	s.maxTime = max(s.maxTime, h.maxTime)
}

// removePresent takes a deleted batch out of the totals. Oldest and newest
// are left as they are (a bound, not exact) unless the segment is empty:
// recomputing them would mean a scan on every delete.
func (s *segment) removePresent(h header) {
	s.batches--
	s.points -= int64(h.points)
	s.bytes -= int64(h.bodyLen)
	if s.batches == 0 {
		s.oldest, s.newest, s.minTime, s.maxTime = 0, 0, 0, 0
	}
}

// recount sets the per-output pending counts from scratch, for the given
// outputs; it reads the index.
func (s *segment) recount(b *Buffer, outputs []string) (pending, pendingB map[string]int64, err error) {
	pending, pendingB = map[string]int64{}, map[string]int64{}
	acked := map[string]*rangeSet{}
	b.mu.Lock()
	for _, o := range outputs {
		acked[o] = s.ackedSet(o).clone()
		pending[o], pendingB[o] = 0, 0
	}
	b.mu.Unlock()
	err = s.use(b, false, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketIndex).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			h, err := parseHeader(v)
			if err != nil {
				return err
			}
			seq := binary.BigEndian.Uint64(k)
			for _, o := range outputs {
				if !acked[o].contains(seq) {
					pending[o] += int64(h.points)
					pendingB[o]++
				}
			}
		}
		return nil
	})
	return pending, pendingB, err
}

// ackedSet returns the output's set; Buffer.mu must be held.
func (s *segment) ackedSet(output string) *rangeSet {
	rs := s.acked[output]
	if rs == nil {
		rs = &rangeSet{}
		s.acked[output] = rs
	}
	return rs
}

// readAckedTx reads an output's acknowledged ranges inside a transaction.
func readAckedTx(tx *bolt.Tx, output string) *rangeSet {
	rs := &rangeSet{}
	if bk := tx.Bucket(bucketAcked).Bucket([]byte(output)); bk != nil {
		_ = bk.ForEach(func(lo, hi []byte) error {
			if len(lo) == 8 && len(hi) == 8 {
				rs.add(binary.BigEndian.Uint64(lo), binary.BigEndian.Uint64(hi))
			}
			return nil
		})
	}
	return rs
}

// writeAckedTx replaces an output's ranges inside a transaction.
func writeAckedTx(tx *bolt.Tx, output string, rs *rangeSet) error {
	acked := tx.Bucket(bucketAcked)
	if acked.Bucket([]byte(output)) != nil {
		if err := acked.DeleteBucket([]byte(output)); err != nil {
			return err
		}
	}
	bk, err := acked.CreateBucket([]byte(output))
	if err != nil {
		return err
	}
	for _, sp := range rs.spans {
		if err := bk.Put(u64(sp.lo), u64(sp.hi)); err != nil {
			return err
		}
	}
	return nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

// chunkSize is the most bytes of a body stored under one key. bbolt keeps
// a value inside its leaf page, and a leaf with fewer than four elements is
// never split: bodies of tens of kilobytes as single values would make
// every commit rewrite the previous bodies (their leaf) and leave free
// runs too short for the next body, tripling flash writes and bloating the
// file. Two chunks of this size and their headers fill a 4 KiB page
// exactly; measured against 990- and 1280-byte chunks it packs best.
const chunkSize = 2014

func chunkKey(seq uint64, i int) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(make([]byte, 0, 10), seq), uint16(i))
}

// putBody stores a body in chunks.
func putBody(bk *bolt.Bucket, seq uint64, body []byte) error {
	for i := 0; len(body) > 0 || i == 0; i++ {
		n := min(len(body), chunkSize)
		if err := bk.Put(chunkKey(seq, i), body[:n]); err != nil {
			return err
		}
		body = body[n:]
	}
	return nil
}

// getBody reassembles a body; nil when it is missing. The bytes are a
// copy, valid after the transaction.
func getBody(bk *bolt.Bucket, seq uint64, sizeHint int) []byte {
	prefix := u64(seq)
	var body []byte
	c := bk.Cursor()
	for k, v := c.Seek(chunkKey(seq, 0)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if body == nil {
			body = make([]byte, 0, sizeHint)
		}
		body = append(body, v...)
	}
	return body
}

// hasBody reports whether a body's first chunk is there, without reading
// the rest: what a check on start can afford.
func hasBody(bk *bolt.Bucket, seq uint64) bool {
	k, _ := bk.Cursor().Seek(chunkKey(seq, 0))
	return bytes.Equal(k, chunkKey(seq, 0))
}

// deleteBody deletes a body's chunks.
func deleteBody(bk *bolt.Bucket, seq uint64) error {
	prefix := u64(seq)
	var keys [][]byte
	c := bk.Cursor()
	for k, _ := c.Seek(chunkKey(seq, 0)); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := bk.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func getUint(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putUint(b *bolt.Bucket, k []byte, v uint64) error { return b.Put(k, u64(v)) }
