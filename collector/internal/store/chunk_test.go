package store

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/goleak"

	"github.com/citysense/citysense/protocols"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func col(ts []int64, vs ...protocols.Value) *column {
	c := &column{sorted: true}
	for i, t := range ts {
		c.append(t, vs[i])
	}
	return c
}

func values(c *column) []protocols.Value {
	out := make([]protocols.Value, c.len())
	for i := range out {
		out[i] = c.value(i)
	}
	return out
}

func TestDecimalScale(t *testing.T) {
	tests := []struct {
		f     float64
		scale int
		ok    bool
	}{
		{0, 0, true},
		{12, 0, true},
		{12.3, 1, true},
		{-0.05, 2, true},
		{48.21375, 5, true},
		{1e15, 0, true},
		{math.Nextafter(0.3, 1), 0, false}, // 0.30000000000000004, as 0.1+0.2 computes, is no short decimal
		{math.Pi, 0, false},
		{math.Copysign(0, -1), 0, false}, // would come back as +0
		{1e300, 0, false},
		{5e-324, 0, false},
	}
	for _, tt := range tests {
		k, ok := decimalScale(tt.f)
		if ok != tt.ok || (ok && k != tt.scale) {
			t.Errorf("decimalScale(%v) = %d, %v; want %d, %v", tt.f, k, ok, tt.scale, tt.ok)
		}
	}
}

// TestChunk_encodeDecode_roundTrip checks that every kind and encoding
// comes back bit for bit, and which encoding each column gets.
func TestChunk_encodeDecode_roundTrip(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	m := int64(time.Minute)
	ts := []int64{base, base + m, base + 2*m, base + 3*m + 7, base + 7199*int64(time.Second)}
	tests := []struct {
		name string
		vs   []protocols.Value
		xor  bool
	}{
		{"decimals", []protocols.Value{protocols.Float(12.3), protocols.Float(12.4), protocols.Float(-3), protocols.Float(0), protocols.Float(99999.99)}, false},
		{"not decimals", []protocols.Value{protocols.Float(math.Pi), protocols.Float(math.E), protocols.Float(math.Pi), protocols.Float(1e-300), protocols.Float(-math.MaxFloat64)}, true},
		{"negative zero", []protocols.Value{protocols.Float(1), protocols.Float(math.Copysign(0, -1)), protocols.Float(1), protocols.Float(1), protocols.Float(2)}, true},
		{"ints", []protocols.Value{protocols.Int(math.MinInt64), protocols.Int(math.MaxInt64), protocols.Int(0), protocols.Int(-1), protocols.Int(17)}, false},
		{"uints", []protocols.Value{protocols.Uint(math.MaxUint64), protocols.Uint(0), protocols.Uint(1 << 63), protocols.Uint(5), protocols.Uint(5)}, false},
		{"bools", []protocols.Value{protocols.Bool(true), protocols.Bool(false), protocols.Bool(false), protocols.Bool(true), protocols.Bool(true)}, false},
		{"strings", []protocols.Value{protocols.String(""), protocols.String("é \"q\""), protocols.String("a,b=c"), protocols.String(""), protocols.String("x")}, false},
		{"mixed kinds", []protocols.Value{protocols.Int(1), protocols.Float(1.5), protocols.String("s"), protocols.Bool(true), protocols.Uint(9)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := col(ts, tt.vs...)
			streams := encodeChunk(c, base)
			if got := streams[0][0]&encXOR != 0; got != tt.xor {
				t.Errorf("XOR encoding %v, want %v", got, tt.xor)
			}
			var back column
			if err := decodeChunk(streams, base, &back); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(back.ts, ts) {
				t.Errorf("times %v, want %v", back.ts, ts)
			}
			if got := values(&back); !slices.EqualFunc(got, tt.vs, protocols.Value.Equal) {
				t.Errorf("values %v, want %v", got, tt.vs)
			}
		})
	}
}

