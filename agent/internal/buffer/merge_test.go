package buffer

import (
	"bytes"
	"cmp"
	"context"
	"math"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/protocols"
)

// sortedPoints orders points by series and time, for comparing a backlog
// whose batches were merged (a merged batch groups its points by series).
func sortedPoints(pts []protocols.Point) []protocols.Point {
	out := slices.Clone(pts)
	slices.SortStableFunc(out, func(a, b protocols.Point) int {
		return cmp.Or(cmp.Compare(a.Measurement, b.Measurement), cmp.Compare(a.Tags[0].Value, b.Tags[0].Value), cmp.Compare(a.Time, b.Time))
	})
	return out
}

// appendTicks appends n calls of per points each (one station per call),
// as a live input ticking does, and returns what it appended.
func appendTicks(t *testing.T, b *Buffer, first, n, per int) []protocols.Point {
	t.Helper()
	return appendAll(t, b, first, first+n-1, per)
}

func TestBuffer_merge_backlogOfSmallBatches(t *testing.T) {
	set := metrics.NewSet()
	b := open(t, t.TempDir(), Options{BatchPoints: 1000, Metrics: set})
	want := appendTicks(t, b, 1, 200, 30) // 6,000 points in 200 commits
	st := b.Stats()
	// A merge runs once the small batches hold 1,000 points (34 commits)
	// and takes the oldest 33 (990 points): six times in 200 commits,
	// leaving two small ones.
	if st.Batches != 6+2 {
		t.Fatalf("batches = %d, want 8 (6 merged + 2 small)", st.Batches)
	}
	if got := counter(set, "citysense_agent_buffer_merges_total"); got != 6 {
		t.Fatalf("merges = %d, want 6", got)
	}
	if got := counter(set, "citysense_agent_buffer_merged_batches_total"); got != 6*33 {
		t.Fatalf("merged batches = %d, want %d", got, 6*33)
	}
	if st.Points != int64(len(want)) || st.Outputs["default"].PendingPoints != int64(len(want)) || st.Outputs["default"].PendingBatches != 8 {
		t.Fatalf("stats %+v, want %d points in 8 batches pending", st, len(want))
	}
	bs := readAll(t, b, "default")
	if len(bs) != 8 || bs[0].Seq != 1 || bs[1].Seq != 34 || bs[0].Points != 990 {
		t.Fatalf("read %d batches, first %d (%d points) then %d; want 8 batches 1 (990), 34, …", len(bs), bs[0].Seq, bs[0].Points, bs[1].Seq)
	}
	samePoints(t, sortedPoints(decode(t, bs)), sortedPoints(want))
	if err := b.Ack("default", seqsOf(bs)...); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Batches != 0 || st.Points != 0 {
		t.Fatalf("after acknowledging everything: %+v", st)
	}
}

func TestBuffer_merge_neverWhileLive(t *testing.T) {
	set := metrics.NewSet()
	b := open(t, t.TempDir(), Options{BatchPoints: 1000, Metrics: set})
	b.SetLive("default", true)
	appendTicks(t, b, 1, 100, 30)
	if got, st := counter(set, "citysense_agent_buffer_merges_total"), b.Stats(); got != 0 || st.Batches != 100 {
		t.Fatalf("merges = %d, batches = %d; want 0 and 100 while the output is live", got, st.Batches)
	}
	readAll(t, b, "default")
	if got := counter(set, "citysense_agent_buffer_claims_total"); got != 0 {
		t.Fatalf("claims = %d, want 0: batches committed while live are claimed already", got)
	}
	// An output that is not current does not count.
	b.SetLive("default", false)
	b.SetLive("other", true)
	appendTicks(t, b, 101, 40, 30)
	if got := counter(set, "citysense_agent_buffer_merges_total"); got != 1 {
		t.Fatalf("merges = %d, want 1 once no current output is live", got)
	}
}

