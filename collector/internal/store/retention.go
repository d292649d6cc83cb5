package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Retention is how long each resolution is kept; zero keeps it forever.
// Data leaves a whole partition file at a time, once the file's newest
// possible time is older than the retention: raw files hold a day, 1-minute
// files a week and 1-hour files four weeks, so data stays up to that much
// longer than asked.
type Retention struct {
	Raw    time.Duration // raw points; 90 days by default
	Minute time.Duration // 1-minute rollups; 2 years by default
	Hour   time.Duration // 1-hour rollups; forever by default
}

// DefaultRetention is raw 90d, 1m 2y, 1h forever.
func DefaultRetention() Retention {
	return Retention{Raw: 90 * day, Minute: 2 * year, Hour: 0}
}

const (
	day  = 24 * time.Hour
	week = 7 * day
	year = 365 * day
)

// Validate checks that coarser data is kept at least as long as finer data:
// the 1-minute rollups are made from the raw points as those expire, and a
// query falls back from raw to 1m to 1h as it reaches further back.
func (r Retention) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"raw", r.Raw}, {"1m", r.Minute}, {"1h", r.Hour}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("retention %s: %s is negative", d.name, d.v))
		} else if d.v > 0 && d.v < day {
			errs = append(errs, fmt.Errorf("retention %s: %s is less than a day, the size of a partition", d.name, d.v))
		}
	}
	longer := func(a, b time.Duration) bool { return b != 0 && (a == 0 || a > b) }
	if longer(r.Raw, r.Minute) {
		errs = append(errs, fmt.Errorf("retention: raw (%s) is kept longer than 1m (%s)", fmtRetention(r.Raw), fmtRetention(r.Minute)))
	}
	if longer(r.Minute, r.Hour) {
		errs = append(errs, fmt.Errorf("retention: 1m (%s) is kept longer than 1h (%s)", fmtRetention(r.Minute), fmtRetention(r.Hour)))
	}
	return errors.Join(errs...)
}

func fmtRetention(d time.Duration) string {
	if d == 0 {
		return "forever"
	}
	return d.String()
}

// ParseRetention reads a retention period: "forever" (or "0"), whole years
// "2y", weeks "4w", days "90d", or a Go duration "36h". A year is 365 days.
func ParseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "forever" || s == "0" {
		return 0, nil
	}
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{{"y", year}, {"w", week}, {"d", day}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseUint(n, 10, 16)
			if err != nil || v == 0 {
				return 0, fmt.Errorf("retention %q: want a whole positive number of %s", s, u.suffix)
			}
			return time.Duration(v) * u.d, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("retention %q: want forever, Ny, Nw, Nd or a duration like 36h", s)
	}
	return d, nil
}

// rawCutoff is the earliest time a raw point may have: points of a day
// whose partition retention would delete are refused at the door.
func (s *Store) rawCutoff(now int64) int64 {
	if s.opts.Retention.Raw == 0 {
		return minTime
	}
	return floorTo(now-int64(s.opts.Retention.Raw), s.parts.period[tierRaw]) + s.parts.period[tierRaw]
}

const (
	minTime = -1 << 63
	maxTime = 1<<63 - 1
)

// applyRetention deletes expired partition files. A raw day leaves only
// after its 1-minute rollups were written, so that a crash in between at
// worst writes them again.
func (s *Store) applyRetention(now int64) error {
	ret := s.opts.Retention
	var errs []error
	expired := func(t tier, keep time.Duration) []*partition {
		if keep == 0 {
			return nil
		}
		return s.parts.list(t, minTime, maxTime)
	}
	for _, p := range expired(tierRaw, ret.Raw) {
		if p.end > now-int64(ret.Raw) {
			continue
		}
		if !s.rolledUp(p.start) {
			if err := s.rollupDay(p); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if ret.Minute == 0 || p.end > now-int64(ret.Minute) {
			if err := s.downsample(p); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := s.parts.remove(p); err != nil {
			errs = append(errs, err)
			continue
		}
		s.cache.forget(p)
		s.rollups.forget(p)
		s.m.partitionsDeleted.Inc()
		s.log.Info("store: raw partition expired", "partition", p.path)
	}
	for _, tk := range []struct {
		t    tier
		keep time.Duration
	}{{tier1m, ret.Minute}, {tier1h, ret.Hour}} {
		for _, p := range expired(tk.t, tk.keep) {
			if p.end > now-int64(tk.keep) {
				continue
			}
			if err := s.parts.remove(p); err != nil {
				errs = append(errs, err)
				continue
			}
			s.cache.forget(p)
			s.rollups.forget(p)
			s.m.partitionsDeleted.Inc()
			s.log.Info("store: partition expired", "tier", tk.t.String(), "partition", p.path)
		}
	}
	return errors.Join(errs...)
}

// downsample writes the 1-minute rollups of raw partition p (one day) into
// the 1m tier. While raw points exist, 1-minute aggregates are computed from
// them at query time: for the usual one reading a minute a 1m rollup holds as
// many rows as the raw data, so keeping both would double the disk for
// nothing.
func (s *Store) downsample(p *partition) error {
	entries, err := s.aggregateDay(p, int64(time.Minute))
	if err != nil {
		return fmt.Errorf("downsample %q: %w", p.path, err)
	}
	if len(entries) == 0 {
		return nil
	}
	dst, db, err := s.parts.create(tier1m, p.start)
	if err != nil {
		return err
	}
	err = dst.update(db, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlocks)
		for _, g := range entries {
			if err := s.replaceChunks(b, g.gid, p.start, g.entries); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("downsample %q: %w", p.path, err)
	}
	return nil
}
