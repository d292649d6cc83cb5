package process

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/protocols"
)

func TestBuild_problems(t *testing.T) {
	tests := []struct {
		name string
		list string
		want []string // "line: path: message prefix"
	}{
		{
			name: "not a mapping",
			list: "  - filter\n",
			want: []string{"2: processors[0]: want a mapping with a type key"},
		},
		{
			name: "missing and unknown type",
			list: "  - {include: {measurement: [air]}}\n  - type: dedup\n",
			want: []string{
				"2: processors[0]: missing type (known: aggregate, deadband, filter, rename, scale, tags)",
				"3: processors[1]: unknown processor type \"dedup\"",
			},
		},
		{
			name: "unknown keys in several stages, all reported",
			list: `  - type: filter
    inclde: {measurement: [air]}
  - type: aggregate
    window: 1m
    functions: [mean]
    windw: 5m
`,
			want: []string{
				`3: processors[0].inclde: unknown key "inclde" (known: drop_non_finite, exclude, include, range)`,
				`7: processors[1].windw: unknown key "windw"`,
			},
		},
		{
			name: "filter values",
			list: `  - type: filter
    include:
      measurement: []
      fields: ["pm[2"]
    exclude:
      tags: {station: []}
    range:
      pm25: [10, 0]
      "no[": [0, 1]
      pm10: [1]
`,
			want: []string{
				"4: processors[0].include.measurement: an empty list drops every point",
				`5: processors[0].include.fields[0]: bad pattern "pm[2"`,
				`7: processors[0].exclude.tags.station: want a list of patterns`,
				"9: processors[0].range.pm25: want [min, max] with min <= max",
				`10: processors[0].range.no[: bad pattern`,
				"11: processors[0].range.pm10: want [min, max]",
			},
		},
		{
			name: "deadband values",
			list: "  - {type: deadband, absolute: -1, percent: .nan, heartbeat: -1m, max_series: 0}\n",
			want: []string{
				"2: processors[0].absolute: must be a finite number >= 0, got -1",
				"2: processors[0].percent: must be a finite number >= 0, got NaN",
				"2: processors[0].heartbeat: must not be negative",
				"2: processors[0].max_series: must be at least 1",
			},
		},
		{
			name: "aggregate values",
			list: `  - type: aggregate
    functions: [mean, median, mean]
    suffix: false
    late: keep
    grace: 25h
`,
			want: []string{
				"2: processors[0].window: must be set",
				`3: processors[0].functions[1]: unknown function "median" (known: mean, min, max, count, sum, first, last, stddev, p50, p95, p99)`,
				`3: processors[0].functions[2]: function "mean" is listed twice`,
				"4: processors[0].suffix: false needs exactly one function",
				`5: processors[0].late: want drop or pass, got "keep"`,
				"6: processors[0].grace: must be between 0 and 24h",
			},
		},
		{
			name: "aggregate window out of range",
			list: "  - {type: aggregate, window: 500ms}\n",
			want: []string{"2: processors[0].window: must be between 1s and 24h, got 500ms"},
		},
		{
			name: "bad duration names its line",
			list: "  - type: deadband\n    heartbeat: soon\n",
			want: []string{`3: : invalid duration "soon"`},
		},
		{
			name: "tags",
			list: `  - type: tags
  - type: tags
    add: {site: ""}
    rename: {st: station, stn: station}
`,
			want: []string{
				"2: processors[0]: nothing to do: set add, rename or delete",
				`4: processors[1].add: tag keys and values must not be empty ("site": "")`,
				`5: processors[1].rename.stn: "st" and "stn" both become "station"`,
			},
		},
		{
			name: "scale",
			list: `  - type: scale
    fields:
      "power_*": {factor: 0.001, rename: power_kw}
      energy: {factor: 0}
      temp: {scale: 2}
  - type: scale
    fields: [power]
`,
			want: []string{
				`4: processors[0].fields.power_*.rename: needs a literal field name`,
				"5: processors[0].fields.energy: factor must be finite and not 0",
				`6: processors[0].fields.temp.scale: unknown key "scale" (known: factor, offset, rename)`,
				"8: processors[1].fields: want a mapping of field patterns",
			},
		},
		{
			name: "rename",
			list: `  - type: rename
  - type: rename
    fields: {temp: temperature, t: temperature, x: x}
`,
			want: []string{
				"2: processors[0]: nothing to rename",
				`4: processors[1].fields.temp: "t" and "temp" both become "temperature"`,
				`4: processors[1].fields.x: renames "x" to itself`,
			},
		},
		{
			name: "names",
			list: `  - {type: tags, name: site, add: {site: a}}
  - {type: tags, name: site, add: {site: b}}
  - {type: tags, name: "a/b", add: {site: c}}
`,
			want: []string{
				`3: processors[1]: name "site" is already used by processors[0]`,
				`4: processors[2]: name "a/b": want 1 to 64 of A-Z a-z 0-9 _ . -`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := testEnv()
			c, err := parse(t, tt.list, env)
			if err == nil {
				t.Fatalf("Build accepted the configuration (%d stages)", c.Len())
			}
			got := problems(t, err)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("problem %d:\n got %s\nwant %s…", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestBuild_empty(t *testing.T) {
	c, err := Build(nil, nil, "processors", Env{})
	if err != nil {
		t.Fatal(err)
	}
	in := points(t, "air,station=s1 pm25=1 0")
	equalLines(t, "empty chain", c.Process(in), "air,station=s1 pm25=1 0")
	if got := c.Flush(true); got != nil {
		t.Errorf("Flush = %v, want nil", lines(got))
	}
	if !c.NextFlush().IsZero() {
		t.Errorf("NextFlush = %v, want zero", c.NextFlush())
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
}

func TestChain_String(t *testing.T) {
	env, _ := testEnv()
	c := mustParse(t, "  - {type: filter, range: {a: [0, 1]}}\n  - {type: aggregate, name: agg, window: 1m}\n", env)
	if got, want := c.String(), "filter processors-0 → aggregate agg"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestChain_nil(t *testing.T) {
	var c *Chain
	in := points(t, "air,station=s1 pm25=1 0")
	equalLines(t, "nil chain", c.Process(in), "air,station=s1 pm25=1 0")
	if c.Flush(true) != nil || !c.NextFlush().IsZero() || c.Close() != nil || c.Len() != 0 {
		t.Error("a nil chain must do nothing")
	}
}

func TestDefaultName(t *testing.T) {
	tests := map[string]string{
		"processors[0]":                      "processors-0",
		"inputs[2].processors[10]":           "inputs-2-processors-10",
		`x"y[1]`:                             "x-y-1",
		"[]":                                 "stage",
		strings.Repeat("a", 70) + "[1]":      strings.Repeat("a", 62) + "-1",
		"x[" + strings.Repeat("1", 63) + "]": strings.Repeat("1", 63),
	}
	for path, want := range tests {
		if got := defaultName(path); got != want || !nameRE.MatchString(got) {
			t.Errorf("defaultName(%q) = %q, want %q", path, got, want)
		}
	}
}

// The order of the list is the order of processing: tagging before
// filtering lets the filter see the tag, the reverse does not.
func TestChain_Process_order(t *testing.T) {
	in := `
air,station=s1 pm25=10 0
air,station=test-1 pm25=11 0
`
	tests := []struct {
		name, list, want string
	}{
		{
			name: "tags then filter",
			list: `  - {type: tags, rename: {station: st}}
  - {type: filter, exclude: {tags: {st: [test-*]}}}
`,
			want: "air,st=s1 pm25=10 0",
		},
		{
			name: "filter then tags",
			list: `  - {type: filter, exclude: {tags: {st: [test-*]}}}
  - {type: tags, rename: {station: st}}
`,
			want: "air,st=s1 pm25=10 0\nair,st=test-1 pm25=11 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := testEnv()
			c := mustParse(t, tt.list, env)
			equalLines(t, "Process", c.Process(points(t, in)), tt.want)
		})
	}
}

// Flush passes what a Flusher emits through the stages after it, and a
// second aggregate gets the first one's windows before it flushes itself.
func TestChain_Flush_throughLaterStages(t *testing.T) {
	env, clk := testEnv()
	c := mustParse(t, `  - {type: aggregate, window: 1m, functions: [mean], suffix: false}
  - {type: rename, fields: {pm25: pm2_5}}
  - {type: aggregate, window: 2m, functions: [max], suffix: false}
`, env)
	var in []protocols.Point
	for i := range 8 { // 4 minutes, every 30 s
		in = append(in, points(t, fmt.Sprintf("air,station=s1 pm25=%d %d", 10*(i+1), 30*i))...)
	}
	if got := c.Process(in); len(got) != 0 {
		t.Fatalf("Process passed %v, want everything held", lines(got))
	}
	if got, want := c.NextFlush(), t0.Add(time.Minute); !got.Equal(want) {
		t.Errorf("NextFlush = %v, want %v", got, want)
	}
	clk.Set(t0.Add(2 * time.Minute))
	// Minutes 0 and 1 close in the first aggregate (means 15 and 35) and go
	// into the second one's window [0, 2m). Its newest reading is stamped
	// 1m (a window start), so it closes once quiet for QuietClose.
	equalLines(t, "Flush at 2m", c.Flush(false), "")
	if got, want := c.NextFlush(), t0.Add(2*time.Minute+QuietClose); !got.Equal(want) {
		t.Errorf("NextFlush = %v, want %v", got, want)
	}
	clk.Set(t0.Add(2*time.Minute + QuietClose))
	equalLines(t, "Flush", c.Flush(false), "air,station=s1 pm2_5=35 0")
	if got, want := c.NextFlush(), t0.Add(3*time.Minute); !got.Equal(want) {
		t.Errorf("NextFlush = %v, want %v", got, want)
	}
	equalLines(t, "final Flush", c.Flush(true), "air,station=s1 pm2_5=75 120")
	if !c.NextFlush().IsZero() {
		t.Errorf("NextFlush after the final flush = %v, want zero", c.NextFlush())
	}
}

func TestChain_metrics(t *testing.T) {
	env, _ := testEnv()
	c := mustParse(t, `  - {type: filter, name: clean, range: {pm25: [0, 500]}}
  - {type: filter, include: {measurement: [air]}}
`, env)
	got := c.Process(points(t, `
air,station=s1 pm25=12,pm10=20 0
air,station=s2 pm25=900 0
noise,station=s1 laeq=55 0
`))
	equalLines(t, "Process", got, "air,station=s1 pm25=12,pm10=20 0")
	var buf bytes.Buffer
	env.Metrics.WritePrometheus(&buf)
	for _, want := range []string{
		`citysense_agent_process_points_in_total{stage="clean"} 3`,
		`citysense_agent_process_points_out_total{stage="clean"} 2`,
		`citysense_agent_process_dropped_total{stage="clean",reason="out_of_range"} 1`,
		`citysense_agent_process_points_in_total{stage="processors-1"} 2`,
		`citysense_agent_process_points_out_total{stage="processors-1"} 1`,
		`citysense_agent_process_dropped_total{stage="processors-1",reason="filtered"} 1`,
	} {
		if !strings.Contains(buf.String(), want+"\n") {
			t.Errorf("metrics lack %s\n%s", want, buf.String())
		}
	}
}

// Building twice into one set, as a reload does, must not panic on the
// already registered metrics, and counting goes on.
func TestBuild_twiceIntoOneSet(t *testing.T) {
	set := metrics.NewSet()
	list := "  - {type: filter, exclude: {measurement: [noise]}}\n"
	for range 2 {
		c := mustParse(t, list, Env{Metrics: set})
		c.Process(points(t, "noise,station=s1 laeq=50 0"))
	}
	if got := dropped(set, "processors-0", "filtered"); got != 2 {
		t.Errorf("dropped = %d, want 2", got)
	}
}

func TestChain_concurrent(t *testing.T) {
	env, clk := testEnv()
	c := mustParse(t, `  - {type: deadband, absolute: 0.5}
  - {type: aggregate, window: 1m, functions: [count]}
`, env)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				c.Process(points(t, fmt.Sprintf("air,station=s%d pm25=%d %d", g, i, i)))
				if i%10 == 0 {
					c.Flush(false)
					_ = c.NextFlush()
				}
			}
		})
	}
	wg.Wait()
	clk.Set(t0.Add(time.Hour))
	out := c.Flush(true)
	var total int64
	for _, p := range out {
		v, _ := p.Field("pm25_count")
		total += v.IntV()
	}
	if total != 200 {
		t.Errorf("counted %d values across stations, want 200", total)
	}
}