func TestChunk_decode_corrupt(t *testing.T) {
	base := int64(0)
	c := col([]int64{1, 2, 3}, protocols.Float(1.5), protocols.Float(2.5), protocols.Float(3.5))
	good := encodeChunk(c, base)
	tests := []struct {
		name    string
		streams [][]byte
	}{
		{"too few streams", good[:2]},
		{"empty meta", [][]byte{nil, good[1], good[2]}},
		{"truncated values", [][]byte{good[0], good[1], good[2][:len(good[2])-1]}},
		{"trailing time bytes", [][]byte{good[0], append(slices.Clone(good[1]), 0), good[2]}},
		{"huge count", [][]byte{{1, 0, 1, 0xff, 0xff, 0xff, 0x7f, 0}, good[1], good[2]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var back column
			if err := decodeChunk(tt.streams, base, &back); err == nil {
				t.Errorf("decoded %v without error", values(&back))
			}
		})
	}
}

// TestChunk_encodeDecode_random round-trips random columns of every kind.
func TestChunk_encodeDecode_random(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := int64(1 << 60)
	for i := range 300 {
		n := 1 + rng.IntN(200)
		c := &column{sorted: true}
		tm := base + rng.Int64N(1e9)
		kind := rng.IntN(6)
		for range n {
			tm += 1 + rng.Int64N(int64(time.Minute))
			var v protocols.Value
			switch kind {
			case 0:
				v = protocols.Float(float64(rng.IntN(1e6)-5e5) / 1000)
			case 1:
				v = protocols.Float(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(40)-20)))
			case 2:
				v = protocols.Int(int64(rng.Uint64()))
			case 3:
				v = protocols.Uint(rng.Uint64() >> rng.IntN(64))
			case 4:
				v = protocols.Bool(rng.IntN(2) == 0)
			default:
				v = protocols.String(string(rune('a' + rng.IntN(26))))
			}
			c.append(tm, v)
		}
		var back column
		if err := decodeChunk(encodeChunk(c, base), base, &back); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !slices.Equal(back.ts, c.ts) || !slices.EqualFunc(values(&back), values(c), protocols.Value.Equal) {
			t.Fatalf("case %d (kind %d): round trip differs", i, kind)
		}
	}
}

func TestColumn_normalize_lastWriteWins(t *testing.T) {
	c := col([]int64{30, 10, 20, 10, 30, 5},
		protocols.Int(1), protocols.Int(2), protocols.Int(3), protocols.Int(4), protocols.Int(5), protocols.Int(6))
	c.normalize()
	if want := []int64{5, 10, 20, 30}; !slices.Equal(c.ts, want) {
		t.Fatalf("times %v, want %v", c.ts, want)
	}
	if got, want := values(c), []protocols.Value{protocols.Int(6), protocols.Int(4), protocols.Int(3), protocols.Int(5)}; !slices.Equal(got, want) {
		t.Errorf("values %v, want %v", got, want)
	}
}

// Whatever the disorder — a few places off (the in-place path), shuffled
// (it gives up half-way), many duplicates — normalize sorts stably and the
// last sample of a time wins.
func TestColumn_normalize_disorder(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for round := range 300 {
		n := 1 + r.IntN(400)
		ts := make([]int64, n)
		vals := make([]protocols.Value, n)
		for i := range ts {
			switch round % 3 {
			case 0: // nearly sorted
				ts[i] = int64(i + r.IntN(5))
			case 1: // shuffled
				ts[i] = int64(r.IntN(n))
			default: // few times, many duplicates
				ts[i] = int64(r.IntN(8) + i/50)
			}
			vals[i] = protocols.Int(int64(i))
		}
		// The reference: for each time, the last value appended.
		last := map[int64]protocols.Value{}
		for i, t := range ts {
			last[t] = vals[i]
		}
		var wantT []int64
		for t := range last {
			wantT = append(wantT, t)
		}
		slices.Sort(wantT)
		var wantV []protocols.Value
		for _, t := range wantT {
			wantV = append(wantV, last[t])
		}
		c := col(ts, vals...)
		c.normalize()
		if !slices.Equal(c.ts, wantT) || !slices.Equal(values(c), wantV) {
			t.Fatalf("round %d: times %v values %v, want %v %v", round, c.ts, values(c), wantT, wantV)
		}
	}
}

