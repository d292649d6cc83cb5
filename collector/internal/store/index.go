package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/citysense/citysense/protocols"
)

// The index file, index.db, holds what every partition refers to:
//
//   - "series": the series created by one write of the index, as one
//     zstd-compressed value under the first one's id (4 bytes big endian):
//     per series its group id and its key (protocols.SeriesKey form), both
//     uvarint length-prefixed. Ids are dense and never reused. A city's
//     keys differ in a few characters; compressed together they take a
//     tenth of the space of a key apiece.
//   - "groups": group id → measurement and field (uvarint length-prefixed
//     measurement, then the field). A group is one measurement+field; its
//     series share blocks.
//   - "stations": under the one key "all", every station as a JSON object
//     keyed by station id (district, measurements, last seen, position),
//     zstd-compressed. Rewritten whole when a station changes: a thousand
//     stations take about 20 kB that way, and one value rewritten leaves
//     bbolt no half-empty pages behind.
//
// At Open the whole index is loaded into memory: the key → id map that
// every write needs, and the postings (group → ids, tag=value → ids) that
// selectors use. Postings are derived from the keys rather than stored: they
// would double the index's writes and take as long to load as to rebuild.
var (
	bucketSeries   = []byte("series")
	bucketGroups   = []byte("groups")
	bucketStations = []byte("stations")
	bucketMeta     = []byte("meta")
)

type seriesMeta struct {
	gid  uint32
	tags []protocols.Tag
}

type groupMeta struct {
	measurement, field string
}

type tagPair struct{ k, v string }

// tagSet is the series of one measurement and tag set: one per field. A
// write finds them with one map lookup per point, by a key built without
// the escaping of the canonical series key (which costs more than the rest
// of a write).
type tagSet struct {
	fields []fieldRef

	// The station this tag set's points are about, found on its first
	// point, so that the stations index costs a write nothing per point.
	seen     bool
	station  *stationRecord // nil without a station tag
	district string
}

type fieldRef struct {
	field   string
	id, gid uint32

	// The head series this field last wrote to, and the window it is in:
	// the common case of the next point going to the same window skips
	// the window's map.
	win uint64
	hs  *headSeries
}

// appendSetKey appends an unambiguous key for p's measurement and tags.
func appendSetKey(dst []byte, p *protocols.Point) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(p.Measurement)))
	dst = append(dst, p.Measurement...)
	for _, t := range p.Tags {
		dst = binary.AppendUvarint(dst, uint64(len(t.Key)))
		dst = append(dst, t.Key...)
		dst = binary.AppendUvarint(dst, uint64(len(t.Value)))
		dst = append(dst, t.Value...)
	}
	return dst
}

type index struct {
	db    *bolt.DB
	codec *codec

	mu          sync.RWMutex
	sets        map[string]*tagSet // by setKey: measurement and tags
	series      []seriesMeta       // by id; id 0 is never used
	groups      []groupMeta        // by gid; gid 0 is never used
	groupByName map[groupMeta]uint32
	byGroup     map[uint32][]uint32 // ascending ids
	byTag       map[tagPair][]uint32

	// What the file already holds; the rest is written by persist.
	savedSeries, savedGroups int

	stations map[string]*stationRecord
	dirty    map[string]bool
}

func openIndex(path string, opts *bolt.Options, cd *codec) (*index, error) {
	db, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		return nil, fmt.Errorf("open index %q: %w", path, err)
	}
	ix := &index{
		db:          db,
		codec:       cd,
		sets:        map[string]*tagSet{},
		series:      []seriesMeta{{}},
		groups:      []groupMeta{{}},
		groupByName: map[groupMeta]uint32{},
		byGroup:     map[uint32][]uint32{},
		byTag:       map[tagPair][]uint32{},
		stations:    map[string]*stationRecord{},
		dirty:       map[string]bool{},
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketSeries, bucketGroups, bucketStations, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = db.View(ix.load)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open index %q: %w", path, err)
	}
	return ix, nil
}

