package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/citysense/citysense/protocols"
)

// Names inside the data directory.
const (
	DirName        = "buffer"     // segment files, the sequence file and the lock
	QuarantineName = "quarantine" // segments and batches moved aside
	LockName       = "LOCK"
	legacyName     = "buffer.db" // the single-file buffer of earlier versions
)

// Defaults of Options.
const (
	DefaultSegmentSize   = 16 << 20
	DefaultBatchPoints   = 5000
	DefaultFlushInterval = 10 * time.Millisecond
	DefaultFlushPoints   = 50000
	minSegmentSize       = 64 << 10
	// segmentsPerBound: a segment is at most MaxBytes/segmentsPerBound, so
	// that drop_oldest frees space in steps of an eighth, not of everything.
	segmentsPerBound = 8
	// maxOpenSegments bounds the bbolt handles of sealed segments.
	maxOpenSegments = 6
)

// Errors.
var (
	// ErrFull is returned by Append under the drop_newest policy when the
	// points do not fit in MaxBytes. Nothing was stored.
	ErrFull = errors.New("buffer full")
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("buffer closed")
	// ErrLocked is returned when another process holds the data directory.
	ErrLocked = errors.New("locked by another process")

	errLockHeld = errors.New("lock held")
)

// InvalidPointsError reports points that Append left out because line
// protocol cannot carry them (no fields, NaN, invalid UTF-8, …). The other
// points of the call were stored: like a partial write, one bad reading does
// not hold back the good ones.
type InvalidPointsError struct {
	Dropped int   // points left out
	First   error // why the first of them was
}

func (e *InvalidPointsError) Error() string {
	return fmt.Sprintf("%d invalid points left out, first: %v", e.Dropped, e.First)
}

func (e *InvalidPointsError) Unwrap() error { return e.First }

// Policy says what happens when an Append does not fit in MaxBytes.
type Policy uint8

// The policies.
const (
	DropOldest Policy = iota // delete the oldest segments to make room
	DropNewest               // refuse the Append with ErrFull
	Block                    // wait for room or for the caller's ctx
)

// ParsePolicy reads drop_oldest, drop_newest or block.
func ParsePolicy(s string) (Policy, error) {
	for _, p := range []Policy{DropOldest, DropNewest, Block} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown buffer policy %q (want drop_oldest, drop_newest or block)", s)
}

func (p Policy) String() string {
	switch p {
	case DropOldest:
		return "drop_oldest"
	case DropNewest:
		return "drop_newest"
	case Block:
		return "block"
	}
	return "policy(" + strconv.Itoa(int(p)) + ")"
}

// Codec is the compression of a stored batch, which is also the
// Content-Encoding it is sent with.
type Codec uint8

// The codecs.
const (
	Zstd Codec = 1
	S2   Codec = 2 // s2 block format: less CPU, larger on disk
)

// ParseCodec reads zstd or s2.
func ParseCodec(s string) (Codec, error) {
	switch s {
	case "zstd":
		return Zstd, nil
	case "s2":
		return S2, nil
	}
	return 0, fmt.Errorf("unknown compression %q (want zstd or s2)", s)
}

func (c Codec) String() string {
	switch c {
	case Zstd:
		return "zstd"
	case S2:
		return "s2"
	}
	return "codec(" + strconv.Itoa(int(c)) + ")"
}

func (c Codec) valid() bool { return c == Zstd || c == S2 }

// Options configure Open. The zero value is usable: one output named
// "default", no bounds.
type Options struct {
	// Outputs are the ids of the consumers; each keeps its own position
	// and a batch is deleted once all of them acknowledged it. An id not
	// seen before starts at the oldest batch kept.
	Outputs []string
	// MaxBytes bounds the bytes of the segment files; 0: no bound.
	MaxBytes int64
	// MaxAge drops batches buffered longer ago; 0: no bound.
	MaxAge time.Duration
	// Policy applies when an Append does not fit in MaxBytes.
	Policy Policy
	// SegmentSize is the size at which a segment is sealed and a new one
	// begun; 0: DefaultSegmentSize. It is lowered to MaxBytes/8.
	SegmentSize int64
	// BatchPoints is the most points in one stored batch, which is one
	// message on the uplink; 0: DefaultBatchPoints.
	BatchPoints int
	// FlushInterval is the least time between two commits (fsyncs): the
	// Appends arriving meanwhile share the next one. 0: DefaultFlushInterval.
	FlushInterval time.Duration
	// FlushPoints commits at once, before FlushInterval, when this many
	// points wait; 0: DefaultFlushPoints.
	FlushPoints int
	// Codec compresses the batches; 0: Zstd.
	Codec Codec

	Log     *slog.Logger     // nil: discard
	Metrics *metrics.Set     // nil: a private set
	Now     func() time.Time // nil: time.Now
}

