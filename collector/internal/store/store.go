package store

import (
	"context"
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

	"github.com/VictoriaMetrics/metrics"
	bolt "go.etcd.io/bbolt"

	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/protocols"
)

// ErrTooManyPoints is returned by Select when the answer would hold more
// points than Selector.MaxPoints.
var ErrTooManyPoints = errors.New("too many points")

// ErrTooManySeries is returned by Lookup when more series match than
// Selector.MaxSeries.
var ErrTooManySeries = errors.New("too many series")

// ErrAmbiguousField is returned (wrapped in an *AmbiguousFieldError) when
// no measurement is given and the field exists in more than one.
var ErrAmbiguousField = errors.New("field exists in more than one measurement")

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("store closed")

// Options tune a store. Start from DefaultOptions.
type Options struct {
	// Log receives the store's messages; nil discards them.
	Log *slog.Logger
	// Retention per resolution; zero values keep forever.
	Retention Retention
	// Window is the span of a chunk: the head keeps each series' points
	// of an open window in memory and writes them as one chunk when the
	// window closes. A multiple of an hour that divides a day.
	Window time.Duration
	// Grace is how long after its end a window stays open for late
	// points. Later points are still accepted, at the cost of rewriting
	// the window's blocks.
	Grace time.Duration
	// IdleFlush closes a window whose end (plus Grace) has passed by the
	// wall clock once no point arrived for it this long, so that a quiet
	// source does not keep its last window in memory.
	IdleFlush time.Duration
	// MaxHold bounds how long a point waits in the head before it is
	// written, whatever the windows: an ingest consumer holding
	// acknowledgements must set its AckWait above it (see AckWait).
	MaxHold time.Duration
	// FlushInterval is how often the head is checked for windows to write.
	FlushInterval time.Duration
	// MaxHeadPoints bounds the head: past it, the oldest windows are
	// written early (as partial chunks merged later).
	MaxHeadPoints int
	// BlockCacheBytes bounds the cache of decompressed blocks that reads
	// share; zero disables it.
	BlockCacheBytes int
	// Now is the clock for retention and the head's timers; nil means
	// time.Now.
	Now func() time.Time

	// Partition spans per tier, fixed by the layout; tests shrink them.
	periods [numTiers]time.Duration
}