func (ix *index) load(tx *bolt.Tx) error {
	err := tx.Bucket(bucketGroups).ForEach(func(k, v []byte) error {
		gid := binary.BigEndian.Uint32(k)
		if int(gid) != len(ix.groups) {
			return fmt.Errorf("group id %d out of sequence (want %d)", gid, len(ix.groups))
		}
		r := reader{b: v}
		m := string(r.bytes(r.uvarint()))
		if r.err != nil {
			return fmt.Errorf("group %d: %w", gid, r.err)
		}
		g := groupMeta{measurement: m, field: string(r.b)}
		ix.groups = append(ix.groups, g)
		ix.groupByName[g] = gid
		return nil
	})
	if err != nil {
		return err
	}
	err = tx.Bucket(bucketSeries).ForEach(func(k, v []byte) error {
		if len(k) != 4 || int(binary.BigEndian.Uint32(k)) != len(ix.series) {
			return fmt.Errorf("series batch %x out of sequence (want id %d)", k, len(ix.series))
		}
		raw, err := ix.codec.dec.DecodeAll(v, nil)
		if err != nil {
			return fmt.Errorf("series batch %x: %w", k, err)
		}
		r := reader{b: raw}
		for len(r.b) > 0 && r.err == nil {
			id := len(ix.series)
			gid := uint32(r.uvarint())
			key := string(r.bytes(r.uvarint()))
			if r.err != nil {
				return fmt.Errorf("series %d: %w", id, r.err)
			}
			if gid == 0 || int(gid) >= len(ix.groups) {
				return fmt.Errorf("series %d: unknown group %d", id, gid)
			}
			m, tags, field, err := protocols.ParseSeriesKey(key)
			if err != nil {
				return fmt.Errorf("series %d: %w", id, err)
			}
			if g := ix.groups[gid]; g.measurement != m || g.field != field {
				return fmt.Errorf("series %d: key %q does not belong to group %d (%s %s)", id, key, gid, g.measurement, g.field)
			}
			p := protocols.Point{Measurement: m, Tags: tags}
			ix.add(string(appendSetKey(nil, &p)), field, gid, tags)
		}
		return r.err
	})
	if err != nil {
		return err
	}
	ix.savedSeries, ix.savedGroups = len(ix.series), len(ix.groups)
	v := tx.Bucket(bucketStations).Get(keyAllStations)
	if v == nil {
		return nil
	}
	raw, err := ix.codec.dec.DecodeAll(v, nil)
	if err != nil {
		return fmt.Errorf("stations: %w", err)
	}
	if err := json.Unmarshal(raw, &ix.stations); err != nil {
		return fmt.Errorf("stations: corrupt index entry: %w", err)
	}
	for id, rec := range ix.stations {
		rec.id, rec.savedSeen = id, rec.LastSeen
	}
	return nil
}

var keyAllStations = []byte("all")

// add registers a series in memory; ix.mu must be held for writing.
func (ix *index) add(setKey, field string, gid uint32, tags []protocols.Tag) uint32 {
	id := uint32(len(ix.series))
	ix.series = append(ix.series, seriesMeta{gid: gid, tags: tags})
	ts := ix.sets[setKey]
	if ts == nil {
		ts = &tagSet{}
		ix.sets[setKey] = ts
	}
	ts.fields = append(ts.fields, fieldRef{field: field, id: id, gid: gid})
	ix.byGroup[gid] = append(ix.byGroup[gid], id)
	for _, t := range tags {
		tp := tagPair{t.Key, t.Value}
		ix.byTag[tp] = append(ix.byTag[tp], id)
	}
	return id
}

// resolve returns the tag set of p, to be passed to field; key is scratch
// space. ix.mu must be held for writing.
func (ix *index) resolve(p *protocols.Point, key []byte) (*tagSet, []byte) {
	key = appendSetKey(key[:0], p)
	ts := ix.sets[string(key)]
	if ts == nil {
		ts = &tagSet{}
		ix.sets[string(key)] = ts
	}
	return ts, key
}

// field returns field f of the point whose tag set is ts, creating the
// series when new; j is f's position in the point, where a writer that
// sends its fields in the same order each time finds it at once. ix.mu
// must be held for writing; the pointer is valid until the next call.
func (ix *index) field(ts *tagSet, p *protocols.Point, j int, f string) *fieldRef {
	if j < len(ts.fields) && ts.fields[j].field == f {
		return &ts.fields[j]
	}
	for i := range ts.fields {
		if ts.fields[i].field == f {
			return &ts.fields[i]
		}
	}
	g := groupMeta{measurement: p.Measurement, field: f}
	gid, ok := ix.groupByName[g]
	if !ok {
		g = groupMeta{measurement: strings.Clone(p.Measurement), field: strings.Clone(f)}
		gid = uint32(len(ix.groups))
		ix.groups = append(ix.groups, g)
		ix.groupByName[g] = gid
	}
	// Copies, so that the index does not pin the decoder's buffers.
	tags := make([]protocols.Tag, len(p.Tags))
	for i, t := range p.Tags {
		tags[i] = protocols.Tag{Key: strings.Clone(t.Key), Value: strings.Clone(t.Value)}
	}
	id := uint32(len(ix.series))
	ix.series = append(ix.series, seriesMeta{gid: gid, tags: tags})
	ts.fields = append(ts.fields, fieldRef{field: strings.Clone(f), id: id, gid: gid})
	ix.byGroup[gid] = append(ix.byGroup[gid], id)
	for _, t := range tags {
		tp := tagPair{t.Key, t.Value}
		ix.byTag[tp] = append(ix.byTag[tp], id)
	}
	return &ts.fields[len(ts.fields)-1]
}