func (o *Options) setDefaults() {
	if len(o.Outputs) == 0 {
		o.Outputs = []string{"default"}
	}
	o.Outputs = slices.Compact(slices.Sorted(slices.Values(o.Outputs)))
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.MaxBytes > 0 {
		o.SegmentSize = min(o.SegmentSize, o.MaxBytes/segmentsPerBound)
	}
	o.SegmentSize = max(o.SegmentSize, minSegmentSize)
	if o.BatchPoints <= 0 {
		o.BatchPoints = DefaultBatchPoints
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.FlushPoints <= 0 {
		o.FlushPoints = DefaultFlushPoints
	}
	if o.Codec == 0 {
		o.Codec = Zstd
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Buffer is the durable queue. Its methods are safe for concurrent use;
// each output id should have one reader.
type Buffer struct {
	dir, segDir, qDir string
	opts              Options
	log               *slog.Logger
	lock              *os.File
	readOnly          bool
	zenc              *zstd.Encoder
	m                 *bufferMetrics

	tcOnce sync.Once // tc is made when a batch is first quarantined
	tc     *Transcoder
	tcErr  error

	reqs      chan *request
	stop      chan struct{} // closed by Close
	dead      chan struct{} // closed when the committer has answered its last request
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	useTick   atomic.Int64 // LRU clock of segment handles
	openCount atomic.Int64

	mu        sync.Mutex
	segs      []*segment // oldest first; the last one takes appends
	outputs   []string
	nextSeq   uint64
	reserved  uint64        // the sequence file's mark
	changed   chan struct{} // closed and replaced on every change
	refusedAt time.Time     // last time an Append was refused or waited for room
	closed    bool
	live      map[string]bool // outputs delivering now (SetLive)
}

// Open opens the buffer in dataDir, creating it if needed, and recovers
// what a previous run left: segments that cannot be read are moved to
// dataDir/quarantine with an ERROR log and the rest is kept. It fails only
// when the directory cannot be used at all or another process holds it.
func Open(dataDir string, opts Options) (*Buffer, error) {
	opts.setDefaults()
	b := &Buffer{
		dir:     dataDir,
		segDir:  filepath.Join(dataDir, DirName),
		qDir:    filepath.Join(dataDir, QuarantineName),
		opts:    opts,
		log:     opts.Log,
		outputs: opts.Outputs,
		reqs:    make(chan *request, 256),
		stop:    make(chan struct{}),
		dead:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	if err := os.MkdirAll(b.segDir, 0o750); err != nil {
		return nil, fmt.Errorf("open buffer %q: %w", b.segDir, err)
	}
	lock, err := lockDir(b.segDir, true)
	if err != nil {
		return nil, err
	}
	b.lock = lock
	fail := func(err error) (*Buffer, error) {
		b.closeSegments()
		lock.Close()
		return nil, err
	}
	// EncodeAll on one encoder is safe for concurrent use; lower memory
	// matters more on a gateway than the last percent of speed. Columnar
	// bodies compress in a tenth of a millisecond, so one encoder state
	// serves every commit, and a window of colWindow covers a whole body:
	// the default window (8 MiB) made each state hold megabytes of history.
	b.zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(colWindow))
	if err != nil {
		return fail(fmt.Errorf("open buffer %q: zstd: %w", b.segDir, err))
	}
	b.m = newBufferMetrics(b, opts.Metrics)
	if err := b.recover(); err != nil {
		return fail(err)
	}
	b.wg.Add(1)
	go b.commitLoop()
	if opts.MaxAge > 0 {
		b.wg.Add(1)
		go b.ageLoop()
	}
	return b, nil
}

// lockDir takes the directory's lock file: exclusively for the agent, shared
// for inspection. The agent writes its pid there so that the refusal can
// name it.
func lockDir(dir string, exclusive bool) (*os.File, error) {
	path := filepath.Join(dir, LockName)
	flag := os.O_RDWR | os.O_CREATE
	if !exclusive {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock buffer %q: %w", dir, err)
	}
	if err := flock(f, exclusive); err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, errLockHeld) {
			who := "another process"
			if p := strings.TrimSpace(string(pid)); p != "" {
				who = "process " + p
			}
			return nil, fmt.Errorf("buffer %q: %w: %s holds it (is an agent running with this data_dir?)", dir, ErrLocked, who)
		}
		return nil, fmt.Errorf("lock buffer %q: %w", dir, err)
	}
	if exclusive {
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
	}
	return f, nil
}

// recover loads the segments and the sequence mark.
func (b *Buffer) recover() error {
	if err := b.importLegacy(); err != nil {
		b.log.Error("buffer: cannot import the old single-file buffer; it is kept aside", "err", err)
	}
	entries, err := os.ReadDir(b.segDir)
	if err != nil {
		return fmt.Errorf("open buffer %q: %w", b.segDir, err)
	}
	var maxLast uint64
	for _, e := range entries {
		first, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			if strings.HasSuffix(e.Name(), ".tmp") {
				os.Remove(filepath.Join(b.segDir, e.Name()))
			}
			continue
		}
		path := filepath.Join(b.segDir, e.Name())
		s, err := loadSegment(path, first, false)
		if errors.Is(err, errLockHeld) {
			return fmt.Errorf("open buffer %q: %w", b.segDir, ErrLocked)
		}
		if err != nil {
			b.quarantineFile(path, err)
			continue
		}
		b.segs = append(b.segs, s)
		b.openCount.Add(1)
		maxLast = max(maxLast, s.last, first)
	}
	// Files are named by their first number, zero-padded, so ReadDir's
	// order is queue order.
	for i, s := range b.segs {
		if i < len(b.segs)-1 {
			s.sealed.Store(true)
		}
	}

	b.reserved, err = readSeqFile(filepath.Join(b.segDir, seqFileName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		b.log.Error("buffer: sequence file unreadable; continuing from the segments' numbers", "err", err)
	}
	b.nextSeq = max(b.reserved, maxLast+1, 1)

	if len(b.segs) == 0 {
		s, err := createSegment(b.segDir, b.nextSeq)
		if err != nil {
			return err
		}
		b.segs = append(b.segs, s)
		b.openCount.Add(1)
	}
	if err := b.applyOutputs(b.outputs); err != nil {
		return err
	}
	b.trimOpen()
	st := b.Stats()
	b.log.Info("buffer opened", "dir", b.segDir, "segments", len(st.Segments), "bytes", st.Bytes,
		"pending_batches", st.Batches, "pending_points", st.Points, "next_seq", b.nextSeq)
	return nil
}

// applyOutputs sets the ids batches are kept for, recounts what each has
// pending and deletes what every one of them has acknowledged (batches
// only a removed output was waiting for).
func (b *Buffer) applyOutputs(outputs []string) error {
	outputs = slices.Compact(slices.Sorted(slices.Values(outputs)))
	b.mu.Lock()
	b.outputs = outputs
	segs := slices.Clone(b.segs)
	b.mu.Unlock()
	for _, s := range segs {
		pending, pendingB, err := s.recount(b, outputs)
		if err != nil {
			b.segmentFailed(s, err)
			continue
		}
		b.mu.Lock()
		s.pending, s.pendingB = pending, pendingB
		b.mu.Unlock()
		if err := b.deleteAcked(s, nil); err != nil {
			b.segmentFailed(s, err)
		}
	}
	b.notify()
	return nil
}

// SetOutputs changes the output ids, for a configuration reload.
func (b *Buffer) SetOutputs(outputs []string) error {
	if len(outputs) == 0 {
		return errors.New("buffer: at least one output is required")
	}
	return b.applyOutputs(outputs)
}

// SetLimits changes the bounds and the policy, for a configuration reload.
func (b *Buffer) SetLimits(maxBytes int64, maxAge time.Duration, policy Policy) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opts.MaxBytes, b.opts.Policy = maxBytes, policy
	if maxAge > 0 && b.opts.MaxAge == 0 && !b.closed {
		b.wg.Add(1)
		go b.ageLoop()
	}
	b.opts.MaxAge = maxAge
}

