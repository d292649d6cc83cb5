package store

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

func TestParseRetention(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"forever", 0, false},
		{"0", 0, false},
		{"90d", 90 * day, false},
		{"2y", 2 * year, false},
		{"4w", 4 * week, false},
		{"36h", 36 * time.Hour, false},
		{" 7d ", 7 * day, false},
		{"0d", 0, true},
		{"-1d", 0, true},
		{"1.5y", 0, true},
		{"soon", 0, true},
		{"-36h", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRetention(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseRetention(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestRetention_Validate(t *testing.T) {
	tests := []struct {
		name string
		r    Retention
		ok   bool
	}{
		{"default", DefaultRetention(), true},
		{"all forever", Retention{}, true},
		{"raw forever but 1m not", Retention{Minute: 2 * year}, false},
		{"raw longer than 1m", Retention{Raw: year, Minute: 90 * day}, false},
		{"1m longer than 1h", Retention{Raw: day, Minute: year, Hour: 90 * day}, false},
		{"shorter than a partition", Retention{Raw: time.Hour}, false},
		{"negative", Retention{Raw: -day}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.r.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

// TestStore_retention ingests a small city day after day with a clock that
// moves along, and checks that each resolution disappears when its
// retention passes — raw first, its 1-minute rollups (written as raw
// expires) later, hours last — and that the files stop growing once every
// tier is at its retention.
func TestStore_retention(t *testing.T) {
	const days = 14
	start := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	opts := testOptions(start)
	opts.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	opts.Retention = Retention{Raw: 2 * day, Minute: 4 * day, Hour: 6 * day}
	opts.periods = [numTiers]time.Duration{day, day, day}
	dir := t.TempDir()
	s, err := OpenDir(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	params := sim.Params{Stations: 12, Seed: 3, Interval: 5 * time.Minute, Start: start}
	perDay := int(day / params.Interval)
	m := model{}
	sizes := make([]int64, days)
	for d := range days {
		for tick := d * perDay; tick < (d+1)*perDay; tick++ {
			pts := sim.Generate(params, tick)
			m.write(pts)
			if _, err := s.Append(pts, nil); err != nil {
				t.Fatal(err)
			}
		}
		// The next morning: the day has closed and retention has run.
		now := start.Add(time.Duration(d+1)*day + time.Hour)
		clock.Store(now.UnixNano())
		err := s.do(context.Background(), func() error {
			if err := s.flush(true); err != nil {
				return err
			}
			if err := s.closeDays(now); err != nil {
				return err
			}
			return s.applyRetention(now.UnixNano())
		})
		if err != nil {
			t.Fatal(err)
		}
		sizes[d] = diskBytes(t, dir)

		nowNS := now.UnixNano()
		for _, tc := range []struct {
			t    tier
			keep time.Duration
		}{{tierRaw, opts.Retention.Raw}, {tier1m, opts.Retention.Minute}, {tier1h, opts.Retention.Hour}} {
			files, _ := filepath.Glob(filepath.Join(dir, tc.t.String(), "*.db"))
			for _, f := range files {
				day0, err := time.Parse(partitionDate, filepath.Base(f)[:len(partitionDate)])
				if err != nil {
					t.Fatal(err)
				}
				if end := day0.Add(day).UnixNano(); end <= nowNS-int64(tc.keep) {
					t.Errorf("day %d: %s file %s outlived its retention", d, tc.t, filepath.Base(f))
				}
			}
		}
	}

	// What is left, as of the last morning: raw for the last 2 days, 1m
	// rollups for 2 days before, hours for 2 days before those.
	now := time.Unix(0, clock.Load())
	key := "air,district=" + sim.District(sim.Position(3, 1)) + ",station=s0001 pm25"
	refs, err := s.Lookup(Selector{Measurement: "air", Field: "pm25", Tags: map[string]string{"station": "s0001"}})
	if err != nil || len(refs) != 1 {
		t.Fatalf("Lookup = %v, %v", refs, err)
	}
	dayStart := func(back int) int64 { return floorTo(now.UnixNano(), int64(day)) - int64(back)*int64(day) }
	read := func(res time.Duration, back int) ([]Sample, []Bucket) {
		from, to := dayStart(back), dayStart(back-1)-1
		var smp []Sample
		var bs []Bucket
		if res == 0 {
			err = s.ReadRaw(context.Background(), refs, from, to, func(_ int, x []Sample) error { smp = append(smp, x...); return nil })
		} else {
			err = s.ReadRollups(context.Background(), refs, res, from, to, func(_ int, x []Bucket) error { bs = append(bs, x...); return nil })
		}
		if err != nil {
			t.Fatal(err)
		}
		return smp, bs
	}
	for back := 1; back <= 8; back++ {
		from, to := dayStart(back), dayStart(back-1)-1
		raw, _ := read(0, back)
		_, mins := read(time.Minute, back)
		_, hours := read(time.Hour, back)
		switch {
		case back <= 2:
			if want := m.samples(key, from, to); !samplesEqual(raw, want) {
				t.Errorf("%d days back: raw %s", back, firstDiff(raw, want))
			}
		case back <= 4:
			if len(raw) != 0 {
				t.Errorf("%d days back: %d raw points outlived raw retention", back, len(raw))
			}
			if want := m.buckets(key, int64(time.Minute), from, to); len(want) == 0 || !bucketsEqual(mins, want) {
				t.Errorf("%d days back: 1m rollups made at expiry %s", back, firstDiff(mins, want))
			}
		case back <= 6:
			if len(mins) != 0 {
				t.Errorf("%d days back: %d minutes outlived 1m retention", back, len(mins))
			}
			if want := m.buckets(key, int64(time.Hour), from, to); len(want) != 24 || !bucketsEqual(hours, want) {
				t.Errorf("%d days back: hours %s", back, firstDiff(hours, want))
			}
		default:
			if len(raw)+len(mins)+len(hours) != 0 {
				t.Errorf("%d days back: data outlived every retention: %d raw, %d minutes, %d hours", back, len(raw), len(mins), len(hours))
			}
		}
	}

	// Steady state: from the day every tier reached its retention on, the
	// files stay the size they were (a little slack for page reuse).
	settled := int(opts.Retention.Hour/day) + 1
	for d := settled + 1; d < days; d++ {
		if float64(sizes[d]) > 1.1*float64(sizes[settled]) {
			t.Errorf("day %d: %d bytes on disk, grew from %d at day %d: %v", d, sizes[d], sizes[settled], settled, sizes)
		}
	}
	t.Logf("bytes on disk per day: %v", sizes)
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}

var _ = protocols.KindFloat
