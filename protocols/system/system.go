package system

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed sample.yaml
var sampleConfig string

func init() {
	protocols.Register("system", func() protocols.Input { return New() })
}

// DefaultInterval is how often the health is read by default.
const DefaultInterval = 30 * time.Second

// Input is the "system" input. Its exported fields are its YAML configuration.
type Input struct {
	Interval    confx.Duration    `yaml:"interval"`
	Disks       []string          `yaml:"disks"`
	Temperature bool              `yaml:"temperature"`
	Tags        map[string]string `yaml:"tags"`

	log  *slog.Logger
	root string // "/" in production; a fake tree in tests
	tags []protocols.Tag
	prev cpuTimes
}

// New returns an Input with the documented defaults.
func New() *Input {
	return &Input{Interval: confx.Duration(DefaultInterval), Disks: []string{"/"}, Temperature: true, root: "/"}
}

// SampleConfig returns the documented example configuration.
func (*Input) SampleConfig() string { return sampleConfig }

// Init validates the configuration without I/O.
func (in *Input) Init(log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in.log = log
	if in.root == "" {
		in.root = "/"
	}
	var errs []error
	if in.Interval.D() < 100*time.Millisecond {
		errs = append(errs, confx.Problem{Path: "interval", Msg: fmt.Sprintf("must be at least 100ms, got %v", in.Interval)})
	}
	for i, d := range in.Disks {
		if !filepath.IsAbs(d) {
			errs = append(errs, confx.Problem{Path: fmt.Sprintf("disks[%d]", i), Msg: fmt.Sprintf("want an absolute mount point, got %q", d)})
		}
	}
	in.tags = nil
	for k, v := range in.Tags {
		if k == "" {
			errs = append(errs, confx.Problem{Path: "tags", Msg: "empty tag key"})
		}
		in.tags = append(in.tags, protocols.Tag{Key: k, Value: v})
	}
	slices.SortFunc(in.tags, func(a, b protocols.Tag) int { return strings.Compare(a.Key, b.Key) })
	return errors.Join(errs...)
}

// Run reads the health every interval until ctx is done.
func (in *Input) Run(ctx context.Context, acc protocols.Accumulator) error {
	if in.log == nil {
		if err := in.Init(nil); err != nil {
			return err
		}
	}
	iv := in.Interval.D()
	var lastLog time.Time
	for {
		tick := time.Now().Truncate(iv).Add(iv)
		t := time.NewTimer(time.Until(tick))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		pts, err := in.Gather(tick)
		if err != nil && time.Since(lastLog) > time.Minute {
			lastLog = time.Now()
			in.log.Warn("system: some readings failed", "err", err)
		}
		if len(pts) == 0 {
			continue
		}
		// A refused write is dropped: the next poll brings fresher data.
		if err := acc.Write(ctx, pts); err != nil && ctx.Err() == nil {
			in.log.Warn("system: write refused, reading dropped", "err", err)
		}
	}
}

