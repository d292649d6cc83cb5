package quarantine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the store's file inside the agent's data directory.
const FileName = "quarantine.db"

// Defaults.
const (
	DefaultMaxEntries    = 1000
	DefaultMaxBytes      = 16 << 20
	DefaultMaxEntryBytes = 1 << 20
	DefaultLockTimeout   = 200 * time.Millisecond
	maxReason            = 2048 // bytes of the reason kept
)

var (
	// ErrLocked is returned by Open when another process (a running
	// agent) holds the file.
	ErrLocked = errors.New("quarantine store is locked by another process")
	// ErrNotFound is returned by Get for an id the store does not hold.
	ErrNotFound = errors.New("no such quarantine entry")
	// ErrCorrupt is returned for an entry that cannot be decoded.
	ErrCorrupt = errors.New("corrupt quarantine entry")
)

var (
	bucketEntries = []byte("entries")
	bucketMeta    = []byte("meta")
	keyCount      = []byte("count")
	keyBytes      = []byte("bytes")
	keyEvicted    = []byte("evicted")
)

const entryVersion = 1

// Options bound the store. Zero values take the defaults.
type Options struct {
	MaxEntries    int           // entries kept; the oldest are evicted beyond it
	MaxBytes      int64         // encoded bytes kept; the oldest are evicted beyond it
	MaxEntryBytes int           // bytes of one payload kept; the rest is cut (Entry.Size keeps the length)
	LockTimeout   time.Duration // how long Open waits for another process's lock
	ReadOnly      bool
}

func (o *Options) fill() {
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxEntryBytes <= 0 {
		o.MaxEntryBytes = DefaultMaxEntryBytes
	}
	// One entry must always fit, or adding it would evict itself.
	o.MaxEntryBytes = int(min(int64(o.MaxEntryBytes), o.MaxBytes/2))
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
}

// Entry is one quarantined payload.
type Entry struct {
	ID     uint64    `json:"id"`
	Time   time.Time `json:"time"`
	Input  string    `json:"input"`  // the input's config path, e.g. inputs[0]
	Source string    `json:"source"` // where it came from, e.g. "mqtt sensors/d01/s0001/air"
	Reason string    `json:"reason"`
	Size   int       `json:"size"`          // the payload's length as received
	Raw    []byte    `json:"raw,omitempty"` // its first MaxEntryBytes bytes
}

// Truncated reports whether Raw holds less than the payload.
func (e Entry) Truncated() bool { return len(e.Raw) < e.Size }

// Stats describes the store.
type Stats struct {
	Entries int    `json:"entries"`
	Bytes   int64  `json:"bytes"`   // encoded bytes of the entries kept
	Evicted uint64 `json:"evicted"` // entries evicted to keep the bounds, ever
}

// Store is an open quarantine file. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	opts Options
	path string
}

// Open opens (creating if need be) the store at path.
func Open(path string, opts Options) (*Store, error) {
	opts.fill()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, ReadOnly: opts.ReadOnly, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open %q: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open quarantine %q: %w", path, err)
	}
	s := &Store{db: db, opts: opts, path: path}
	if !opts.ReadOnly {
		err = db.Update(func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucketIfNotExists(bucketEntries); err != nil {
				return err
			}
			_, err := tx.CreateBucketIfNotExists(bucketMeta)
			return err
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open quarantine %q: %w", path, err)
		}
	}
	return s, nil
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Add stores a payload and evicts the oldest entries beyond the bounds. It
// returns the new entry's id and how many entries it evicted, once the
// transaction is fsync'd. e.ID is ignored; a zero e.Time is now.
func (s *Store) Add(e Entry) (id uint64, evicted int, err error) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Size < len(e.Raw) {
		e.Size = len(e.Raw)
	}
	if len(e.Raw) > s.opts.MaxEntryBytes {
		e.Raw = e.Raw[:s.opts.MaxEntryBytes]
	}
	if len(e.Reason) > maxReason {
		e.Reason = e.Reason[:maxReason]
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, m := tx.Bucket(bucketEntries), tx.Bucket(bucketMeta)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		id = seq
		v := encode(e)
		if err := b.Put(key(id), v); err != nil {
			return err
		}
		count, size := getU64(m, keyCount)+1, getU64(m, keyBytes)+uint64(len(v))
		c := b.Cursor()
		for k, old := c.First(); k != nil && (count > uint64(s.opts.MaxEntries) || size > uint64(s.opts.MaxBytes)); k, old = c.First() {
			if binary.BigEndian.Uint64(k) == id {
				break // never the entry just added
			}
			size -= min(size, uint64(len(old)))
			count--
			if err := c.Delete(); err != nil {
				return err
			}
			evicted++
		}
		if evicted > 0 {
			if err := putU64(m, keyEvicted, getU64(m, keyEvicted)+uint64(evicted)); err != nil {
				return err
			}
		}
		if err := putU64(m, keyCount, count); err != nil {
			return err
		}
		return putU64(m, keyBytes, size)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("quarantine add: %w", err)
	}
	return id, evicted, nil
}