// Changed returns a channel closed at the next change: a commit, an
// acknowledgement or a deletion. Readers wait on it for new data.
func (b *Buffer) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// notify wakes everyone waiting on Changed.
func (b *Buffer) notify() {
	b.mu.Lock()
	b.notifyLocked()
	b.mu.Unlock()
}

func (b *Buffer) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Head returns the number the next stored batch will get: every batch
// stored so far has a lower one.
func (b *Buffer) Head() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nextSeq
}

// Dir returns the data directory.
func (b *Buffer) Dir() string { return b.dir }

// QuarantineDir returns where unreadable segments and rejected batches go.
func (b *Buffer) QuarantineDir() string { return b.qDir }

// Close stops the committer after the Appends already accepted are
// committed, and closes every file. Appends after Close fail with ErrClosed.
func (b *Buffer) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.stop)
		b.wg.Wait()
		if b.zenc != nil {
			b.zenc.Close()
		}
		if b.tc != nil {
			b.tc.Close()
		}
		if !b.readOnly && b.nextSeq < b.reserved {
			// A clean stop gives the mark back: the next run continues
			// without a gap in the numbers. After a crash it skips ahead.
			if err := writeSeqFile(filepath.Join(b.segDir, seqFileName), b.nextSeq); err != nil {
				b.log.Warn("buffer: cannot record the next batch number; the next run skips ahead", "err", err)
			}
		}
		b.closeErr = b.closeSegments()
		if b.lock != nil {
			b.lock.Close()
		}
	})
	return b.closeErr
}

