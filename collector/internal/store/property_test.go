package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
)

// model is what a store must answer: per series key, per time, the last
// value written.
type model map[string]map[int64]protocols.Value

func (m model) write(pts []protocols.Point) {
	for i := range pts {
		p := &pts[i]
		for _, f := range p.Fields {
			k := p.SeriesKey(f.Key)
			if m[k] == nil {
				m[k] = map[int64]protocols.Value{}
			}
			m[k][p.Time] = f.Value
		}
	}
}

func (m model) samples(key string, from, to int64) []Sample {
	var out []Sample
	for t, v := range m[key] {
		if t >= from && t <= to {
			out = append(out, Sample{Time: t, Value: v})
		}
	}
	slices.SortFunc(out, func(a, b Sample) int { return cmpInt(a.Time, b.Time) })
	return out
}

// buckets is the brute-force rollup of a series: every numeric sample
// folded into the bucket of res it falls in.
func (m model) buckets(key string, res, from, to int64) []Bucket {
	var out []Bucket
	for _, smp := range m.samples(key, minTime, maxTime) {
		v, ok := smp.Value.AsFloat()
		start := floorTo(smp.Time, res)
		if !ok || start < from || start > to {
			continue
		}
		if n := len(out); n == 0 || out[n-1].Start != start {
			out = append(out, Bucket{Start: start, Min: v, Max: v, First: v, FirstTime: smp.Time})
		}
		b := &out[len(out)-1]
		b.Count++
		b.Sum += v
		b.Min = math.Min(b.Min, v)
		b.Max = math.Max(b.Max, v)
		b.Last, b.LastTime = v, smp.Time
	}
	return out
}

// gen makes random points of a small city: a few series of every kind,
// one field that changes kind, times spread over a few days with repeats.
type gen struct {
	rng   *rand.Rand
	base  int64
	span  int64
	times map[string][]int64 // times used per tag set, to repeat them
}

func (g *gen) value(field string) protocols.Value {
	r := g.rng
	switch field {
	case "pm25":
		return protocols.Float(float64(r.IntN(3000)) / 10)
	case "temp":
		if r.IntN(4) == 0 {
			return protocols.Float(r.NormFloat64() * 100) // not a short decimal
		}
		return protocols.Float(float64(r.IntN(8000)-4000) / 100)
	case "count":
		switch r.IntN(20) {
		case 0:
			return protocols.Int(math.MinInt64)
		case 1:
			return protocols.Int(math.MaxInt64)
		}
		return protocols.Int(r.Int64N(1000) - 500)
	case "total":
		return protocols.Uint(r.Uint64() >> uint(r.IntN(64)))
	case "open":
		return protocols.Bool(r.IntN(2) == 0)
	case "note":
		return protocols.String(fmt.Sprintf("n%d é,=\"", r.IntN(5)))
	case "mixed":
		switch r.IntN(3) {
		case 0:
			return protocols.Int(r.Int64N(100))
		case 1:
			return protocols.Float(float64(r.IntN(100)) / 4)
		}
		return protocols.String("x")
	}
	panic(field)
}

var genFields = map[string][]string{
	"air":   {"pm25", "temp"},
	"meter": {"count", "total", "open", "note", "mixed"},
}

func (g *gen) batch() []protocols.Point {
	r := g.rng
	n := 1 + r.IntN(60)
	pts := make([]protocols.Point, 0, n)
	for range n {
		m := []string{"air", "meter"}[r.IntN(2)]
		station := fmt.Sprintf("s%d", 1+r.IntN(3))
		set := m + "/" + station
		var t int64
		if used := g.times[set]; len(used) > 0 && r.IntN(4) == 0 {
			t = used[r.IntN(len(used))] // a rewrite of an existing time
		} else {
			t = g.base + r.Int64N(g.span)
			if r.IntN(2) == 0 {
				t = t / 1e9 * 1e9 // whole seconds, like most devices
			}
			g.times[set] = append(g.times[set], t)
		}
		var fields []protocols.Field
		for _, f := range genFields[m] {
			if r.IntN(3) > 0 {
				fields = append(fields, protocols.Field{Key: f, Value: g.value(f)})
			}
		}
		if len(fields) == 0 {
			f := genFields[m][0]
			fields = append(fields, protocols.Field{Key: f, Value: g.value(f)})
		}
		p, err := protocols.NewPoint(m, map[string]string{"station": station, "district": "d01"}, fields, t)
		if err != nil {
			panic(err)
		}
		pts = append(pts, p)
	}
	return pts
}

func testOptions(now time.Time) Options {
	opts := DefaultOptions()
	opts.Retention = Retention{}
	opts.FlushInterval = 5 * time.Millisecond
	opts.Now = func() time.Time { return now }
	return opts
}

