package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/citysense/citysense/protocols"
)

// FileName is the name of the buffer's file inside the data directory.
const FileName = "buffer.db"

// ErrFull is returned by Append when storing the points would take the
// pending bytes over Options.MaxBytes. Nothing was stored.
var ErrFull = errors.New("buffer full")

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

// Options tune Open. The zero value is usable.
type Options struct {
	// MaxBytes bounds the compressed bytes pending; 0 means no bound.
	MaxBytes int64
	// MaxEntryPoints splits an Append into entries of at most this many
	// points, since an entry becomes one message on the uplink; 0 means 5000.
	MaxEntryPoints int
	// CommitDelay is how long the first of several concurrent Appends waits
	// for others to share its fsync (bbolt's MaxBatchDelay). A lone writer
	// pays it on every Append, so keep it near the cost of an fsync;
	// 0 means 2ms.
	CommitDelay time.Duration
}

// Entry is one stored batch.
type Entry struct {
	Seq    uint64 // unique and increasing, never reused
	Body   []byte // zstd-compressed line protocol, nanosecond precision
	Points int
}

// Buffer is a durable FIFO queue of point batches. Its methods are safe for
// concurrent use; Peek and Ack are meant for one consumer.
type Buffer struct {
	db       *bolt.DB
	path     string
	opts     Options
	enc      *zstd.Encoder
	appended chan struct{}
}

var (
	bucketEntries = []byte("entries")
	bucketMeta    = []byte("meta")
	keyVersion    = []byte("version")
	keyBatches    = []byte("batches")
	keyPoints     = []byte("points")
	keyBytes      = []byte("bytes")
)

const formatVersion = 1

// Open opens or creates the buffer in dir.
func Open(dir string, opts Options) (*Buffer, error) {
	if opts.MaxEntryPoints <= 0 {
		opts.MaxEntryPoints = 5000
	}
	if opts.CommitDelay <= 0 {
		opts.CommitDelay = 2 * time.Millisecond
	}
	path := filepath.Join(dir, FileName)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open buffer %q: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open buffer %q: locked by another process (is another agent running with this data_dir?)", path)
		}
		return nil, fmt.Errorf("open buffer %q: %w", path, err)
	}
	db.MaxBatchDelay = opts.CommitDelay
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketEntries); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := getUint(meta, keyVersion); v {
		case 0:
			return putUint(meta, keyVersion, formatVersion)
		case formatVersion:
			return nil
		default:
			return fmt.Errorf("format version %d is newer than this agent understands (%d)", v, formatVersion)
		}
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open buffer %q: %w", path, err)
	}
	// EncodeAll on one encoder is safe for concurrent use; lower memory
	// matters more on a gateway than the last percent of speed.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithLowerEncoderMem(true))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open buffer %q: zstd: %w", path, err)
	}
	return &Buffer{db: db, path: path, opts: opts, enc: enc, appended: make(chan struct{}, 1)}, nil
}

// Path returns the buffer's file.
func (b *Buffer) Path() string { return b.path }

// Append stores pts durably, as one entry per Options.MaxEntryPoints points,
// and returns after the commit (group-committed with concurrent Appends).
// Points that line protocol cannot carry are left out and reported as an
// *InvalidPointsError after the others were stored. Append takes ownership
// of pts only for the duration of the call.
func (b *Buffer) Append(ctx context.Context, pts []protocols.Point) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var (
		bodies  [][]byte
		counts  []int
		invalid *InvalidPointsError
		enc     protocols.Encoder
		total   int64
	)
	// Encoding and compressing happen before the transaction, so the
	// shared commit holds the write lock only for the puts.
	for start := 0; start < len(pts); start += b.opts.MaxEntryPoints {
		chunk := pts[start:min(start+b.opts.MaxEntryPoints, len(pts))]
		enc.Reset()
		n := 0
		for i := range chunk {
			if err := enc.Encode(&chunk[i]); err != nil {
				if invalid == nil {
					invalid = &InvalidPointsError{First: fmt.Errorf("point %d: %w", start+i, err)}
				}
				invalid.Dropped++
				continue
			}
			n++
		}
		if n == 0 {
			continue
		}
		body := b.enc.EncodeAll(enc.Bytes(), nil)
		bodies = append(bodies, body)
		counts = append(counts, n)
		total += int64(len(body))
	}
	if len(bodies) > 0 {
		err := b.db.Batch(func(tx *bolt.Tx) error {
			entries, meta := tx.Bucket(bucketEntries), tx.Bucket(bucketMeta)
			pendingBytes := getUint(meta, keyBytes)
			if b.opts.MaxBytes > 0 && pendingBytes+uint64(total) > uint64(b.opts.MaxBytes) {
				return ErrFull
			}
			points := 0
			for i, body := range bodies {
				seq, err := entries.NextSequence()
				if err != nil {
					return err
				}
				val := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(body)), uint64(counts[i]))
				if err := entries.Put(seqKey(seq), append(val, body...)); err != nil {
					return err
				}
				points += counts[i]
			}
			return addMeta(meta, int64(len(bodies)), int64(points), total)
		})
		if errors.Is(err, ErrFull) {
			return fmt.Errorf("append to buffer %q: %w (max_bytes %d)", b.path, ErrFull, b.opts.MaxBytes)
		}
		if err != nil {
			return fmt.Errorf("append to buffer %q: %w", b.path, err)
		}
		select {
		case b.appended <- struct{}{}:
		default:
		}
	}
	if invalid != nil {
		return invalid
	}
	return nil
}

