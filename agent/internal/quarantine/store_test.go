package quarantine

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func openTemp(t *testing.T, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func ids(es []Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func TestStore_Add_roundTrip(t *testing.T) {
	s, _ := openTemp(t, Options{})
	raw := []byte("{\"pm25\": 12,\x00\xff broken\n")
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	id, ev, err := s.Add(Entry{Time: at, Input: "inputs[0]", Source: "mqtt a/b", Reason: "json: bad", Raw: raw})
	if err != nil || id != 1 || ev != 0 {
		t.Fatalf("Add = %d, %d, %v", id, ev, err)
	}
	e, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{ID: 1, Time: at, Input: "inputs[0]", Source: "mqtt a/b", Reason: "json: bad", Size: len(raw), Raw: raw}
	if fmt.Sprint(e) != fmt.Sprint(want) || !bytes.Equal(e.Raw, raw) || e.Truncated() {
		t.Fatalf("Get = %+v\nwant %+v", e, want)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Raw != nil || list[0].Size != len(raw) || list[0].Source != "mqtt a/b" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if _, err := s.Get(2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(2) = %v, want ErrNotFound", err)
	}
	// An empty payload is kept too: an empty message is still a message.
	id, _, err = s.Add(Entry{Source: "coap /x", Reason: "empty"})
	if e, gerr := s.Get(id); err != nil || gerr != nil || e.Size != 0 || len(e.Raw) != 0 || e.Time.IsZero() {
		t.Fatalf("empty entry %+v, %v, %v", e, err, gerr)
	}
}

func TestStore_Add_evictsByCount(t *testing.T) {
	s, path := openTemp(t, Options{MaxEntries: 3})
	total := 0
	for i := range 5 {
		_, ev, err := s.Add(Entry{Source: "s", Raw: []byte{byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		total += ev
	}
	list, _ := s.List()
	if fmt.Sprint(ids(list)) != "[3 4 5]" || total != 2 {
		t.Fatalf("ids %v, evicted %d; want [3 4 5], 2", ids(list), total)
	}
	st, _ := s.Stats()
	if st.Entries != 3 || st.Evicted != 2 {
		t.Fatalf("stats %+v", st)
	}
	// The counts survive a restart, and ids keep increasing.
	s.Close()
	s2, err := Open(path, Options{MaxEntries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	id, _, _ := s2.Add(Entry{Source: "s"})
	st, _ = s2.Stats()
	if id != 6 || st.Entries != 3 || st.Evicted != 3 {
		t.Fatalf("after reopen: id %d, stats %+v", id, st)
	}
}

func TestStore_Add_evictsByBytes(t *testing.T) {
	s, _ := openTemp(t, Options{MaxBytes: 1000})
	for range 10 {
		if _, _, err := s.Add(Entry{Source: "s", Raw: bytes.Repeat([]byte("x"), 300)}); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := s.Stats()
	list, _ := s.List()
	// Each entry encodes to a little over 300 bytes: three fit in 1000.
	if st.Entries != 3 || len(list) != 3 || st.Evicted != 7 || st.Bytes > 1000 || list[0].ID != 8 {
		t.Fatalf("stats %+v, ids %v", st, ids(list))
	}
}

func TestStore_Add_truncatesLargePayload(t *testing.T) {
	s, _ := openTemp(t, Options{MaxEntryBytes: 100})
	raw := bytes.Repeat([]byte("0123456789"), 50)
	id, _, err := s.Add(Entry{Source: "http /write", Raw: raw})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := s.Get(id)
	if !bytes.Equal(e.Raw, raw[:100]) || e.Size != 500 || !e.Truncated() {
		t.Fatalf("kept %d of %d bytes, truncated %v", len(e.Raw), e.Size, e.Truncated())
	}
}

func TestStore_Purge(t *testing.T) {
	s, _ := openTemp(t, Options{})
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range 6 {
		if _, _, err := s.Add(Entry{Time: t0.Add(time.Duration(i) * time.Hour), Source: "s", Raw: []byte("abc")}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Purge(t0.Add(2 * time.Hour))
	list, _ := s.List()
	if err != nil || n != 2 || fmt.Sprint(ids(list)) != "[3 4 5 6]" {
		t.Fatalf("Purge(before 02:00) = %d, %v; left %v", n, err, ids(list))
	}
	n, err = s.Purge(time.Time{})
	st, _ := s.Stats()
	list, _ = s.List()
	if err != nil || n != 4 || len(list) != 0 || st.Entries != 0 || st.Bytes != 0 {
		t.Fatalf("Purge(all) = %d, %v; left %v, stats %+v", n, err, ids(list), st)
	}
}

func TestOpen_lockedByAnother(t *testing.T) {
	_, path := openTemp(t, Options{})
	_, err := Open(path, Options{LockTimeout: 50 * time.Millisecond, ReadOnly: true})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestDecode_corrupt(t *testing.T) {
	v := encode(Entry{Time: time.Unix(1, 0), Source: "abc", Raw: []byte("x")})
	for _, bad := range [][]byte{nil, {9, 0, 0, 0, 0, 0, 0, 0, 0}, v[:10], append(v[:11:11], 200)} {
		if _, err := decode(1, bad, true); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode(%x) = %v, want ErrCorrupt", bad, err)
		}
	}
}
