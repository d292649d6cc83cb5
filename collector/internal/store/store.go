package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/protocols"
)

var (
	bucketSeries   = []byte("series")
	bucketStations = []byte("stations")
)

// ErrTooManyPoints is returned by Select when the answer would hold more
// points than Selector.MaxPoints.
var ErrTooManyPoints = errors.New("too many points")

// ErrAmbiguousField is returned (wrapped in an *AmbiguousFieldError) by
// Select when no measurement is given and the field exists in more than one.
var ErrAmbiguousField = errors.New("field exists in more than one measurement")

// AmbiguousFieldError names the measurements that share a field.
type AmbiguousFieldError struct {
	Field        string
	Measurements []string // sorted
}

func (e *AmbiguousFieldError) Error() string {
	return fmt.Sprintf("field %q exists in measurements %s; name one with measurement=", e.Field, strings.Join(e.Measurements, ", "))
}

// Unwrap makes errors.Is(err, ErrAmbiguousField) true.
func (e *AmbiguousFieldError) Unwrap() error { return ErrAmbiguousField }

// Store is a time-series store in one bbolt file. It is safe for concurrent
// use: bbolt serialises writers and lets readers run beside them.
type Store struct {
	db  *bolt.DB
	log *slog.Logger
}

// Open opens or creates the store file at path. A nil log discards.
func Open(path string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = cli.Discard()
	}
	// The timeout turns a second process on the same file (bbolt holds an
	// exclusive flock) into an error instead of a silent hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketSeries, bucketStations} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %q: create buckets: %w", path, err)
	}
	return &Store{db: db, log: log}, nil
}

// Close closes the file. Calls after Close fail.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %q: %w", s.db.Path(), err)
	}
	return nil
}

