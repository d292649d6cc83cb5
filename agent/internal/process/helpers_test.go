package process

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"gopkg.in/yaml.v3"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

// t0 is a round time for test points: 2025-01-01T00:00:00Z.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// clock is an injected Env.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// testEnv returns an environment with a fresh metrics set and a clock at t0.
func testEnv() (Env, *clock) {
	c := newClock(t0)
	return Env{Metrics: metrics.NewSet(), Now: c.Now}, c
}

// parse builds a chain from the YAML of a processors list.
func parse(t testing.TB, list string, env Env) (*Chain, error) {
	t.Helper()
	var cfg struct {
		Processors []yaml.Node `yaml:"processors"`
	}
	doc, err := confx.Load("agent.yaml", []byte("processors:\n"+list), &cfg)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return Build(doc, cfg.Processors, "processors", env)
}

func mustParse(t testing.TB, list string, env Env) *Chain {
	t.Helper()
	c, err := parse(t, list, env)
	if err != nil {
		t.Fatalf("Build:\n%v", err)
	}
	return c
}

// points decodes line protocol with times in seconds from t0, so that test
// tables read "air,station=s1 pm25=12 60" for one minute past t0.
func points(t testing.TB, lp string) []protocols.Point {
	t.Helper()
	pts, err := protocols.DecodeAll([]byte(strings.TrimSpace(lp)), protocols.DecodeOptions{Precision: protocols.Second})
	if err != nil {
		t.Fatalf("decode %q: %v", lp, err)
	}
	for i := range pts {
		pts[i].Time += t0.UnixNano()
	}
	return pts
}

// lines formats points like line protocol with times in seconds from t0
// (fractions as ns), values as Value.String shows them, NaN included.
func lines(pts []protocols.Point) []string {
	out := make([]string, 0, len(pts))
	for _, p := range pts {
		var b strings.Builder
		b.WriteString(p.Measurement)
		for _, t := range p.Tags {
			b.WriteString("," + t.Key + "=" + t.Value)
		}
		for i, f := range p.Fields {
			if i == 0 {
				b.WriteByte(' ')
			} else {
				b.WriteByte(',')
			}
			b.WriteString(f.Key + "=" + f.Value.String())
		}
		d := p.Time - t0.UnixNano()
		if d%int64(time.Second) == 0 {
			b.WriteString(" " + strconv.FormatInt(d/int64(time.Second), 10))
		} else {
			b.WriteString(" " + strconv.FormatInt(d, 10) + "ns")
		}
		out = append(out, b.String())
	}
	return out
}

func split(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func equalLines(t testing.TB, what string, got []protocols.Point, want string) {
	t.Helper()
	g, w := lines(got), split(want)
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("%s:\ngot\n\t%s\nwant\n\t%s", what, strings.Join(g, "\n\t"), strings.Join(w, "\n\t"))
	}
}

// problems returns the problems of a Build error as "line: path: msg".
func problems(t testing.TB, err error) []string {
	t.Helper()
	var ps confx.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want confx.Problems, got %T: %v", err, err)
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		if p.File != "agent.yaml" {
			t.Errorf("problem %q names file %q, want agent.yaml", p.Msg, p.File)
		}
		out[i] = fmt.Sprintf("%d: %s: %s", p.Line, p.Path, p.Msg)
	}
	return out
}

// counter reads a counter of the set by its full name.
func counter(set *metrics.Set, name string) uint64 {
	return set.GetOrCreateCounter(name).Get()
}

func dropped(set *metrics.Set, stage, reason string) uint64 {
	return counter(set, fmt.Sprintf(`citysense_agent_process_dropped_total{stage=%q,reason=%q}`, stage, reason))
}

func passed(set *metrics.Set, stage, reason string) uint64 {
	return counter(set, fmt.Sprintf(`citysense_agent_process_passed_total{stage=%q,reason=%q}`, stage, reason))
}