func (b *Buffer) closeSegments() error {
	var errs []error
	for _, s := range b.segs {
		s.io.Lock()
		if err := s.closeDB(); err != nil {
			errs = append(errs, fmt.Errorf("close segment %q: %w", s.path, err))
		}
		s.gone = true
		s.io.Unlock()
	}
	return errors.Join(errs...)
}

// opened is called when a segment handle was opened on demand.
func (b *Buffer) opened(*segment) {
	if b.openCount.Add(1) > maxOpenSegments+1 {
		go b.trimOpen()
	}
}

// trimOpen closes the least recently used handles of sealed segments while
// more than maxOpenSegments are open. A handle in use is skipped.
func (b *Buffer) trimOpen() {
	for b.openCount.Load() > maxOpenSegments+1 {
		b.mu.Lock()
		var victim *segment
		for _, s := range b.segs {
			if s.sealed.Load() && (victim == nil || s.lastUse.Load() < victim.lastUse.Load()) {
				s.io.RLock()
				open := s.db != nil
				s.io.RUnlock()
				if open {
					victim = s
				}
			}
		}
		b.mu.Unlock()
		if victim == nil || !victim.io.TryLock() {
			return
		}
		if victim.db != nil {
			if err := victim.closeDB(); err != nil {
				b.log.Warn("buffer: closing an idle segment failed", "segment", victim.path, "err", err)
			}
			b.openCount.Add(-1)
		}
		victim.io.Unlock()
	}
}

// removeSegment takes s out of the queue and deletes or quarantines its
// file. Readers holding batches of it find it gone; their acknowledgements
// are then no-ops.
func (b *Buffer) removeSegment(s *segment, quarantine error) {
	b.mu.Lock()
	i := slices.Index(b.segs, s)
	if i < 0 {
		b.mu.Unlock()
		return
	}
	b.segs = slices.Delete(b.segs, i, i+1)
	b.notifyLocked()
	b.mu.Unlock()
	s.io.Lock()
	if s.db != nil {
		func() {
			defer func() { _ = recover() }() // a damaged handle may fail to close
			s.closeDB()
		}()
		b.openCount.Add(-1)
	}
	s.gone = true
	s.io.Unlock()
	if quarantine != nil {
		b.quarantineFile(s.path, quarantine)
		return
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		b.log.Error("buffer: cannot delete a drained segment", "segment", s.path, "err", err)
	}
}

// segmentFailed handles a segment found unreadable while running: its
// batches are counted as dropped and the file moved aside.
func (b *Buffer) segmentFailed(s *segment, err error) {
	if errors.Is(err, errSegmentGone) {
		return
	}
	b.mu.Lock()
	active := len(b.segs) > 0 && b.segs[len(b.segs)-1] == s
	points := s.points
	b.mu.Unlock()
	if active {
		// The committer needs a segment to write to; it starts a new one
		// before its next commit.
		s.sealed.Store(true)
	}
	b.m.dropped("corrupt").Add(int(points))
	b.removeSegment(s, err)
}

// quarantineFile moves a file into the quarantine directory, loudly. It
// never fails the caller: a file that cannot even be moved is left where it
// is and no longer used.
func (b *Buffer) quarantineFile(path string, why error) {
	b.m.quarantined.Inc()
	dst := filepath.Join(b.qDir, filepath.Base(path)+"."+b.opts.Now().UTC().Format("20060102T150405.000000000Z"))
	err := os.MkdirAll(b.qDir, 0o750)
	if err == nil {
		err = os.Rename(path, dst)
	}
	if err == nil {
		_ = os.WriteFile(dst+".txt", []byte(why.Error()+"\n"), 0o600)
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		b.log.Error("BUFFER SEGMENT UNREADABLE and could not be moved aside; it is ignored", "segment", path, "reason", why, "err", err)
		return
	}
	b.log.Error("BUFFER SEGMENT UNREADABLE: moved to quarantine, the rest of the buffer is kept", "segment", path, "moved_to", dst, "reason", why)
}