// Write stores every field of every point in one transaction that is fsync'd
// before Write returns, and updates the stations index. It returns how many
// points were stored. Points that fail protocols.Point.Validate are skipped
// and logged (they cannot come from the decoder); an error means nothing of
// this call was stored.
func (s *Store) Write(pts []protocols.Point) (int, error) {
	if len(pts) == 0 {
		return 0, nil
	}
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		series := tx.Bucket(bucketSeries)
		// A batch writes many points of the same few series; looking each
		// bucket up once per transaction saves a B+tree descent per value.
		buckets := map[string]*bolt.Bucket{}
		stations := map[string]*stationRecord{}
		var tk [8]byte // Put copies keys, so one buffer serves every key
		var key []byte
		// bbolt keeps a reference to every value until the transaction
		// ends, so values go into an arena that is only ever appended to:
		// a slice handed to Put is never written again, even when the
		// arena grows into a new array.
		arena := make([]byte, 0, 16*len(pts))
		for i := range pts {
			p := &pts[i]
			if err := p.Validate(); err != nil {
				s.log.Warn("store: skipping invalid point", "err", err)
				continue
			}
			putTime(tk[:], p.Time)
			for _, f := range p.Fields {
				key = p.AppendSeriesKey(key[:0], f.Key)
				b := buckets[string(key)]
				if b == nil {
					var err error
					if b, err = series.CreateBucketIfNotExists(key); err != nil {
						return fmt.Errorf("series %q: %w", key, err)
					}
					buckets[string(key)] = b
				}
				start := len(arena)
				arena = appendValue(arena, f.Value)
				if err := b.Put(tk[:], arena[start:len(arena):len(arena)]); err != nil {
					return fmt.Errorf("series %q: %w", key, err)
				}
			}
			if err := noteStation(tx, stations, p); err != nil {
				return err
			}
			n++
		}
		sb := tx.Bucket(bucketStations)
		for id, rec := range stations {
			data, err := json.Marshal(rec)
			if err != nil {
				return fmt.Errorf("station %q: %w", id, err)
			}
			if err := sb.Put([]byte(id), data); err != nil {
				return fmt.Errorf("station %q: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("write %d points: %w", len(pts), err)
	}
	return n, nil
}

// stationRecord is the JSON kept in the stations bucket.
type stationRecord struct {
	District     string   `json:"district,omitempty"`
	Measurements []string `json:"measurements"`
	LastSeen     int64    `json:"last_seen"` // ns
	Lat          *float64 `json:"lat,omitempty"`
	Lon          *float64 `json:"lon,omitempty"`
	PosTime      int64    `json:"pos_time,omitempty"` // ns of the position, so an old replay cannot move a station back
}

// noteStation folds a point that carries a station tag into the index,
// loading the station's record on first sight within the transaction.
func noteStation(tx *bolt.Tx, recs map[string]*stationRecord, p *protocols.Point) error {
	id, ok := p.Tag("station")
	if !ok || id == "" {
		return nil
	}
	rec := recs[id]
	if rec == nil {
		rec = &stationRecord{}
		if data := tx.Bucket(bucketStations).Get([]byte(id)); data != nil {
			if err := json.Unmarshal(data, rec); err != nil {
				return fmt.Errorf("station %q: corrupt index entry: %w", id, err)
			}
		}
		recs[id] = rec
	}
	if p.Time >= rec.LastSeen {
		rec.LastSeen = p.Time
		if d, ok := p.Tag("district"); ok {
			rec.District = d
		}
	}
	if i, found := slices.BinarySearch(rec.Measurements, p.Measurement); !found {
		rec.Measurements = slices.Insert(rec.Measurements, i, p.Measurement)
	}
	if p.Measurement == "station" && (rec.Lat == nil || p.Time >= rec.PosTime) {
		lat, okLat := p.Field("lat")
		lon, okLon := p.Field("lon")
		la, okA := lat.AsFloat()
		lo, okO := lon.AsFloat()
		if okLat && okLon && okA && okO {
			rec.Lat, rec.Lon, rec.PosTime = &la, &lo, p.Time
		}
	}
	return nil
}

// putTime writes t so that bytes compare like the signed times do.
func putTime(dst []byte, t int64) {
	binary.BigEndian.PutUint64(dst, uint64(t)^(1<<63))
}

func getTime(src []byte) int64 {
	return int64(binary.BigEndian.Uint64(src) ^ (1 << 63))
}

func appendValue(dst []byte, v protocols.Value) []byte {
	dst = append(dst, byte(v.Kind()))
	switch v.Kind() {
	case protocols.KindFloat:
		return binary.BigEndian.AppendUint64(dst, math.Float64bits(v.FloatV()))
	case protocols.KindInt:
		return binary.BigEndian.AppendUint64(dst, uint64(v.IntV()))
	case protocols.KindUint:
		return binary.BigEndian.AppendUint64(dst, v.UintV())
	case protocols.KindBool:
		var b uint64
		if v.BoolV() {
			b = 1
		}
		return binary.BigEndian.AppendUint64(dst, b)
	case protocols.KindString:
		return append(dst, v.StringV()...)
	}
	return dst
}

func decodeValue(src []byte) (protocols.Value, error) {
	if len(src) == 0 {
		return protocols.Value{}, errors.New("empty value")
	}
	kind, rest := protocols.Kind(src[0]), src[1:]
	if kind == protocols.KindString {
		return protocols.String(string(rest)), nil
	}
	if len(rest) != 8 {
		return protocols.Value{}, fmt.Errorf("%s value of %d bytes, want 8", kind, len(rest))
	}
	u := binary.BigEndian.Uint64(rest)
	switch kind {
	case protocols.KindFloat:
		return protocols.Float(math.Float64frombits(u)), nil
	case protocols.KindInt:
		return protocols.Int(int64(u)), nil
	case protocols.KindUint:
		return protocols.Uint(u), nil
	case protocols.KindBool:
		return protocols.Bool(u != 0), nil
	}
	return protocols.Value{}, fmt.Errorf("unknown value kind %d", kind)
}

// Selector picks series for Select.
type Selector struct {
	// Measurement may be empty when Field exists in one measurement only.
	Measurement string
	// Field is required.
	Field string
	// Tags must all be present with exactly these values; other tags of
	// the series are free.
	Tags map[string]string
	// MaxPoints bounds the answer: more matching points make Select fail
	// with ErrTooManyPoints instead of building an unbounded reply. Zero
	// means no bound.
	MaxPoints int
}

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

// Select returns the samples of every series matching sel with from <= time
// <= to (both bounds inclusive, in ns), series ordered by series key. Series
// without samples in the range are left out. When sel.Measurement is empty
// and sel.Field exists in more than one measurement, whatever the tags, the
// error is an *AmbiguousFieldError: the answer would otherwise change as
// soon as a second measurement grows that field.
func (s *Store) Select(sel Selector, from, to int64) ([]Series, error) {
	if sel.Field == "" {
		return nil, errors.New("select: no field")
	}
	var out []Series
	err := s.db.View(func(tx *bolt.Tx) error {
		series := tx.Bucket(bucketSeries)
		var lo, hi [8]byte
		putTime(lo[:], from)
		putTime(hi[:], to)
		measurements := map[string]bool{}
		total := 0
		err := series.ForEachBucket(func(name []byte) error {
			m, tags, field, err := protocols.ParseSeriesKey(string(name))
			if err != nil {
				s.log.Warn("store: skipping unreadable series key", "key", string(name), "err", err)
				return nil
			}
			if field != sel.Field || (sel.Measurement != "" && m != sel.Measurement) {
				return nil
			}
			measurements[m] = true
			if !tagsMatch(tags, sel.Tags) || from > to {
				return nil
			}
			var samples []Sample
			c := series.Bucket(name).Cursor()
			for k, v := c.Seek(lo[:]); k != nil && bytes.Compare(k, hi[:]) <= 0; k, v = c.Next() {
				val, err := decodeValue(v)
				if err != nil {
					return fmt.Errorf("series %q at %d: %w", name, getTime(k), err)
				}
				if total++; sel.MaxPoints > 0 && total > sel.MaxPoints {
					return fmt.Errorf("%w: more than %d", ErrTooManyPoints, sel.MaxPoints)
				}
				samples = append(samples, Sample{Time: getTime(k), Value: val})
			}
			if len(samples) > 0 {
				out = append(out, Series{Measurement: m, Field: field, Tags: tags, Samples: samples})
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(measurements) > 1 {
			ms := make([]string, 0, len(measurements))
			for m := range measurements {
				ms = append(ms, m)
			}
			slices.Sort(ms)
			return &AmbiguousFieldError{Field: sel.Field, Measurements: ms}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("select %q: %w", sel.Field, err)
	}
	return out, nil
}

func tagsMatch(tags []protocols.Tag, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, t := range tags {
			if t.Key == k {
				found = t.Value == v
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Station is one entry of the stations index.
type Station struct {
	ID           string
	District     string   // empty when no point carried a district tag
	Measurements []string // sorted
	LastSeen     int64    // ns of the newest point seen
	HasPosition  bool
	Lat, Lon     float64 // from the newest `station` point with lat and lon
}

// Stations returns every station seen, sorted by id.
func (s *Store) Stations() ([]Station, error) {
	var out []Station
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStations).ForEach(func(k, v []byte) error {
			var rec stationRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("station %q: corrupt index entry: %w", k, err)
			}
			st := Station{ID: string(k), District: rec.District, Measurements: rec.Measurements, LastSeen: rec.LastSeen}
			if rec.Lat != nil && rec.Lon != nil {
				st.HasPosition, st.Lat, st.Lon = true, *rec.Lat, *rec.Lon
			}
			out = append(out, st)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list stations: %w", err)
	}
	return out, nil
}