// Gather reads everything once and returns the points stamped with at,
// plus the problems met (the readings that worked are still returned).
func (in *Input) Gather(at time.Time) ([]protocols.Point, error) {
	ts := at.UnixNano()
	var errs []error
	var sys []protocols.Field
	add := func(k string, v protocols.Value) { sys = append(sys, protocols.Field{Key: k, Value: v}) }

	if b, err := os.ReadFile(filepath.Join(in.root, "proc/loadavg")); err != nil {
		errs = append(errs, err)
	} else if f := strings.Fields(string(b)); len(f) >= 3 {
		for i, k := range []string{"load1", "load5", "load15"} {
			if x, err := strconv.ParseFloat(f[i], 64); err == nil {
				add(k, protocols.Float(x))
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(in.root, "proc/uptime")); err != nil {
		errs = append(errs, err)
	} else if f := strings.Fields(string(b)); len(f) >= 1 {
		if x, err := strconv.ParseFloat(f[0], 64); err == nil {
			add("uptime_s", protocols.Float(x))
		}
	}
	cur, ncpu, err := readCPU(filepath.Join(in.root, "proc/stat"))
	if err != nil {
		errs = append(errs, err)
	} else {
		add("cpus", protocols.Int(int64(ncpu)))
		if in.prev.total > 0 && cur.total > in.prev.total {
			dt := float64(cur.total - in.prev.total)
			add("cpu_usage_percent", protocols.Float(round2(100*(1-float64(cur.idle+cur.iowait-in.prev.idle-in.prev.iowait)/dt))))
			add("cpu_iowait_percent", protocols.Float(round2(100*float64(cur.iowait-in.prev.iowait)/dt)))
		}
		in.prev = cur
	}
	if mem, err := readMeminfo(filepath.Join(in.root, "proc/meminfo")); err != nil {
		errs = append(errs, err)
	} else if total := mem["MemTotal"]; total > 0 {
		avail := mem["MemAvailable"]
		add("mem_total_bytes", protocols.Int(total))
		add("mem_available_bytes", protocols.Int(avail))
		add("mem_used_percent", protocols.Float(round2(100*float64(total-avail)/float64(total))))
		add("swap_total_bytes", protocols.Int(mem["SwapTotal"]))
		add("swap_used_bytes", protocols.Int(mem["SwapTotal"]-mem["SwapFree"]))
	}
	var pts []protocols.Point
	if len(sys) > 0 {
		pts = append(pts, in.point("system", nil, sys, ts))
	}
	for _, d := range in.Disks {
		total, free, err := diskUsage(filepath.Join(in.root, d))
		if err != nil {
			errs = append(errs, fmt.Errorf("disk %s: %w", d, err))
			continue
		}
		used := 0.0
		if total > 0 {
			used = round2(100 * float64(total-free) / float64(total))
		}
		pts = append(pts, in.point("disk", []protocols.Tag{{Key: "path", Value: d}}, []protocols.Field{
			{Key: "total_bytes", Value: protocols.Int(int64(total))},
			{Key: "free_bytes", Value: protocols.Int(int64(free))},
			{Key: "used_percent", Value: protocols.Float(used)},
		}, ts))
	}
	if in.Temperature {
		zones, _ := filepath.Glob(filepath.Join(in.root, "sys/class/thermal/thermal_zone*"))
		for _, z := range zones {
			b, err := os.ReadFile(filepath.Join(z, "temp"))
			if err != nil {
				continue // some zones fail while their device sleeps
			}
			milli, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				continue
			}
			typ, _ := os.ReadFile(filepath.Join(z, "type"))
			tags := []protocols.Tag{{Key: "zone", Value: filepath.Base(z)}}
			if t := strings.TrimSpace(string(typ)); t != "" {
				tags = append(tags, protocols.Tag{Key: "type", Value: t})
			}
			pts = append(pts, in.point("temperature", tags, []protocols.Field{{Key: "celsius", Value: protocols.Float(float64(milli) / 1000)}}, ts))
		}
	}
	return pts, errors.Join(errs...)
}

func (in *Input) point(m string, tags []protocols.Tag, fields []protocols.Field, ts int64) protocols.Point {
	all := append(slices.Clone(in.tags), tags...)
	p := protocols.Point{Measurement: m, Tags: all, Fields: fields, Time: ts}
	p.SortTags()
	return p
}

type cpuTimes struct{ total, idle, iowait uint64 }

// readCPU reads the aggregate "cpu" line of /proc/stat and counts cpuN lines.
func readCPU(path string) (cpuTimes, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return cpuTimes{}, 0, err
	}
	var ct cpuTimes
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "cpu") {
			continue
		}
		f := strings.Fields(line)
		if f[0] != "cpu" {
			n++
			continue
		}
		// user nice system idle iowait irq softirq steal (guest time is
		// already counted in user and nice).
		for i := 1; i < len(f) && i <= 8; i++ {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			ct.total += v
			switch i {
			case 4:
				ct.idle = v
			case 5:
				ct.iowait = v
			}
		}
	}
	if ct.total == 0 {
		return ct, n, fmt.Errorf("%s: no cpu line", path)
	}
	return ct, n, nil
}

// readMeminfo returns /proc/meminfo in bytes.
func readMeminfo(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		out[k] = v
	}
	return out, nil
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// Interface guards.
var (
	_ protocols.Input        = (*Input)(nil)
	_ protocols.SampleConfig = (*Input)(nil)
)