// persist writes the series, groups and stations that are only in memory,
// in one fsync'd transaction. It must run before any block that refers to
// a new series id is committed, so that a crash never leaves a block whose
// id means nothing (or, worse, is later given to another series).
func (ix *index) persist() error {
	ix.mu.RLock()
	nSeries, nGroups := len(ix.series), len(ix.groups)
	if nSeries == ix.savedSeries && nGroups == ix.savedGroups && len(ix.dirty) == 0 {
		ix.mu.RUnlock()
		return nil
	}
	type kv struct{ k, v []byte }
	var groups, series, stations []kv
	for gid := ix.savedGroups; gid < nGroups; gid++ {
		g := ix.groups[gid]
		v := binary.AppendUvarint(nil, uint64(len(g.measurement)))
		v = append(append(v, g.measurement...), g.field...)
		groups = append(groups, kv{binary.BigEndian.AppendUint32(nil, uint32(gid)), v})
	}
	if nSeries > ix.savedSeries {
		var rec, key []byte
		for id := ix.savedSeries; id < nSeries; id++ {
			sm := ix.series[id]
			g := ix.groups[sm.gid]
			p := protocols.Point{Measurement: g.measurement, Tags: sm.tags}
			key = p.AppendSeriesKey(key[:0], g.field)
			rec = binary.AppendUvarint(rec, uint64(sm.gid))
			rec = binary.AppendUvarint(rec, uint64(len(key)))
			rec = append(rec, key...)
		}
		series = append(series, kv{binary.BigEndian.AppendUint32(nil, uint32(ix.savedSeries)), ix.codec.enc.EncodeAll(rec, nil)})
	}
	ix.mu.RUnlock()
	// Stations change under the write lock (Append), so they are encoded
	// under it and marked clean; a failed commit marks them dirty again.
	ix.mu.Lock()
	dirty := make([]string, 0, len(ix.dirty))
	if len(ix.dirty) > 0 {
		for id := range ix.dirty {
			ix.stations[id].savedSeen = ix.stations[id].LastSeen
			dirty = append(dirty, id)
		}
		data, err := json.Marshal(ix.stations)
		if err != nil {
			ix.mu.Unlock()
			return fmt.Errorf("stations: %w", err)
		}
		stations = append(stations, kv{keyAllStations, ix.codec.enc.EncodeAll(data, nil)})
		clear(ix.dirty)
	}
	ix.mu.Unlock()

	err := ix.db.Update(func(tx *bolt.Tx) error {
		for _, b := range []struct {
			name   []byte
			kvs    []kv
			append bool
		}{{bucketGroups, groups, true}, {bucketSeries, series, true}, {bucketStations, stations, false}} {
			bk := tx.Bucket(b.name)
			if b.append {
				bk.FillPercent = 1 // ids only ever grow: pack pages full
			}
			for _, e := range b.kvs {
				if err := bk.Put(e.k, e.v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		ix.mu.Lock()
		for _, id := range dirty {
			ix.dirty[id] = true
		}
		ix.mu.Unlock()
		return fmt.Errorf("persist index: %w", err)
	}
	ix.mu.Lock()
	ix.savedSeries, ix.savedGroups = nSeries, nGroups
	ix.mu.Unlock()
	return nil
}

// touchSeen marks the stations whose last seen time moved since it was
// written, so that the next persist writes it; a clean close wants it exact.
func (ix *index) touchSeen() {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for id, rec := range ix.stations {
		if rec.LastSeen != rec.savedSeen {
			ix.dirty[id] = true
		}
	}
}

// lookup returns the refs selected by sel, sorted by id.
func (ix *index) lookup(sel Selector) ([]SeriesRef, error) {
	if sel.Field == "" {
		return nil, fmt.Errorf("select: no field")
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var gids []uint32
	var ms []string
	for gid := 1; gid < len(ix.groups); gid++ {
		g := ix.groups[gid]
		if g.field != sel.Field {
			continue
		}
		ms = append(ms, g.measurement)
		if sel.Measurement == "" || sel.Measurement == g.measurement {
			gids = append(gids, uint32(gid))
		}
	}
	if sel.Measurement == "" && len(ms) > 1 {
		slices.Sort(ms)
		return nil, &AmbiguousFieldError{Field: sel.Field, Measurements: ms}
	}
	matchers := sel.matchers()
	var out []SeriesRef
	for _, gid := range gids {
		ids := ix.byGroup[gid]
		// Narrow by the postings of equality matchers first: a station
		// selects a handful of series out of a city's.
		for _, m := range matchers {
			if m.Op == MatchEqual && m.Value != "" {
				ids = intersect(ids, ix.byTag[tagPair{m.Name, m.Value}])
			}
		}
		g := ix.groups[gid]
		for _, id := range ids {
			sm := &ix.series[id]
			if !tagsMatch(sm.tags, matchers) {
				continue
			}
			if sel.MaxSeries > 0 && len(out) >= sel.MaxSeries {
				return nil, fmt.Errorf("%w: more than %d", ErrTooManySeries, sel.MaxSeries)
			}
			out = append(out, SeriesRef{id: id, gid: gid, Measurement: g.measurement, Field: g.field, Tags: sm.tags})
		}
	}
	return out, nil
}

func intersect(a, b []uint32) []uint32 {
	out := make([]uint32, 0, min(len(a), len(b)))
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}

// stationRecord is the JSON kept in the stations bucket.
type stationRecord struct {
	District     string   `json:"district,omitempty"`
	Measurements []string `json:"measurements"`
	LastSeen     int64    `json:"last_seen"` // ns
	Lat          *float64 `json:"lat,omitempty"`
	Lon          *float64 `json:"lon,omitempty"`
	PosTime      int64    `json:"pos_time,omitempty"` // ns of the position, so an old replay cannot move a station back

	id        string // the map key, owned by the index
	savedSeen int64  // LastSeen as last written
}

// noteStation folds a point whose tag set is ts into the stations index.
// The station, its district and the measurement are a matter of the tag
// set, looked up on its first point; per point only the last-seen time
// moves. ix.mu must be held for writing.
func (ix *index) noteStation(ts *tagSet, p *protocols.Point) {
	changed := false
	if !ts.seen {
		ts.seen = true
		id, ok := p.Tag("station")
		if !ok || id == "" {
			return
		}
		rec := ix.stations[id]
		if rec == nil {
			rec = &stationRecord{id: strings.Clone(id)}
			ix.stations[rec.id] = rec
		}
		ts.station = rec
		if d, ok := p.Tag("district"); ok {
			ts.district = strings.Clone(d)
		}
		if i, found := slices.BinarySearch(rec.Measurements, p.Measurement); !found {
			rec.Measurements = slices.Insert(rec.Measurements, i, strings.Clone(p.Measurement))
			changed = true
		}
	}
	rec := ts.station
	if rec == nil {
		return
	}
	if p.Time >= rec.LastSeen {
		rec.LastSeen = p.Time
		// Last seen moves with every point; writing it back each flush
		// would rewrite every station's record all the time, and bbolt's
		// copy-on-write would leave the old pages behind as free space.
		// It is written when it moved a day, and at a clean close; after a
		// crash the station's next point moves it on.
		if rec.LastSeen >= rec.savedSeen+int64(24*time.Hour) {
			changed = true
		}
		if ts.district != "" && ts.district != rec.District {
			rec.District, changed = ts.district, true
		}
	}
	if p.Measurement == "station" && (rec.Lat == nil || p.Time >= rec.PosTime) {
		lat, okLat := p.Field("lat")
		lon, okLon := p.Field("lon")
		la, okA := lat.AsFloat()
		lo, okO := lon.AsFloat()
		if okLat && okLon && okA && okO {
			rec.Lat, rec.Lon, rec.PosTime = &la, &lo, p.Time
			changed = true
		}
	}
	if changed {
		ix.dirty[rec.id] = true
	}
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

func (ix *index) stationList() []Station {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]Station, 0, len(ix.stations))
	for id, rec := range ix.stations {
		st := Station{ID: id, District: rec.District, Measurements: slices.Clone(rec.Measurements), LastSeen: rec.LastSeen}
		if rec.Lat != nil && rec.Lon != nil {
			st.HasPosition, st.Lat, st.Lon = true, *rec.Lat, *rec.Lon
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Station) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (ix *index) close() error { return ix.db.Close() }