// A batch handed to an output keeps its number and content: the collector
// may have it already. Merging goes around it, across restarts too.
func TestBuffer_merge_skipsClaimedBatches(t *testing.T) {
	dir := t.TempDir()
	set := metrics.NewSet()
	b := open(t, dir, Options{BatchPoints: 1000, Metrics: set})
	want := appendTicks(t, b, 1, 10, 30)
	// The output probes with one batch in the middle (seq 5) and dies
	// before it is confirmed.
	probe, err := b.Read("default", 5, 6, 1, 1<<20)
	if err != nil || len(probe) != 1 || probe[0].Seq != 5 {
		t.Fatalf("read %v, %v; want batch 5", seqsOf(probe), err)
	}
	if got := counter(set, "citysense_agent_buffer_claims_total"); got != 1 {
		t.Fatalf("claims = %d, want 1", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = open(t, dir, Options{BatchPoints: 1000, Metrics: metrics.NewSet()})
	want = append(want, appendTicks(t, b, 11, 40, 30)...)
	bs := readAll(t, b, "default")
	i := slices.IndexFunc(bs, func(bt Batch) bool { return bt.Seq == 5 })
	if i < 0 || bs[i].Points != 30 || bs[i].MinTime != probe[0].MinTime || string(bs[i].Body) != string(probe[0].Body) {
		t.Fatalf("batch 5 after merging: %v; want it as it was sent", seqsOf(bs))
	}
	if bs[0].Seq != 1 || bs[0].Points != 33*30 {
		t.Fatalf("first batch %d with %d points; want 1 merged from 33 batches around 5", bs[0].Seq, bs[0].Points)
	}
	samePoints(t, sortedPoints(decode(t, bs)), sortedPoints(want))
}

// A segment's leftover small batches are merged when it is sealed.
func TestBuffer_merge_leftoversWhenSealed(t *testing.T) {
	set := metrics.NewSet()
	b := open(t, t.TempDir(), Options{BatchPoints: 5000, SegmentSize: minSegmentSize, Metrics: set})
	want := appendNoisy(t, b, 1, 120, 20)
	st := b.Stats()
	if len(st.Segments) < 2 {
		t.Fatalf("%d segments, want the test to seal some", len(st.Segments))
	}
	for _, sg := range st.Segments[:len(st.Segments)-1] {
		if sg.Batches != 1 {
			t.Fatalf("sealed segment %s holds %d batches, want 1 merged", sg.File, sg.Batches)
		}
	}
	samePoints(t, sortedPoints(decode(t, readAll(t, b, "default"))), sortedPoints(want))
}

// Readers and the committer race: every point is read exactly once, under
// its batch's final number, while merges rewrite the backlog.
func TestBuffer_merge_concurrentReaders(t *testing.T) {
	set := metrics.NewSet()
	b := open(t, t.TempDir(), Options{BatchPoints: 600, Metrics: set})
	var (
		mu   sync.Mutex
		got  []protocols.Point
		seen = map[uint64]bool{}
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	wg.Go(func() {
		// Reads slowly, from where it left, so that merges run between.
		var from uint64
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-time.After(3 * time.Millisecond):
			}
			bs, err := b.Read("default", from, math.MaxUint64, 1, 1<<20)
			if err != nil {
				t.Error(err)
				return
			}
			if len(bs) == 0 {
				continue
			}
			mu.Lock()
			for _, bt := range bs {
				if seen[bt.Seq] {
					t.Errorf("batch %d read twice", bt.Seq)
				}
				seen[bt.Seq] = true
			}
			got = append(got, decode(t, bs)...)
			mu.Unlock()
			from = bs[len(bs)-1].Seq + 1
			if err := b.Ack("default", seqsOf(bs)...); err != nil {
				t.Error(err)
				return
			}
		}
	})
	want := appendTicks(t, b, 1, 400, 10)
	time.Sleep(50 * time.Millisecond)
	close(done)
	wg.Wait()
	// Then pick up what it left: batches merged under a number below its
	// position, and what it had no time for.
	bs := readAll(t, b, "default")
	got = append(got, decode(t, bs)...)
	if counter(set, "citysense_agent_buffer_merges_total") == 0 || counter(set, "citysense_agent_buffer_claims_total") == 0 {
		t.Fatalf("merges %d, claims %d: the race was not exercised", counter(set, "citysense_agent_buffer_merges_total"), counter(set, "citysense_agent_buffer_claims_total"))
	}
	samePoints(t, sortedPoints(got), sortedPoints(want))
}

func TestPickMerge(t *testing.T) {
	ob := func(pts ...int) []openBatch {
		out := make([]openBatch, len(pts))
		for i, p := range pts {
			out[i] = openBatch{seq: uint64(i + 1), points: p}
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		open   []openBatch
		sealed bool
		want   []uint64
	}{
		{"not yet a full batch", ob(300, 300, 300), false, nil},
		{"a full batch", ob(300, 300, 300, 300), false, []uint64{1, 2, 3}},
		{"large ones are left", ob(600, 300, 300, 300, 300), false, []uint64{2, 3, 4}},
		{"sealed: what is there", ob(300, 300), true, []uint64{1, 2}},
		{"sealed: one is not a merge", ob(300), true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := groupSeqs(pickMerge(tc.open, 1000, tc.sealed))
			if len(got) == 0 {
				got = nil
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("picked %v, want %v", got, tc.want)
			}
		})
	}
}

// The flag survives in the index entry; an entry without it (written by
// an earlier version) counts as claimed.
func TestHeader_claimedFlag(t *testing.T) {
	h := header{codec: Zstd, format: Columnar, points: 3, bodyLen: 10, appended: 1, minTime: 2, maxTime: 3}
	for _, claimed := range []bool{false, true} {
		h.claimed = claimed
		got, err := parseHeader(h.marshal())
		if err != nil || got != h {
			t.Fatalf("round trip of %+v: %+v, %v", h, got, err)
		}
	}
	enc := h.marshal()
	old, err := parseHeader(enc[:len(enc)-1])
	if err != nil || !old.claimed {
		t.Fatalf("entry without flags: %+v, %v; want claimed", old, err)
	}
}

// A damaged batch among those to merge costs that merge only: the segment
// stays, the other batches arrive, and the damaged one goes to the
// quarantine when it is read, as any damaged batch does.
func TestBuffer_merge_damagedPartKeepsTheSegment(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{BatchPoints: 1000})
	want := appendTicks(t, b, 1, 10, 30) // 300 points: no merge yet
	b.Close()
	ib, _, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := ib.Read("", 3, 4, 1, 1<<20)
	ib.Close()
	if err != nil || len(bs) != 1 {
		t.Fatalf("inspect batch 3: %v, %v", seqsOf(bs), err)
	}
	f := segFiles(t, dir)[0]
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	needle := bs[0].Body[:min(len(bs[0].Body), 32)]
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
	b = open(t, dir, Options{BatchPoints: 1000, Metrics: set})
	want = append(want, appendTicks(t, b, 11, 40, 30)...) // would merge 1..34
	if q := counter(set, "citysense_agent_buffer_segments_quarantined_total"); q != 0 {
		t.Fatalf("%d segments quarantined; want the damaged batch to cost its merge only", q)
	}
	got := readAll(t, b, "default")
	if slices.Contains(seqsOf(got), 3) {
		t.Fatalf("read %v; the damaged batch 3 must not be sent", seqsOf(got))
	}
	lost := want[60:90] // tick 3
	rest := append(slices.Clone(want[:60]), want[90:]...)
	samePoints(t, sortedPoints(decode(t, got)), sortedPoints(rest))
	if n := counter(set, `citysense_agent_points_dropped_total{reason="corrupt"}`); n != uint64(len(lost)) {
		t.Fatalf("corrupt drops counted %d, want %d", n, len(lost))
	}
	if q := QuarantinedFiles(dir); len(q) != 1 || q[0] != "corrupt-3" {
		t.Fatalf("quarantine %v, want corrupt-3", q)
	}
	if counter(set, "citysense_agent_buffer_merges_total") != 0 {
		t.Fatal("a merge went through with a damaged part")
	}
}