func TestColumn_mergeColumns(t *testing.T) {
	tests := []struct {
		name      string
		old, upd  *column
		wantTimes []int64
		wantVals  []protocols.Value
	}{
		{"interleaved, new wins ties",
			col([]int64{1, 3, 5}, protocols.Int(1), protocols.Int(3), protocols.Int(5)),
			col([]int64{2, 3, 6}, protocols.Int(20), protocols.Int(30), protocols.Int(60)),
			[]int64{1, 2, 3, 5, 6}, []protocols.Value{protocols.Int(1), protocols.Int(20), protocols.Int(30), protocols.Int(5), protocols.Int(60)}},
		{"nothing old", nil, col([]int64{1}, protocols.Bool(true)), []int64{1}, []protocols.Value{protocols.Bool(true)}},
		{"kind changes", col([]int64{1, 2}, protocols.Float(1.5), protocols.Float(2.5)), col([]int64{2}, protocols.String("two")),
			[]int64{1, 2}, []protocols.Value{protocols.Float(1.5), protocols.String("two")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeColumns(tt.old, tt.upd)
			if !slices.Equal(got.ts, tt.wantTimes) || !slices.Equal(values(got), tt.wantVals) {
				t.Errorf("merged %v %v, want %v %v", got.ts, values(got), tt.wantTimes, tt.wantVals)
			}
		})
	}
}

func TestCodec_packBlocks_roundTrip(t *testing.T) {
	cd, err := newCodec()
	if err != nil {
		t.Fatal(err)
	}
	defer cd.close()
	var entries []entry
	base := int64(0)
	for id := uint32(3); id < 3000; id += 3 {
		c := &column{sorted: true}
		for i := range 60 {
			c.append(int64(i+1)*1e9, protocols.Float(float64(id)/10+float64(i*i)))
		}
		entries = append(entries, entry{id: id, streams: encodeChunk(c, base)})
	}
	var firsts []uint32
	var blocks [][]byte
	err = cd.packBlocks(entries, func(first uint32, data []byte) error {
		firsts = append(firsts, first)
		blocks = append(blocks, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for i, data := range blocks {
		b, err := cd.decodeBlock(data)
		if err != nil {
			t.Fatal(err)
		}
		if b.ids[0] != firsts[i] {
			t.Errorf("block %d starts at %d, keyed %d", i, b.ids[0], firsts[i])
		}
		for _, id := range b.ids {
			streams, ok := b.chunk(id)
			var c column
			if !ok || decodeChunk(streams, base, &c) != nil || c.value(0).FloatV() != float64(id)/10 {
				t.Fatalf("chunk %d of block %d does not decode", id, i)
			}
			seen++
		}
		if _, ok := b.chunk(firsts[i] + 1); ok {
			t.Errorf("block %d has an id it never got", i)
		}
	}
	if seen != len(entries) || len(blocks) < 2 {
		t.Errorf("%d chunks in %d blocks, want %d in several", seen, len(blocks), len(entries))
	}
	if _, err := cd.decodeBlock([]byte("not zstd")); err == nil {
		t.Error("garbage decoded as a block")
	}
	// A well-formed frame whose lengths overrun.
	enc, _ := zstd.NewWriter(nil)
	defer enc.Close()
	bad := enc.EncodeAll([]byte{blockVersion, 3, 1, 5, 100, 100, 100}, nil)
	if _, err := cd.decodeBlock(bad); err == nil {
		t.Error("a block whose chunks overrun it decoded")
	}
}

func TestAppendBuckets_exactDecimalSums(t *testing.T) {
	// 0.1 added ten times in floats is 0.9999999999999999; as tenths it is 1.
	var ts []int64
	var vs []protocols.Value
	for i := range 10 {
		ts = append(ts, int64(i))
		vs = append(vs, protocols.Float(0.1))
	}
	bs := appendBuckets(nil, col(ts, vs...), int64(time.Hour))
	if len(bs) != 1 || bs[0].Sum != 1 || bs[0].Count != 10 {
		t.Fatalf("buckets %+v, want one with sum 1 and count 10", bs)
	}
	streams := encodeRollupChunk(bs, 0, int64(time.Hour))
	if streams[0][0] != 0 {
		t.Error("an exact decimal rollup fell back to XOR")
	}
}