// List returns the entries oldest first, without their bytes.
func (s *Store) List() ([]Entry, error) {
	out := []Entry{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			e, err := decode(binary.BigEndian.Uint64(k), v, false)
			if err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// Get returns one entry with its bytes.
func (s *Store) Get(id uint64) (Entry, error) {
	var e Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		var v []byte
		if b != nil {
			v = b.Get(key(id))
		}
		if v == nil {
			return fmt.Errorf("%w: %d", ErrNotFound, id)
		}
		var err error
		e, err = decode(id, v, true)
		return err
	})
	return e, err
}

// Purge deletes the entries quarantined before t (all of them when t is
// zero) and returns how many it deleted.
func (s *Store) Purge(before time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, m := tx.Bucket(bucketEntries), tx.Bucket(bucketMeta)
		count, size := getU64(m, keyCount), getU64(m, keyBytes)
		var doomed [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if !before.IsZero() {
				if e, err := decode(0, v, false); err == nil && !e.Time.Before(before) {
					return nil
				}
			}
			doomed = append(doomed, bytes.Clone(k))
			count, size = count-min(count, 1), size-min(size, uint64(len(v)))
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range doomed {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(doomed)
		if err := putU64(m, keyCount, count); err != nil {
			return err
		}
		return putU64(m, keyBytes, size)
	})
	if err != nil {
		return 0, fmt.Errorf("quarantine purge: %w", err)
	}
	return n, nil
}

// Stats returns the store's counts.
func (s *Store) Stats() (Stats, error) {
	var st Stats
	err := s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return nil
		}
		st = Stats{Entries: int(getU64(m, keyCount)), Bytes: int64(getU64(m, keyBytes)), Evicted: getU64(m, keyEvicted)}
		return nil
	})
	return st, err
}

func key(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	if b == nil {
		return 0
	}
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putU64(b *bolt.Bucket, k []byte, v uint64) error {
	return b.Put(k, binary.BigEndian.AppendUint64(nil, v))
}

// encode lays an entry out as: version, time (ns, 8 bytes), size, then
// input, source and reason each prefixed by its length (uvarints), then the
// raw bytes to the end.
func encode(e Entry) []byte {
	v := make([]byte, 0, 1+8+4*binary.MaxVarintLen64+len(e.Input)+len(e.Source)+len(e.Reason)+len(e.Raw))
	v = append(v, entryVersion)
	v = binary.BigEndian.AppendUint64(v, uint64(e.Time.UnixNano()))
	v = binary.AppendUvarint(v, uint64(e.Size))
	for _, s := range []string{e.Input, e.Source, e.Reason} {
		v = binary.AppendUvarint(v, uint64(len(s)))
		v = append(v, s...)
	}
	return append(v, e.Raw...)
}

func decode(id uint64, v []byte, withRaw bool) (Entry, error) {
	bad := func(what string) (Entry, error) { return Entry{}, fmt.Errorf("%w %d: %s", ErrCorrupt, id, what) }
	if len(v) < 9 || v[0] != entryVersion {
		return bad("unknown version")
	}
	e := Entry{ID: id, Time: time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC()}
	r := bytes.NewReader(v[9:])
	size, err := binary.ReadUvarint(r)
	if err != nil || size > 1<<40 {
		return bad("size")
	}
	e.Size = int(size)
	var strs [3]string
	for i := range strs {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > uint64(r.Len()) {
			return bad("length")
		}
		off := len(v) - r.Len()
		strs[i] = string(v[off : off+int(n)])
		_, _ = r.Seek(int64(n), 1)
	}
	e.Input, e.Source, e.Reason = strs[0], strs[1], strs[2]
	if withRaw {
		off := len(v) - r.Len()
		e.Raw = bytes.Clone(v[off:])
	}
	return e, nil
}
