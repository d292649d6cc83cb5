package buffer

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
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

func decode(t *testing.T, e Entry) []protocols.Point {
	t.Helper()
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	lp, err := dec.DecodeAll(e.Body, nil)
	if err != nil {
		t.Fatalf("entry %d: %v", e.Seq, err)
	}
	pts, err := protocols.DecodeAll(lp, protocols.DecodeOptions{})
	if err != nil {
		t.Fatalf("entry %d: %v", e.Seq, err)
	}
	if len(pts) != e.Points {
		t.Fatalf("entry %d holds %d points, says %d", e.Seq, len(pts), e.Points)
	}
	return pts
}

func open(t *testing.T, dir string, opts Options) *Buffer {
	t.Helper()
	b, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seqs(es []Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

func TestBuffer_AppendPeekAck_order(t *testing.T) {
	b := open(t, t.TempDir(), Options{})
	defer b.Close()
	ctx := t.Context()
	for id := 1; id <= 4; id++ {
		if err := b.Append(ctx, points(id, id)); err != nil {
			t.Fatal(err)
		}
	}
	if got, pts := b.Pending(); got != 4 || pts != 1+2+3+4 {
		t.Fatalf("Pending = %d, %d; want 4, 10", got, pts)
	}
	es, err := b.Peek(3)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seqs(es), []uint64{1, 2, 3}) {
		t.Fatalf("Peek(3) = %v, want seqs 1 2 3", seqs(es))
	}
	for i, e := range es {
		if got := decode(t, e); !reflect.DeepEqual(got, points(i+1, i+1)) {
			t.Fatalf("entry %d decodes to %v", e.Seq, got)
		}
	}
	if err := b.Ack(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := b.Ack(2); err != nil { // twice is harmless
		t.Fatal(err)
	}
	es, _ = b.Peek(10)
	if !reflect.DeepEqual(seqs(es), []uint64{3, 4}) {
		t.Fatalf("after Ack(1,2): seqs %v, want 3 4", seqs(es))
	}
	if got, pts := b.Pending(); got != 2 || pts != 3+4 {
		t.Fatalf("Pending = %d, %d; want 2, 7", got, pts)
	}
	var sum int64
	for _, e := range es {
		sum += int64(len(e.Body))
	}
	if got := b.PendingBytes(); got != sum {
		t.Fatalf("PendingBytes = %d, want %d", got, sum)
	}
}

func TestBuffer_Open_restartKeepsEntriesAndSequence(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	b := open(t, dir, Options{})
	for id := 1; id <= 3; id++ {
		if err := b.Append(ctx, points(id, 2)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Ack(1); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = open(t, dir, Options{})
	if got, pts := b.Pending(); got != 2 || pts != 4 {
		t.Fatalf("after restart Pending = %d, %d; want 2, 4", got, pts)
	}
	es, _ := b.Peek(10)
	if !reflect.DeepEqual(seqs(es), []uint64{2, 3}) || !reflect.DeepEqual(decode(t, es[1]), points(3, 2)) {
		t.Fatalf("after restart: seqs %v", seqs(es))
	}
	// Empty the queue entirely: the next sequence must still not repeat.
	if err := b.Ack(2, 3); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = open(t, dir, Options{})
	defer b.Close()
	if err := b.Append(ctx, points(9, 1)); err != nil {
		t.Fatal(err)
	}
	es, _ = b.Peek(10)
	if !reflect.DeepEqual(seqs(es), []uint64{4}) {
		t.Fatalf("after emptying and restart: seqs %v, want 4", seqs(es))
	}
}

func TestBuffer_Append_concurrentExactlyOnce(t *testing.T) {
	b := open(t, t.TempDir(), Options{})
	defer b.Close()
	const writers, appends = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*appends)
	for w := range writers {
		wg.Go(func() {
			for a := range appends {
				if err := b.Append(t.Context(), points(w*1000+a, 3)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	es, err := b.Peek(math.MaxInt)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != writers*appends {
		t.Fatalf("%d entries, want %d", len(es), writers*appends)
	}
	seen := map[string]int{}
	for i, e := range es {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d; want dense increasing", i, e.Seq)
		}
		for _, p := range decode(t, e) {
			seen[p.SeriesKey("pm25")+fmt.Sprint(p.Time)]++
		}
	}
	for w := range writers {
		for a := range appends {
			for _, p := range points(w*1000+a, 3) {
				if n := seen[p.SeriesKey("pm25")+fmt.Sprint(p.Time)]; n != 1 {
					t.Fatalf("point of writer %d append %d stored %d times", w, a, n)
				}
			}
		}
	}
	if got, pts := b.Pending(); got != writers*appends || pts != writers*appends*3 {
		t.Fatalf("Pending = %d, %d", got, pts)
	}
}

func TestBuffer_Append_splitsEntries(t *testing.T) {
	b := open(t, t.TempDir(), Options{MaxEntryPoints: 4})
	defer b.Close()
	in := points(1, 10)
	if err := b.Append(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	es, _ := b.Peek(10)
	var got []protocols.Point
	var sizes []int
	for _, e := range es {
		got = append(got, decode(t, e)...)
		sizes = append(sizes, e.Points)
	}
	if !reflect.DeepEqual(sizes, []int{4, 4, 2}) || !reflect.DeepEqual(got, in) {
		t.Fatalf("entries of %v points", sizes)
	}
}

func TestBuffer_Append_invalidPointsLeftOut(t *testing.T) {
	b := open(t, t.TempDir(), Options{})
	defer b.Close()
	in := points(1, 3)
	in[1].Fields[0].Value = protocols.Float(math.NaN())
	err := b.Append(t.Context(), in)
	var ie *InvalidPointsError
	if !errors.As(err, &ie) || ie.Dropped != 1 || !errors.Is(err, protocols.ErrNotFinite) {
		t.Fatalf("Append = %v, want one invalid point reported", err)
	}
	es, _ := b.Peek(10)
	if len(es) != 1 || !reflect.DeepEqual(decode(t, es[0]), []protocols.Point{in[0], in[2]}) {
		t.Fatal("the valid points were not stored")
	}
}

func TestBuffer_Append_full(t *testing.T) {
	b := open(t, t.TempDir(), Options{MaxBytes: 200})
	defer b.Close()
	var full bool
	for id := 1; id <= 50 && !full; id++ {
		err := b.Append(t.Context(), points(id, 5))
		switch {
		case errors.Is(err, ErrFull):
			full = true
		case err != nil:
			t.Fatal(err)
		}
	}
	if !full {
		t.Fatal("never full")
	}
	if got := b.PendingBytes(); got > 200 {
		t.Fatalf("PendingBytes = %d over MaxBytes", got)
	}
	es, _ := b.Peek(100)
	if err := b.Ack(seqs(es)...); err != nil {
		t.Fatal(err)
	}
	if err := b.Append(t.Context(), points(99, 5)); err != nil {
		t.Fatalf("after Ack: %v", err)
	}
}

func TestBuffer_Open_locked(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, Options{})
	defer b.Close()
	if _, err := Open(dir, Options{}); err == nil {
		t.Fatal("second Open of the same directory succeeded")
	}
}

func TestBuffer_Appended_signals(t *testing.T) {
	b := open(t, t.TempDir(), Options{})
	defer b.Close()
	select {
	case <-b.Appended():
		t.Fatal("signal before any Append")
	default:
	}
	for id := range 3 {
		if err := b.Append(t.Context(), points(id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-b.Appended():
	default:
		t.Fatal("no signal after Append")
	}
}

func TestBuffer_Peek_empty(t *testing.T) {
	b := open(t, t.TempDir(), Options{})
	defer b.Close()
	es, err := b.Peek(10)
	if err != nil || len(es) != 0 {
		t.Fatalf("Peek on empty = %v, %v", es, err)
	}
	if n, p := b.Pending(); n != 0 || p != 0 {
		t.Fatalf("Pending on empty = %d, %d", n, p)
	}
}