// compress compresses data with the buffer's codec.
func (b *Buffer) compress(data []byte) []byte {
	return compress(b.zenc, b.opts.Codec, data)
}

// The result is a slice of its own (it is stored, or sent and kept until
// acknowledged); it is compressed into a reused buffer and copied out, which
// costs less than a fresh buffer of a guessed size, zeroed by the runtime.
func compress(zenc *zstd.Encoder, codec Codec, data []byte) []byte {
	out := scratch.get()
	defer putScratch(out)
	if codec == S2 {
		*out = s2.Encode((*out)[:cap(*out)], data)
	} else {
		*out = zenc.EncodeAll(data, (*out)[:0])
	}
	return bytes.Clone(*out)
}

// encodeRequest checks pts for one request: the points line protocol cannot
// carry are left out and reported, because every stored point must be
// sendable as line protocol later. The request refers to the caller's
// points, which stay untouched while Append waits for the commit.
func encodeRequest(pts []protocols.Point) (*request, *InvalidPointsError) {
	r := &request{pts: pts, done: make(chan error, 1)}
	var invalid *InvalidPointsError
	for i := range pts {
		if err := checkLines(&pts[i]); err != nil {
			if invalid == nil {
				invalid = &InvalidPointsError{First: fmt.Errorf("point %d: %w", i, err)}
				r.pts = slices.Clone(pts[:i])
			}
			invalid.Dropped++
			continue
		}
		if invalid != nil {
			r.pts = append(r.pts, pts[i])
		}
	}
	return r, invalid
}

// checkLines reports why p cannot be written as line protocol: the model's
// own rules (Validate) and line protocol's for names and strings, as the
// protocols package's encoder (influxdata/line-protocol/v2) applies them,
// without writing the line. One rule is stricter than that encoder's: a
// measurement starting with # would be read back as a comment, so the
// point would vanish without an error downstream.
func checkLines(p *protocols.Point) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if !lpName(p.Measurement) || p.Measurement[0] == '#' {
		return fmt.Errorf("invalid measurement %q", p.Measurement)
	}
	for _, t := range p.Tags {
		if !lpName(t.Key) || !lpName(t.Value) {
			return fmt.Errorf("point %q: invalid tag %q=%q", p.Measurement, t.Key, t.Value)
		}
	}
	for _, f := range p.Fields {
		if !lpName(f.Key) {
			return fmt.Errorf("point %q: invalid field key %q", p.Measurement, f.Key)
		}
		if f.Value.Kind() == protocols.KindString && !utf8.ValidString(f.Value.StringV()) {
			return fmt.Errorf("point %q: field %q: value cannot be written as line protocol", p.Measurement, f.Key)
		}
	}
	return nil
}

// lpName reports whether line protocol can carry s as a measurement, tag
// key or value, or field key: not empty, UTF-8, no control characters, and
// no backslash at the end (it would escape the separator after it).
func lpName(s string) bool {
	if s == "" || s[len(s)-1] == '\\' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// Append stores pts durably and returns after the commit that holds them
// (group commit: concurrent Appends share it). A nil return is the promise
// an input may pass on to its device. Points that line protocol cannot
// carry are left out and reported as an *InvalidPointsError after the
// others were stored. When ctx ends before the points were taken into a
// commit, Append returns ctx's error and stored nothing.
func (b *Buffer) Append(ctx context.Context, pts []protocols.Point) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r, invalid := encodeRequest(pts)
	if len(r.pts) > 0 {
		if err := b.submit(ctx, r); err != nil {
			return err
		}
	}
	if invalid != nil {
		return invalid
	}
	return nil
}

func (b *Buffer) submit(ctx context.Context, r *request) error {
	select {
	case b.reqs <- r:
	case <-b.stop:
		return fmt.Errorf("append to buffer %q: %w", b.segDir, ErrClosed)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqWaiting, reqCanceled) {
			return ctx.Err()
		}
		// The committer took it: its fate is decided within one fsync.
		return <-r.done
	case <-b.dead:
		if r.state.CompareAndSwap(reqWaiting, reqCanceled) {
			return fmt.Errorf("append to buffer %q: %w", b.segDir, ErrClosed)
		}
		return <-r.done
	}
}
