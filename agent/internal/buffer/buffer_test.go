package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/klauspost/compress/zstd"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/citysense/citysense/protocols"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// points returns n distinct valid points; id makes them distinct across calls.
func points(id, n int) []protocols.Point {
	out := make([]protocols.Point, n)
	for i := range out {
		out[i] = protocols.Point{
			Measurement: "air",
			Tags:        []protocols.Tag{{Key: "station", Value: fmt.Sprintf("s%04d", id)}},
			Fields:      []protocols.Field{{Key: "pm25", Value: protocols.Float(float64(i) / 10)}},
			Time:        int64(id)*1e12 + int64(i)*1e9,
		}
	}
	return out
}

// fast are options for tests: commits without waiting.
func fast(o Options) Options {
	if o.FlushInterval == 0 {
		o.FlushInterval = time.Microsecond
	}
	return o
}

func open(t *testing.T, dir string, opts Options) *Buffer {
	t.Helper()
	b, err := Open(dir, fast(opts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func appendAll(t *testing.T, b *Buffer, from, to, n int) []protocols.Point {
	t.Helper()
	var all []protocols.Point
	for id := from; id <= to; id++ {
		pts := points(id, n)
		all = append(all, pts...)
		if err := b.Append(t.Context(), slices.Clone(pts)); err != nil {
			t.Fatal(err)
		}
	}
	return all
}

// appendNoisy is appendAll with a field of random text added to every
// point, for tests that need segments to fill: the buffer's columns make
// regular readings far too small for that.
func appendNoisy(t *testing.T, b *Buffer, from, to, n int) []protocols.Point {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(from), uint64(to)))
	var all []protocols.Point
	for id := from; id <= to; id++ {
		pts := points(id, n)
		for i := range pts {
			note := fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
			pts[i].Fields = append(pts[i].Fields, protocols.Field{Key: "note", Value: protocols.String(note)})
		}
		all = append(all, pts...)
		if err := b.Append(t.Context(), slices.Clone(pts)); err != nil {
			t.Fatal(err)
		}
	}
	return all
}

// decode returns the points of batches, checking each batch's count.
func decode(t *testing.T, bs []Batch) []protocols.Point {
	t.Helper()
	tc, err := NewTranscoder()
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	var out []protocols.Point
	for _, bt := range bs {
		lp, err := tc.Lines(&bt)
		if err != nil {
			t.Fatalf("batch %d: %v", bt.Seq, err)
		}
		pts, err := protocols.DecodeAll(lp, protocols.DecodeOptions{})
		if err != nil {
			t.Fatalf("batch %d: %v", bt.Seq, err)
		}
		if len(pts) != bt.Points {
			t.Fatalf("batch %d holds %d points, says %d", bt.Seq, len(pts), bt.Points)
		}
		out = append(out, pts...)
	}
	return out
}

// readAll returns every batch output has pending.
func readAll(t *testing.T, b *Buffer, output string) []Batch {
	t.Helper()
	bs, err := b.Read(output, 0, math.MaxUint64, 1<<20, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func seqsOf(bs []Batch) []uint64 {
	out := make([]uint64, len(bs))
	for i, bt := range bs {
		out[i] = bt.Seq
	}
	return out
}

func samePoints(t *testing.T, got, want []protocols.Point) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d points, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("point %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func counter(set *metrics.Set, name string) uint64 {
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var n uint64
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

func TestBuffer_AppendReadAck_roundTrip(t *testing.T) {
	b := open(t, t.TempDir(), Options{Outputs: []string{"nats"}})
	want := appendAll(t, b, 1, 4, 3)
	bs := readAll(t, b, "nats")
	if !reflect.DeepEqual(seqsOf(bs), []uint64{1, 2, 3, 4}) {
		t.Fatalf("batches %v, want 1..4 (one per Append committed alone)", seqsOf(bs))
	}
	samePoints(t, decode(t, bs), want)
	st := b.Stats()
	if st.Batches != 4 || st.Points != 12 || st.Outputs["nats"] != (OutputStats{4, 12}) || st.NextSeq != 5 {
		t.Fatalf("stats %+v", st)
	}
	if err := b.Ack("nats", 1, 2); err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(readAll(t, b, "nats")); !reflect.DeepEqual(got, []uint64{3, 4}) {
		t.Fatalf("after ack 1,2: %v", got)
	}
	if err := b.Ack("nats", 2, 3, 4, 99); err != nil { // twice, and unknown: harmless
		t.Fatal(err)
	}
	if st := b.Stats(); st.Batches != 0 || st.Points != 0 || st.Outputs["nats"] != (OutputStats{}) {
		t.Fatalf("after acking everything: %+v", st)
	}
}

func TestBuffer_Read_rangeAndLimits(t *testing.T) {
	b := open(t, t.TempDir(), Options{})
	appendAll(t, b, 1, 6, 2)
	for _, tt := range []struct {
		from, to uint64
		max      int
		want     []uint64
	}{
		{0, 100, 100, []uint64{1, 2, 3, 4, 5, 6}},
		{3, 5, 100, []uint64{3, 4}},
		{2, 100, 2, []uint64{2, 3}},
		{7, 100, 100, nil},
	} {
		bs, err := b.Read("default", tt.from, tt.to, tt.max, 1<<20)
		if err != nil || !reflect.DeepEqual(seqsOf(bs), append([]uint64{}, tt.want...)) {
			t.Errorf("Read(%d, %d, %d) = %v, %v; want %v", tt.from, tt.to, tt.max, seqsOf(bs), err, tt.want)
		}
	}
	// Acknowledged holes are skipped.
	if err := b.Ack("default", 2, 3, 5); err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(readAll(t, b, "default")); !reflect.DeepEqual(got, []uint64{1, 4, 6}) {
		t.Fatalf("with holes: %v", got)
	}
}

func TestBuffer_Append_smallAppendsShareBatches(t *testing.T) {
	// One-point Appends (an MQTT message each) arriving together share a
	// commit and batches: that is what makes compression pay.
	b := open(t, t.TempDir(), Options{FlushInterval: 50 * time.Millisecond, BatchPoints: 40})
	// A first commit, so the next ones wait out the interval.
	appendAll(t, b, 1000, 1000, 1)
	var wg sync.WaitGroup
	want := map[int64]bool{}
	for w := range 100 {
		p := points(w+1, 1)
		want[p[0].Time] = true
		wg.Go(func() {
			if err := b.Append(context.Background(), p); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	bs := readAll(t, b, "default")
	got := decode(t, bs)
	if len(got) != 101 {
		t.Fatalf("%d points, want 101", len(got))
	}
	for _, p := range got[1:] {
		if !want[p.Time] {
			t.Fatalf("unexpected point %+v", p)
		}
		delete(want, p.Time)
	}
	for _, bt := range bs {
		if bt.Points > 40 {
			t.Fatalf("batch %d has %d points, more than batch_points", bt.Seq, bt.Points)
		}
	}
	if len(bs) > 20 {
		t.Fatalf("100 concurrent one-point appends made %d batches; they should share", len(bs))
	}
	t.Logf("100 concurrent appends → %d batches in %d commits", len(bs), counter(b.m.set, "citysense_agent_buffer_commits_total"))
}

func TestBuffer_Append_splitsAtBatchPoints(t *testing.T) {
	b := open(t, t.TempDir(), Options{BatchPoints: 4})
	want := appendAll(t, b, 1, 1, 10)
	bs := readAll(t, b, "default")
	var sizes []int
	for _, bt := range bs {
		sizes = append(sizes, bt.Points)
	}
	if !reflect.DeepEqual(sizes, []int{4, 4, 2}) {
		t.Fatalf("batch sizes %v, want [4 4 2]", sizes)
	}
	samePoints(t, decode(t, bs), want)
	if bs[0].MinTime != want[0].Time || bs[0].MaxTime != want[3].Time {
		t.Fatalf("batch 1 times %d..%d, want %d..%d", bs[0].MinTime, bs[0].MaxTime, want[0].Time, want[3].Time)
	}
}

func TestBuffer_Append_invalidPointsLeftOut(t *testing.T) {
	b := open(t, t.TempDir(), Options{})
	pts := points(1, 3)
	pts[1].Fields[0].Value = protocols.Float(math.NaN())
	err := b.Append(t.Context(), pts)
	var inv *InvalidPointsError
	if !errors.As(err, &inv) || inv.Dropped != 1 {
		t.Fatalf("Append = %v, want one invalid point", err)
	}
	samePoints(t, decode(t, readAll(t, b, "default")), []protocols.Point{pts[0], pts[2]})
}

func TestBuffer_Append_canceledStoresNothing(t *testing.T) {
	b := open(t, t.TempDir(), Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Append(ctx, points(1, 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append = %v", err)
	}
	if st := b.Stats(); st.Batches != 0 {
		t.Fatalf("stored %d batches", st.Batches)
	}
}

func TestBuffer_Append_afterClose(t *testing.T) {
	b := open(t, t.TempDir(), Options{})
	b.Close()
	if err := b.Append(t.Context(), points(1, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
}

func TestBuffer_Open_reopenKeepsDataCursorsAndNumbers(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{Outputs: []string{"a", "b"}})
	want := appendAll(t, b, 1, 5, 2)
	if err := b.Ack("a", 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	if err := b.Ack("b", 1, 4); err != nil {
		t.Fatal(err)
	}
	b.Close()

	// Reordered outputs: the ids, not their order, identify the cursors.
	b = open(t, dir, Options{Outputs: []string{"b", "a"}})
	if got := seqsOf(readAll(t, b, "a")); !reflect.DeepEqual(got, []uint64{4, 5}) {
		t.Fatalf("a pending %v, want [4 5]", got)
	}
	if got := seqsOf(readAll(t, b, "b")); !reflect.DeepEqual(got, []uint64{2, 3, 5}) {
		t.Fatalf("b pending %v, want [2 3 5]", got)
	}
	// Batch 1 went to both and is gone; the rest is kept for someone.
	samePoints(t, decode(t, readAll(t, b, "")), want[2:])
	if st := b.Stats(); st.Outputs["a"] != (OutputStats{2, 4}) || st.Outputs["b"] != (OutputStats{3, 6}) {
		t.Fatalf("stats %+v", st.Outputs)
	}
	appendAll(t, b, 6, 6, 1)
	if got := seqsOf(readAll(t, b, "a")); got[len(got)-1] <= 5 {
		t.Fatalf("a new batch got number %d after 5", got[len(got)-1])
	}
}

func TestBuffer_Outputs_newStartsAtOldestRemovedReleases(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{Outputs: []string{"nats"}})
	appendAll(t, b, 1, 3, 1)
	if err := b.Ack("nats", 1); err != nil {
		t.Fatal(err)
	}
	// A new output gets what is kept, not what went before it.
	if err := b.SetOutputs([]string{"nats", "influx"}); err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(readAll(t, b, "influx")); !reflect.DeepEqual(got, []uint64{2, 3}) {
		t.Fatalf("new output pending %v", got)
	}
	if err := b.Ack("influx", 2, 3); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Batches != 2 {
		t.Fatalf("batches kept %d; nats still needs 2 and 3", st.Batches)
	}
	// Removing nats releases what only it was waiting for.
	if err := b.SetOutputs([]string{"influx"}); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Batches != 0 {
		t.Fatalf("after removing nats %d batches kept", st.Batches)
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, DirName, "seg-*.db"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBuffer_Segments_sealedAndDeletedWhenDrained(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{SegmentSize: minSegmentSize, BatchPoints: 500})
	want := appendNoisy(t, b, 1, 40, 500)
	files := segFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("%d segment files after %d points; want several", len(files), len(want))
	}
	for _, s := range b.Stats().Segments[:len(files)-1] {
		if !s.Sealed || s.Bytes > minSegmentSize+32<<10 {
			t.Fatalf("segment %+v: sealed segments should be about SegmentSize", s)
		}
	}
	bs := readAll(t, b, "default")
	samePoints(t, decode(t, bs), want)
	// Acknowledge all but the last: every sealed segment goes.
	if err := b.Ack("default", seqsOf(bs[:len(bs)-1])...); err != nil {
		t.Fatal(err)
	}
	if got := segFiles(t, dir); len(got) != 1 || got[0] != files[len(files)-1] {
		t.Fatalf("after draining, files %v; want only the active %s", got, files[len(files)-1])
	}
	if st := b.Stats(); st.Batches != 1 || st.Points != 500 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBuffer_DropOldest_boundedAndCounted(t *testing.T) {
	dir := t.TempDir()
	set := metrics.NewSet()
	const maxBytes = 1 << 20
	b := open(t, dir, Options{MaxBytes: maxBytes, BatchPoints: 1000, Metrics: set})
	total, ids := 0, 0
	for id := 1; b.Stats().Bytes < 3*maxBytes/2 && id < 2000; id++ {
		// Random-ish values keep the compression honest.
		pts := points(id, 1000)
		for i := range pts {
			pts[i].Fields[0].Value = protocols.Float(float64((id*7919+i*104729)%100003) / 7)
		}
		if err := b.Append(t.Context(), pts); err != nil {
			t.Fatal(err)
		}
		total += 1000
		ids = id
		if st := b.Stats(); st.Bytes > maxBytes+maxBytes/segmentsPerBound {
			t.Fatalf("after %d points the buffer holds %d bytes, bound %d + a segment", total, st.Bytes, maxBytes)
		}
		if counter(set, `citysense_agent_points_dropped_total{reason="max_bytes"}`) > 0 && id > 5 {
			break
		}
	}
	dropped := counter(set, `citysense_agent_points_dropped_total{reason="max_bytes"}`)
	got := decode(t, readAll(t, b, "default"))
	if dropped == 0 {
		t.Fatalf("nothing dropped after %d points", total)
	}
	if uint64(len(got))+dropped != uint64(total) {
		t.Fatalf("kept %d + dropped %d != appended %d", len(got), dropped, total)
	}
	// The newest is kept, the oldest went.
	last := points(ids, 1000)
	if got[len(got)-1].Time != last[999].Time {
		t.Fatalf("newest point kept is %d, want %d", got[len(got)-1].Time, last[999].Time)
	}
	if counter(set, "citysense_agent_buffer_segments_dropped_total") == 0 {
		t.Fatal("no segment counted as dropped")
	}
}

// fill appends until the buffer holds at least target bytes or refuses
// (or, under block, keeps) an Append.
func fill(t *testing.T, b *Buffer, target int64) {
	t.Helper()
	for id := 1; b.Stats().Bytes < target; id++ {
		pts := points(id, 1000)
		for i := range pts {
			pts[i].Fields[0].Value = protocols.Float(float64((id*7919+i*104729)%100003) / 7)
		}
		// Under block, an Append that does not return soon waits for room:
		// the buffer is full. (A generous wait: tests run on busy machines.)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := b.Append(ctx, pts)
		cancel()
		switch {
		case errors.Is(err, ErrFull), errors.Is(err, context.DeadlineExceeded):
			return
		case err != nil:
			t.Fatal(err)
		}
		if id > 10000 {
			t.Fatal("never filled")
		}
	}
}

func TestBuffer_DropNewest_refusesAndCounts(t *testing.T) {
	set := metrics.NewSet()
	const maxBytes = 1 << 20
	b := open(t, t.TempDir(), Options{MaxBytes: maxBytes, Policy: DropNewest, Metrics: set})
	fill(t, b, maxBytes)
	before := b.Stats()
	var err error
	for range 50 {
		if err = b.Append(t.Context(), points(99999, 1000)); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Append on a full buffer = %v, want ErrFull", err)
	}
	if after := b.Stats(); after.Bytes > maxBytes {
		t.Fatalf("bytes %d over the bound %d (before %d)", after.Bytes, maxBytes, before.Bytes)
	}
	if n := counter(set, `citysense_agent_points_dropped_total{reason="buffer_full"}`); n < 1000 {
		t.Fatalf("refused points counted: %d", n)
	}
	if !b.RefusedSince(time.Now().Add(-time.Minute)) {
		t.Fatal("RefusedSince is false after a refusal")
	}
}

func TestBuffer_Block_waitsForRoom(t *testing.T) {
	const maxBytes = 1 << 20
	b := open(t, t.TempDir(), Options{MaxBytes: maxBytes, Policy: Block, SegmentSize: 64 << 10})
	fill(t, b, 2*maxBytes)
	// A caller that gives up stores nothing.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	before := b.Stats().Points
	if err := b.Append(ctx, points(88888, 1000)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append on a full buffer with a deadline = %v", err)
	}
	if got := b.Stats().Points; got != before {
		t.Fatalf("a refused Append stored %d points", got-before)
	}
	// A patient caller gets in once the uplink frees space.
	done := make(chan error, 1)
	go func() { done <- b.Append(context.Background(), points(77777, 1000)) }()
	select {
	case err := <-done:
		t.Fatalf("Append returned %v on a full buffer", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := b.Ack("default", seqsOf(readAll(t, b, "default"))...); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := decode(t, readAll(t, b, "default"))
	if len(got) != 1000 || got[0].Time != points(77777, 1)[0].Time {
		t.Fatalf("after room was made, %d points kept", len(got))
	}
}

func TestBuffer_MaxAge_dropsOldBatches(t *testing.T) {
	set := metrics.NewSet()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b := open(t, t.TempDir(), Options{Metrics: set, Now: clock})
	appendAll(t, b, 1, 3, 10)
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	want := appendAll(t, b, 4, 4, 10)
	b.dropOlderThan(clock().Add(-30 * time.Minute).UnixNano())
	samePoints(t, decode(t, readAll(t, b, "default")), want)
	if n := counter(set, `citysense_agent_points_dropped_total{reason="max_age"}`); n != 30 {
		t.Fatalf("max_age drops counted %d, want 30", n)
	}
}

func TestBuffer_Seq_monotonicWhenEverySegmentIsLost(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{})
	appendAll(t, b, 1, 3, 1)
	b.Close()
	for _, f := range segFiles(t, dir) {
		os.Remove(f)
	}
	b = open(t, dir, Options{})
	appendAll(t, b, 4, 4, 1)
	if got := seqsOf(readAll(t, b, "default")); got[0] <= 3 {
		t.Fatalf("after losing every segment the next batch is %d; numbers must never repeat", got[0])
	}
}

func TestBuffer_Seq_fromSegmentsWhenSeqFileIsLost(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{})
	appendAll(t, b, 1, 3, 1)
	b.Close()
	if err := os.WriteFile(filepath.Join(dir, DirName, seqFileName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	b = open(t, dir, Options{})
	appendAll(t, b, 4, 4, 1)
	if got := seqsOf(readAll(t, b, "default")); !reflect.DeepEqual(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("numbers %v, want 1..4 continued from the segments", got)
	}
}

func TestBuffer_Open_quarantinesUnreadableSegment(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{SegmentSize: minSegmentSize, BatchPoints: 500})
	want := appendNoisy(t, b, 1, 40, 500)
	b.Close()
	files := segFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("want several segments, have %d", len(files))
	}
	// Garbage over the head of the second segment: bbolt cannot open it.
	bad := files[1]
	garbage := bytes.Repeat([]byte("not a bbolt page "), 1000)
	if err := os.WriteFile(bad, garbage, 0o600); err != nil {
		t.Fatal(err)
	}

	set := metrics.NewSet()
	b = open(t, dir, Options{SegmentSize: minSegmentSize, BatchPoints: 500, Metrics: set})
	if n := counter(set, "citysense_agent_buffer_segments_quarantined_total"); n != 1 {
		t.Fatalf("quarantined segments counted %d, want 1", n)
	}
	q := QuarantinedFiles(dir)
	if len(q) != 1 || !strings.HasPrefix(q[0], filepath.Base(bad)) {
		t.Fatalf("quarantine holds %v, want %s", q, filepath.Base(bad))
	}
	kept, err := os.ReadFile(filepath.Join(dir, QuarantineName, q[0]))
	if err != nil || !bytes.Equal(kept, garbage) {
		t.Fatal("the bad file was not kept as it was")
	}
	// Everything else is still there, in order.
	got := decode(t, readAll(t, b, "default"))
	if len(got) == 0 || len(got) >= len(want) {
		t.Fatalf("%d of %d points kept after losing one segment", len(got), len(want))
	}
	// got is want with a run cut out of its middle.
	idx := 0
	for idx < len(got) && reflect.DeepEqual(got[idx], want[idx]) {
		idx++
	}
	if idx == 0 || idx == len(got) {
		t.Fatalf("the first segment or the last was lost (%d points kept in order), want the second", idx)
	}
	samePoints(t, got[idx:], want[len(want)-(len(got)-idx):])
	// And it keeps working.
	appendAll(t, b, 41, 41, 1)
}

func TestBuffer_Read_corruptBodyIsQuarantined(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{BatchPoints: 100})
	want := appendAll(t, b, 1, 3, 100)
	bs := readAll(t, b, "default")
	b.Close()
	// Flip a byte inside the second batch's body, where bbolt does not look.
	f := segFiles(t, dir)[0]
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	// Copy-on-write leaves stale copies in free pages: flip them all.
	needle := bs[1].Body[:min(len(bs[1].Body), 64)]
	n := 0
	for i := bytes.Index(data, needle); i >= 0; {
		data[i+len(needle)/2] ^= 0xff
		n++
		j := bytes.Index(data[i+1:], needle)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if n == 0 {
		t.Fatal("body not found in the file")
	}
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	b = open(t, dir, Options{BatchPoints: 100, Metrics: set})
	got := readAll(t, b, "default")
	if !reflect.DeepEqual(seqsOf(got), []uint64{1, 3}) {
		t.Fatalf("read %v, want 1 and 3 (2 is corrupt)", seqsOf(got))
	}
	samePoints(t, decode(t, got), append(slices.Clone(want[:100]), want[200:]...))
	if n := counter(set, `citysense_agent_points_dropped_total{reason="corrupt"}`); n != 100 {
		t.Fatalf("corrupt drops counted %d", n)
	}
	if q := QuarantinedFiles(dir); len(q) != 1 || q[0] != "corrupt-2" {
		t.Fatalf("quarantine %v", q)
	}
}

func TestBuffer_Open_locked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, Options{})
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Fatalf("second Open = %v; want ErrLocked naming this process", err)
	}
	if _, _, err := Inspect(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("Inspect of a running buffer = %v", err)
	}
}

func TestInspect_statsAndExport(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{Outputs: []string{"nats", "influx"}, BatchPoints: 5})
	want := appendAll(t, b, 1, 2, 10)
	if err := b.Ack("nats", 1, 2); err != nil {
		t.Fatal(err)
	}
	b.Close()

	ib, problems, err := Inspect(dir)
	if err != nil || len(problems) > 0 {
		t.Fatal(err, problems)
	}
	defer ib.Close()
	st := ib.Stats()
	if st.Batches != 4 || st.Points != 20 || st.Outputs["nats"] != (OutputStats{2, 10}) || len(st.Segments) != 1 {
		t.Fatalf("stats %+v", st)
	}
	var buf bytes.Buffer
	n, pts, err := ib.Export(&buf, "nats")
	if err != nil || n != 2 || pts != 10 {
		t.Fatalf("export = %d, %d, %v", n, pts, err)
	}
	got, err := protocols.DecodeAll(buf.Bytes(), protocols.DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	samePoints(t, got, want[10:])
	buf.Reset()
	if _, pts, _ := ib.Export(&buf, ""); pts != 20 {
		t.Fatalf("export of everything: %d points", pts)
	}
}

func TestBuffer_Open_importsLegacyBuffer(t *testing.T) {
	dir := t.TempDir()
	// The single-file format of the walking skeleton.
	db, err := bolt.Open(filepath.Join(dir, legacyName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil)
	want := points(1, 4)
	lp, _ := protocols.AppendLines(nil, want, protocols.Nanosecond)
	err = db.Update(func(tx *bolt.Tx) error {
		bk, _ := tx.CreateBucket([]byte("entries"))
		for range 7 {
			bk.NextSequence()
		}
		v := binary.AppendUvarint(nil, 4)
		return bk.Put(u64(7), append(v, enc.EncodeAll(lp, nil)...))
	})
	enc.Close()
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	b := open(t, dir, Options{})
	bs := readAll(t, b, "default")
	if !reflect.DeepEqual(seqsOf(bs), []uint64{7}) {
		t.Fatalf("imported batches %v, want [7]", seqsOf(bs))
	}
	samePoints(t, decode(t, bs), want)
	appendAll(t, b, 2, 2, 1)
	if got := seqsOf(readAll(t, b, "default")); got[1] <= 7 {
		t.Fatalf("new batch after import numbered %d", got[1])
	}
	if _, err := os.Stat(filepath.Join(dir, legacyName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("old buffer.db still there after the import")
	}
}

func TestBuffer_S2(t *testing.T) {
	b := open(t, t.TempDir(), Options{Codec: S2})
	want := appendAll(t, b, 1, 2, 5)
	bs := readAll(t, b, "default")
	if bs[0].Codec != S2 {
		t.Fatalf("codec %v", bs[0].Codec)
	}
	samePoints(t, decode(t, bs), want)
}

func TestRangeSet(t *testing.T) {
	tests := []struct {
		add  [][2]uint64
		want []span
	}{
		{[][2]uint64{{1, 1}, {2, 2}, {3, 3}}, []span{{1, 3}}},
		{[][2]uint64{{5, 6}, {1, 2}}, []span{{1, 2}, {5, 6}}},
		{[][2]uint64{{5, 6}, {1, 2}, {3, 4}}, []span{{1, 6}}},
		{[][2]uint64{{1, 10}, {3, 4}}, []span{{1, 10}}},
		{[][2]uint64{{10, 12}, {1, 2}, {5, 6}, {2, 11}}, []span{{1, 12}}},
		{[][2]uint64{{4, 4}, {8, 8}, {6, 6}}, []span{{4, 4}, {6, 6}, {8, 8}}},
	}
	for _, tt := range tests {
		var r rangeSet
		for _, a := range tt.add {
			r.add(a[0], a[1])
		}
		if !reflect.DeepEqual(r.spans, tt.want) {
			t.Errorf("add %v = %v, want %v", tt.add, r.spans, tt.want)
		}
		for _, sp := range tt.want {
			if !r.contains(sp.lo) || !r.contains(sp.hi) || r.contains(sp.hi+1) {
				t.Errorf("%v: contains wrong around %v", tt.add, sp)
			}
		}
	}
}

func TestParsePolicyAndCodec(t *testing.T) {
	for _, s := range []string{"drop_oldest", "drop_newest", "block"} {
		if p, err := ParsePolicy(s); err != nil || p.String() != s {
			t.Errorf("ParsePolicy(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParsePolicy("drop"); err == nil {
		t.Error("ParsePolicy accepted drop")
	}
	for _, s := range []string{"zstd", "s2"} {
		if c, err := ParseCodec(s); err != nil || c.String() != s {
			t.Errorf("ParseCodec(%q) = %v, %v", s, c, err)
		}
	}
}