// DefaultOptions returns 2-hour windows with 10 minutes' grace and the
// default retention (raw 90d, 1m 2y, 1h forever).
func DefaultOptions() Options {
	return Options{
		Retention:       DefaultRetention(),
		Window:          2 * time.Hour,
		Grace:           10 * time.Minute,
		IdleFlush:       30 * time.Second,
		MaxHold:         2*time.Hour + 30*time.Minute,
		FlushInterval:   time.Second,
		MaxHeadPoints:   50_000_000,
		BlockCacheBytes: 64 << 20,
		periods:         [numTiers]time.Duration{day, week, 4 * week},
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.Window < time.Hour || o.Window%time.Hour != 0 || day%o.Window != 0 {
		errs = append(errs, fmt.Errorf("window %s: want a whole number of hours that divides a day", o.Window))
	}
	if o.Grace < 0 || o.IdleFlush <= 0 || o.FlushInterval <= 0 || o.MaxHeadPoints <= 0 {
		errs = append(errs, errors.New("grace, idle flush, flush interval and max head points must be positive"))
	}
	if o.MaxHold < o.Window+o.Grace {
		errs = append(errs, fmt.Errorf("max hold %s is shorter than window + grace (%s)", o.MaxHold, o.Window+o.Grace))
	}
	if err := o.Retention.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// AckWait is the least AckWait a JetStream consumer that acknowledges only
// after the store persisted (Append's done) should use: the longest a point
// waits in the head, plus a margin for the write itself.
func (o Options) AckWait() time.Duration { return o.MaxHold + 2*o.FlushInterval + 5*time.Minute }

// Store is a time-series store in a directory of bbolt files. It is safe
// for concurrent use.
type Store struct {
	dir   string
	opts  Options
	log   *slog.Logger
	ix    *index
	parts *partitions
	codec *codec
	cache *blockCache
	// rollups keeps decoded rollup chunks (an eighth of the block cache's
	// bytes): see rollupCache.
	rollups *rollupCache
	head    head

	rolledMu sync.RWMutex
	rolled   map[int64]bool // days whose 1h rollups are written

	flushReq chan func() error
	kick     chan struct{}
	quit     chan struct{}
	done     chan struct{}
	closed   atomic.Bool
	closeMu  sync.Mutex

	m storeMetrics
}

type storeMetrics struct {
	set               *metrics.Set
	appended          *metrics.Counter
	rejectedOld       *metrics.Counter
	rejectedInvalid   *metrics.Counter
	flushes           *metrics.Counter
	flushErrors       *metrics.Counter
	windowsWritten    *metrics.Counter
	blocksWritten     *metrics.Counter
	blockBytes        *metrics.Counter
	lateRewrites      *metrics.Counter
	partitionsDeleted *metrics.Counter
	cacheHits         *metrics.Counter
	cacheMisses       *metrics.Counter
	rollupHits        *metrics.Counter
	rollupMisses      *metrics.Counter
	flushDuration     *metrics.Histogram
}

// Open opens the store kept beside the skeleton's file name: path
// "data/store.db" means the directory "data/store". It keeps everything
// (no retention) with the default windows; the collector uses OpenDir.
func Open(path string, log *slog.Logger) (*Store, error) {
	opts := DefaultOptions()
	opts.Log = log
	opts.Retention = Retention{}
	return OpenDir(strings.TrimSuffix(path, filepath.Ext(path)), opts)
}

// OpenDir opens or creates the store in dir and starts its background
// writer. Close stops it.
func OpenDir(dir string, opts Options) (*Store, error) {
	if opts.Log == nil {
		opts.Log = cli.Discard()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.periods == [numTiers]time.Duration{} {
		opts.periods = DefaultOptions().periods
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("open store %q: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open store %q: %w", dir, err)
	}
	// The timeout turns a second process on the same files (bbolt holds an
	// exclusive flock) into an error instead of a silent hang.
	cd, err := newCodec()
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", dir, err)
	}
	bopts := bolt.Options{Timeout: 2 * time.Second, FreelistType: bolt.FreelistMapType}
	ix, err := openIndex(filepath.Join(dir, "index.db"), &bopts, cd)
	if err != nil {
		cd.close()
		return nil, err
	}
	var period [numTiers]int64
	for t := range numTiers {
		period[t] = int64(opts.periods[t])
	}
	// Partitions hold mostly values of 10–30 KB, each on its own run of
	// pages: with 1 KB pages the half page lost at the end of each run is
	// 1% of the data instead of 4–10% with 4 KB pages.
	pbopts := bopts
	pbopts.PageSize = 1024
	parts, err := newPartitions(dir, period, &pbopts, opts.Log)
	if err != nil {
		ix.close()
		cd.close()
		return nil, fmt.Errorf("open store %q: %w", dir, err)
	}
	s := &Store{
		dir:      dir,
		opts:     opts,
		log:      opts.Log.With("component", "store"),
		ix:       ix,
		parts:    parts,
		codec:    cd,
		cache:    newBlockCache(opts.BlockCacheBytes),
		rollups:  newRollupCache(opts.BlockCacheBytes / 8),
		flushReq: make(chan func() error),
		kick:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.head.init()
	s.initMetrics()
	if err := s.loadRolled(); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("open store %q: %w", dir, err)
	}
	// Stores written before 2026-11-23 kept an open day's hours in files
	// of their own; reads compute them from raw chunks now.
	if old := filepath.Join(dir, "1h-open"); dirExists(old) {
		if err := os.RemoveAll(old); err != nil {
			s.log.Error("store: deleting the obsolete 1h-open directory", "err", err)
		}
	}
	if err := s.applyRetention(opts.Now().UnixNano()); err != nil {
		s.log.Error("store: retention", "err", err)
	}
	go s.loop()
	return s, nil
}

func (s *Store) initMetrics() {
	set := metrics.NewSet()
	s.m = storeMetrics{
		set:               set,
		appended:          set.NewCounter("citysense_store_points_appended_total"),
		rejectedOld:       set.NewCounter(`citysense_store_points_rejected_total{reason="retention"}`),
		rejectedInvalid:   set.NewCounter(`citysense_store_points_rejected_total{reason="invalid"}`),
		flushes:           set.NewCounter("citysense_store_flushes_total"),
		flushErrors:       set.NewCounter("citysense_store_flush_errors_total"),
		windowsWritten:    set.NewCounter("citysense_store_windows_written_total"),
		blocksWritten:     set.NewCounter("citysense_store_blocks_written_total"),
		blockBytes:        set.NewCounter("citysense_store_block_bytes_written_total"),
		lateRewrites:      set.NewCounter("citysense_store_block_rewrites_total"),
		partitionsDeleted: set.NewCounter("citysense_store_partitions_deleted_total"),
		cacheHits:         set.NewCounter(`citysense_store_block_cache_requests_total{result="hit"}`),
		cacheMisses:       set.NewCounter(`citysense_store_block_cache_requests_total{result="miss"}`),
		rollupHits:        set.NewCounter(`citysense_store_rollup_cache_requests_total{result="hit"}`),
		rollupMisses:      set.NewCounter(`citysense_store_rollup_cache_requests_total{result="miss"}`),
		flushDuration:     set.NewHistogram("citysense_store_flush_duration_seconds"),
	}
	set.NewGauge("citysense_store_head_points", func() float64 {
		s.head.mu.Lock()
		defer s.head.mu.Unlock()
		return float64(s.head.points)
	})
	set.NewGauge("citysense_store_series", func() float64 {
		s.ix.mu.RLock()
		defer s.ix.mu.RUnlock()
		return float64(len(s.ix.series) - 1)
	})
	for t := range numTiers {
		set.NewGauge(`citysense_store_disk_bytes{tier="`+t.String()+`"}`, func() float64 { return float64(s.parts.sizes()[t]) })
	}
}

// Metrics is the store's metrics set, for /metrics:
//
//   - citysense_store_points_appended_total: field values taken into the head
//   - citysense_store_points_rejected_total{reason}: values refused: "retention" (older than raw retention) or "invalid"
//   - citysense_store_head_points: values in memory, not yet written
//   - citysense_store_flushes_total, citysense_store_flush_errors_total: head writes and failures (retried)
//   - citysense_store_windows_written_total, citysense_store_blocks_written_total, citysense_store_block_bytes_written_total
//   - citysense_store_block_rewrites_total: existing blocks rewritten to merge late or replayed points
//   - citysense_store_partitions_deleted_total: files removed by retention
//   - citysense_store_series: series known
//   - citysense_store_disk_bytes{tier}: size of the partition files
//   - citysense_store_block_cache_requests_total{result}: block reads served from the cache ("hit") or decompressed ("miss")
//   - citysense_store_flush_duration_seconds
func (s *Store) Metrics() *metrics.Set { return s.m.set }

// Options returns the options the store runs with.
func (s *Store) Options() Options { return s.opts }

// Close writes the head, stops the background writer and closes every
// file. Calls after Close fail with ErrClosed.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	close(s.quit)
	<-s.done
	if err := s.closeFiles(); err != nil {
		return fmt.Errorf("close store %q: %w", s.dir, err)
	}
	return nil
}

func (s *Store) closeFiles() error {
	err := errors.Join(s.parts.close(), s.ix.close())
	s.codec.close()
	return err
}

// Append adds the fields of pts to the head and returns how many points it
// took; points that fail protocols.Point.Validate or are older than the raw
// retention are counted and skipped. done, when not nil, is called exactly
// once when every value of this call has been written to disk (nil) — or,
// when the store closes before it could be, with ErrClosed. It may be
// called before Append returns, and from another goroutine; it must not
// block for long, since it runs on the store's writer.
func (s *Store) Append(pts []protocols.Point, done func(error)) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	now := s.opts.Now()
	cutoff := s.rawCutoff(now.UnixNano())
	tk := &ticket{done: done}
	n := s.append(pts, now, cutoff, tk)
	if tk.pending.Load() == 0 && done != nil {
		done(nil)
	}
	return n, nil
}