// Appended is signalled after an Append stored something, so the consumer
// can wait for data instead of polling. One signal may stand for several
// Appends.
func (b *Buffer) Appended() <-chan struct{} { return b.appended }

// Peek returns up to n of the oldest entries, oldest first, without
// removing them. It returns no entries when the buffer is empty.
func (b *Buffer) Peek(n int) ([]Entry, error) {
	var out []Entry
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
			points, body, err := decodeValue(v)
			if err != nil {
				return fmt.Errorf("entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
			// bbolt's memory is valid only inside the transaction.
			out = append(out, Entry{Seq: binary.BigEndian.Uint64(k), Body: append([]byte(nil), body...), Points: points})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("peek buffer %q: %w", b.path, err)
	}
	return out, nil
}

// Ack removes the entries with the given sequence numbers in one commit.
// Numbers not (or no longer) in the buffer are ignored, so acknowledging
// twice is harmless.
func (b *Buffer) Ack(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		entries, meta := tx.Bucket(bucketEntries), tx.Bucket(bucketMeta)
		var batches, points, bytes int64
		for _, seq := range seqs {
			k := seqKey(seq)
			v := entries.Get(k)
			if v == nil {
				continue
			}
			n, body, err := decodeValue(v)
			if err != nil {
				return fmt.Errorf("entry %d: %w", seq, err)
			}
			batches, points, bytes = batches+1, points+int64(n), bytes+int64(len(body))
			if err := entries.Delete(k); err != nil {
				return err
			}
		}
		return addMeta(meta, -batches, -points, -bytes)
	})
	if err != nil {
		return fmt.Errorf("ack buffer %q: %w", b.path, err)
	}
	return nil
}

// Pending returns the number of entries and points waiting for the uplink.
func (b *Buffer) Pending() (batches, points int64) {
	batches, points, _ = b.pending()
	return batches, points
}

// PendingBytes returns the compressed bytes waiting for the uplink.
func (b *Buffer) PendingBytes() int64 {
	_, _, bytes := b.pending()
	return bytes
}

func (b *Buffer) pending() (batches, points, bytes int64) {
	// Reading the meta bucket instead of keeping counters in memory keeps
	// the numbers exact: an Ack can commit before the Append whose entry it
	// removes has returned, and in-memory counters would dip below zero.
	_ = b.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		batches = int64(getUint(meta, keyBatches))
		points = int64(getUint(meta, keyPoints))
		bytes = int64(getUint(meta, keyBytes))
		return nil
	})
	return batches, points, bytes
}

// Close closes the file. Appends after Close fail.
func (b *Buffer) Close() error {
	b.enc.Close()
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close buffer %q: %w", b.path, err)
	}
	return nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func decodeValue(v []byte) (points int, body []byte, err error) {
	n, w := binary.Uvarint(v)
	if w <= 0 {
		return 0, nil, errors.New("corrupt entry header")
	}
	return int(n), v[w:], nil
}

func getUint(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putUint(b *bolt.Bucket, k []byte, v uint64) error {
	return b.Put(k, binary.BigEndian.AppendUint64(nil, v))
}

func addMeta(meta *bolt.Bucket, batches, points, bytes int64) error {
	for _, kv := range []struct {
		k []byte
		d int64
	}{{keyBatches, batches}, {keyPoints, points}, {keyBytes, bytes}} {
		if err := putUint(meta, kv.k, uint64(int64(getUint(meta, kv.k))+kv.d)); err != nil {
			return err
		}
	}
	return nil
}