// settle writes the head and closes every finished day, on the writer
// goroutine as the store itself does.
func settle(t *testing.T, s *Store) {
	t.Helper()
	err := s.do(context.Background(), func() error {
		if err := s.flush(true); err != nil {
			return err
		}
		return s.closeDays(s.opts.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// check compares everything the store answers with the model.
func check(t *testing.T, s *Store, m model, from, to int64) {
	t.Helper()
	hour := int64(time.Hour)
	for key := range m {
		meas, tags, field, err := protocols.ParseSeriesKey(key)
		if err != nil {
			t.Fatal(err)
		}
		sel := Selector{Measurement: meas, Field: field, Tags: map[string]string{"station": tags[1].Value}}
		got, err := s.Select(sel, minTime, maxTime)
		if err != nil {
			t.Fatal(err)
		}
		want := m.samples(key, minTime, maxTime)
		if len(got) != 1 || !samplesEqual(got[0].Samples, want) {
			var gs []Sample
			if len(got) > 0 {
				gs = got[0].Samples
			}
			t.Fatalf("%s: read back %d series: %s", key, len(got), firstDiff(gs, want))
		}
		refs, err := s.Lookup(sel)
		if err != nil || len(refs) != 1 {
			t.Fatalf("Lookup(%s) = %v, %v", key, refs, err)
		}
		for _, res := range []int64{hour, int64(time.Minute)} {
			var gotB []Bucket
			err = s.ReadRollups(context.Background(), refs, time.Duration(res), from, to, func(_ int, bs []Bucket) error {
				gotB = append(gotB, bs...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if wantB := m.buckets(key, res, floorTo(from, res), to); !bucketsEqual(gotB, wantB) {
				t.Fatalf("%s: %s rollups differ: %s", key, time.Duration(res), firstDiff(gotB, wantB))
			}
		}
		// Latest at a few instants.
		for _, at := range []int64{from + (to-from)/3, to, from} {
			var gotL []Sample
			err := s.Latest(context.Background(), refs, at-6*hour, at, func(_ int, smp Sample) error {
				gotL = append(gotL, smp)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var wantL []Sample
			if w := m.samples(key, at-6*hour, at); len(w) > 0 {
				wantL = w[len(w)-1:]
			}
			if !samplesEqual(gotL, wantL) {
				t.Fatalf("%s: latest at %d = %v, want %v", key, at, gotL, wantL)
			}
		}
	}
}

// firstDiff describes where two slices part.
func firstDiff[T any](got, want []T) string {
	for i := range min(len(got), len(want)) {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			return fmt.Sprintf("at %d of %d/%d: got %+v, want %+v", i, len(got), len(want), got[i], want[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(got), len(want))
}

func samplesEqual(a, b []Sample) bool {
	return slices.EqualFunc(a, b, func(x, y Sample) bool { return x.Time == y.Time && x.Value.Equal(y.Value) })
}

// bucketsEqual compares buckets exactly but for the sum, which may differ
// by rounding: the store sums decimals and integers exactly, the model in
// floats. The bound is relative to the size of the terms, not of the sum,
// which may cancel out.
func bucketsEqual(a, b []Bucket) bool {
	return slices.EqualFunc(a, b, func(x, y Bucket) bool {
		bound := 1e-9 * float64(y.Count) * math.Max(math.Abs(y.Min), math.Abs(y.Max))
		sumOK := x.Sum == y.Sum || math.Abs(x.Sum-y.Sum) <= bound
		x.Sum, y.Sum = 0, 0
		return sumOK && x == y
	})
}

// TestStore_property writes random points of every kind in random order,
// with rewrites of the same series and time, through Append and Write,
// flushing, closing days and restarting at random, and checks raw points,
// rollups and latest values against a model after every restart.
func TestStore_property(t *testing.T) {
	seeds := 5
	if testing.Short() || raceEnabled {
		seeds = 1
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
			g := &gen{rng: rand.New(rand.NewPCG(seed, 42)), base: base, span: int64(3 * day), times: map[string][]int64{}}
			now := time.Unix(0, base).Add(5 * day)
			dir := t.TempDir()
			s, err := OpenDir(dir, testOptions(now))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { s.Close() }()
			m := model{}
			for range 40 {
				pts := g.batch()
				m.write(pts)
				if g.rng.IntN(5) == 0 {
					if _, err := s.Write(pts); err != nil {
						t.Fatal(err)
					}
				} else if _, err := s.Append(pts, nil); err != nil {
					t.Fatal(err)
				}
				switch g.rng.IntN(10) {
				case 0:
					settle(t, s)
				case 1:
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					if s, err = OpenDir(dir, testOptions(now)); err != nil {
						t.Fatal(err)
					}
				case 2:
					check(t, s, m, base-int64(day), base+int64(4*day))
				}
			}
			settle(t, s)
			check(t, s, m, base-int64(day), base+int64(4*day))
			// Partial ranges cut buckets at their starts.
			check(t, s, m, base+int64(day)+17*int64(time.Minute), base+int64(2*day))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = OpenDir(dir, testOptions(now)); err != nil {
				t.Fatal(err)
			}
			check(t, s, m, base-int64(day), base+int64(4*day))
		})
	}
}