func (s *Store) append(pts []protocols.Point, now time.Time, cutoff int64, tk *ticket) int {
	n, old, invalid, values := 0, 0, 0, 0
	var key []byte
	ix, h := s.ix, &s.head
	ix.mu.Lock()
	h.mu.Lock()
	var w *headWindow
	for i := range pts {
		p := &pts[i]
		if p.Time < cutoff {
			old++
			continue
		}
		if err := p.Validate(); err != nil {
			invalid++
			s.log.Warn("store: skipping invalid point", "err", err)
			continue
		}
		var ts *tagSet
		ts, key = ix.resolve(p, key)
		ix.noteStation(ts, p)
		start := floorTo(p.Time, int64(s.opts.Window))
		if w == nil || w.start != start {
			w = h.window(start, now)
			w.addTicket(tk)
		}
		w.last = now
		for j, f := range p.Fields {
			fr := ix.field(ts, p, j, f.Key)
			if fr.win != w.seq {
				fr.win, fr.hs = w.seq, w.series(h, fr.id, fr.gid)
			}
			fr.hs.col.append(p.Time, f.Value)
			w.points++
		}
		values += len(p.Fields)
		n++
		if p.Time > h.hwm {
			h.hwm = p.Time
		}
	}
	h.points += values
	over := h.points > s.opts.MaxHeadPoints
	// A window that the newest data has closed is written at once rather
	// than at the next tick: a writer catching up (a replay, a backfill)
	// sends hours of data a second, and the head would otherwise hold
	// every window that came in meanwhile.
	if h.oldest != maxTime && min(h.hwm, now.UnixNano()+int64(s.opts.Grace)) >= h.oldest+int64(s.opts.Window)+int64(s.opts.Grace) {
		over = true
	}
	// The ticket's windows only serve to count each window once during
	// this call; kept, they would chain every window written since to the
	// open one through its tickets, and with them every held message.
	tk.wins = nil
	h.mu.Unlock()
	ix.mu.Unlock()
	s.m.appended.Add(values)
	s.m.rejectedOld.Add(old)
	s.m.rejectedInvalid.Add(invalid)
	if over {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return n
}

// Write stores the points and returns once they are on disk: it appends
// them and writes the whole head at once. Every call costs at least one
// fsync'd transaction per window and partition it touches, and later
// points of the same windows are merged into the written blocks; ingest
// uses Append and acknowledges on done instead.
func (s *Store) Write(pts []protocols.Point) (int, error) {
	if len(pts) == 0 {
		return 0, nil
	}
	n, err := s.Append(pts, nil)
	if err != nil {
		return 0, err
	}
	if err := s.Flush(context.Background()); err != nil {
		return 0, fmt.Errorf("write %d points: %w", len(pts), err)
	}
	return n, nil
}

// Flush writes every point in the head now, open windows included, rolls
// up the days that have closed, and returns once all of it is on disk.
func (s *Store) Flush(ctx context.Context) error {
	return s.do(ctx, func() error {
		if err := s.flush(true); err != nil {
			return err
		}
		return s.closeDays(s.opts.Now())
	})
}

// do runs fn on the writer goroutine, which owns every change to blocks,
// and returns its error.
func (s *Store) do(ctx context.Context, fn func() error) error {
	reply := make(chan error, 1)
	req := func() error {
		err := fn()
		reply <- err
		return err
	}
	select {
	case s.flushReq <- req:
	case <-s.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop is the store's only writer of blocks: it writes due windows, serves
// Flush and applies retention.
func (s *Store) loop() {
	defer close(s.done)
	tick := time.NewTicker(s.opts.FlushInterval)
	defer tick.Stop()
	nextRetention := time.Time{}
	for {
		select {
		case <-s.quit:
			if err := s.flush(true); err != nil {
				s.log.Error("store: final flush failed; unacknowledged points will be replayed", "err", err)
			}
			s.head.failAll(ErrClosed)
			return
		case fn := <-s.flushReq:
			fn()
		case <-s.kick:
			s.flush(false)
		case <-tick.C:
			s.flush(false)
			now := s.opts.Now()
			if err := s.closeDays(now); err != nil {
				s.log.Error("store: rolling up a day failed; will retry", "err", err)
			}
			if !now.Before(nextRetention) {
				if err := s.applyRetention(now.UnixNano()); err != nil {
					s.log.Error("store: retention", "err", err)
				}
				nextRetention = now.Add(time.Minute)
			}
		}
	}
}

// flush writes the windows that are due (all when force) and releases the
// tickets of those written. A window that fails goes back into the head and
// is retried on the next tick.
func (s *Store) flush(force bool) error {
	now := s.opts.Now()
	if force {
		s.ix.touchSeen()
	}
	due := s.head.takeDue(now, force, s.dueFunc(now), s.opts.MaxHeadPoints)
	if len(due) == 0 {
		if force {
			return s.ix.persist()
		}
		return nil
	}
	begin := time.Now()
	s.m.flushes.Inc()
	var errs []error
	if err := s.ix.persist(); err != nil {
		// No block may name a series the index does not hold yet.
		for _, w := range due {
			s.head.giveBack(w)
		}
		s.m.flushErrors.Inc()
		s.log.Error("store: writing the series index failed; will retry", "err", err)
		return err
	}
	for _, w := range due {
		if err := s.writeWindow(w); err != nil {
			s.head.giveBack(w)
			s.m.flushErrors.Inc()
			s.log.Error("store: writing a window failed; will retry", "window", time.Unix(0, w.start).UTC(), "err", err)
			errs = append(errs, err)
			continue
		}
		s.m.windowsWritten.Inc()
		s.head.done(w)
	}
	s.m.flushDuration.UpdateDuration(begin)
	return errors.Join(errs...)
}

// dueFunc decides whether an open window should be written now.
func (s *Store) dueFunc(now time.Time) func(w *headWindow, hwm int64) bool {
	win, grace := int64(s.opts.Window), int64(s.opts.Grace)
	nowNS := now.UnixNano()
	return func(w *headWindow, hwm int64) bool {
		// A clock-skewed device must not close everyone's windows.
		hwm = min(hwm, nowNS+grace)
		end := w.start + win
		switch {
		case end+grace <= hwm:
			return true
		case end+grace <= nowNS && now.Sub(w.last) >= s.opts.IdleFlush:
			return true
		case now.Sub(w.first) >= s.opts.MaxHold-s.opts.FlushInterval:
			return true
		}
		return false
	}
}

// Stations returns every station seen, sorted by id.
func (s *Store) Stations() ([]Station, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return s.ix.stationList(), nil
}

func sortedKeys[V any](m map[uint32]V) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func dirExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
