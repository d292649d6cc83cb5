package process

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
)

func TestDeadband_Process(t *testing.T) {
	tests := []struct {
		name       string
		list       string
		in         string // one batch per line
		want       string
		suppressed uint64
	}{
		{
			name: "absolute",
			list: "  - {type: deadband, absolute: 0.5}\n",
			in: `air,station=s1 t=10 0
air,station=s1 t=10.3 10
air,station=s1 t=10.6 20
air,station=s1 t=10.4 30
air,station=s1 t=11.2 40`,
			want:       "air,station=s1 t=10 0\nair,station=s1 t=10.6 20\nair,station=s1 t=11.2 40",
			suppressed: 2,
		},
		{
			name: "percent of the last sent",
			list: "  - {type: deadband, percent: 10}\n",
			in: `m v=100 0
m v=105 1
m v=111 2
m v=101 3
m v=99 4`,
			want:       "m v=100 0\nm v=111 2\nm v=99 4",
			suppressed: 2,
		},
		{
			name: "the wider band counts: absolute is a floor near zero",
			list: "  - {type: deadband, absolute: 1, percent: 10}\n",
			in: `m v=0 0
m v=0.5 1
m v=1.5 2
m v=2.4 3
m v=30 4
m v=32.9 5
m v=33.1 6`,
			want:       "m v=0 0\nm v=1.5 2\nm v=30 4\nm v=33.1 6",
			suppressed: 3,
		},
		{
			name: "no band: report on change",
			list: "  - {type: deadband}\n",
			in: `m v=1 0
m v=1 1
m v=2 2
m v=2 3
m v=1 4`,
			want:       "m v=1 0\nm v=2 2\nm v=1 4",
			suppressed: 2,
		},
		{
			name: "heartbeat in the points' time",
			list: "  - {type: deadband, absolute: 5, heartbeat: 30s}\n",
			in: `m v=10 0
m v=10 10
m v=10 20
m v=10 30
m v=10 40
m v=10 59
m v=10 60`,
			want:       "m v=10 0\nm v=10 30\nm v=10 60",
			suppressed: 4,
		},
		{
			name: "integers are numbers and keep their type",
			list: "  - {type: deadband, absolute: 2}\n",
			in: `traffic count=100i 0
traffic count=101i 10
traffic count=103u 20`,
			want:       "traffic count=100i 0\ntraffic count=103u 20",
			suppressed: 1,
		},
		{
			name: "strings and bools pass; a point keeps what is left",
			list: "  - {type: deadband, absolute: 1}\n",
			in: `m,s=a v=1,state="on",door=true 0
m,s=a v=1.5,state="on",door=true 10
m,s=a v=1.6 20`,
			want:       `m,s=a v=1,state="on",door=true 0` + "\n" + `m,s=a state="on",door=true 10`,
			suppressed: 2,
		},
		{
			name: "series are per tag set and field",
			list: "  - {type: deadband, absolute: 1}\n",
			in: `air,station=s1 a=1,b=1 0
air,station=s2 a=1.5,b=5 0
air,station=s1 a=1.5,b=2.5 10
air,station=s2 a=1.5,b=5 10`,
			want: `air,station=s1 a=1,b=1 0
air,station=s2 a=1.5,b=5 0
air,station=s1 b=2.5 10`,
			suppressed: 3,
		},
		{
			name: "measurement and field selectors",
			list: "  - {type: deadband, absolute: 100, measurement: [air], fields: ['pm*']}\n",
			in: `air pm25=1,temp=1 0
air pm25=2,temp=1 10
noise pm25=1 0
noise pm25=1 10`,
			want: `air pm25=1,temp=1 0
air temp=1 10
noise pm25=1 0
noise pm25=1 10`,
			suppressed: 1,
		},
		{
			name: "history replayed out of order passes and does not move the reference",
			list: "  - {type: deadband, absolute: 1}\n",
			in: `m v=10 20
m v=50 10
m v=10.5 30`,
			want:       "m v=10 20\nm v=50 10",
			suppressed: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := testEnv()
			c := mustParse(t, tt.list, env)
			var out []protocols.Point
			for _, l := range split(tt.in) {
				out = append(out, c.Process(points(t, l))...)
			}
			equalLines(t, "sent", out, tt.want)
			if got := dropped(env.Metrics, "processors-0", "deadband"); got != tt.suppressed {
				t.Errorf("dropped{deadband} = %d, want %d", got, tt.suppressed)
			}
		})
	}
}

// The receiver's view (the last value sent) never differs from a
// suppressed reading by more than the band, and no series is silent for
// longer than the heartbeat plus one reading interval.
func TestDeadband_Process_property(t *testing.T) {
	const (
		abs       = 0.5
		pct       = 2.0
		heartbeat = 5 * time.Minute
		step      = 10 * time.Second
	)
	env, _ := testEnv()
	c := mustParse(t, fmt.Sprintf("  - {type: deadband, absolute: %v, percent: %v, heartbeat: %v}\n", abs, pct, heartbeat), env)
	rng := rand.New(rand.NewPCG(1, 2))
	for station := range 20 {
		x := 20 + 10*rng.Float64()
		var sent float64
		var sentAt int64
		for i := range 2000 {
			x += rng.NormFloat64() * 0.3
			if rng.IntN(50) == 0 {
				x += rng.NormFloat64() * 20 // a step now and then
			}
			ts := t0.Add(time.Duration(i) * step).UnixNano()
			p := protocols.Point{Measurement: "m", Tags: []protocols.Tag{{Key: "s", Value: fmt.Sprint(station)}},
				Fields: []protocols.Field{{Key: "v", Value: protocols.Float(x)}}, Time: ts}
			out := c.Process([]protocols.Point{p})
			switch {
			case len(out) == 1:
				sent, sentAt = x, ts
			case i == 0:
				t.Fatalf("station %d: first value suppressed", station)
			default:
				if band := max(abs, pct/100*math.Abs(sent)); math.Abs(x-sent) > band {
					t.Fatalf("station %d tick %d: suppressed %v, last sent %v, band %v", station, i, x, sent, band)
				}
				if time.Duration(ts-sentAt) >= heartbeat {
					t.Fatalf("station %d tick %d: silent for %v", station, i, time.Duration(ts-sentAt))
				}
			}
		}
	}
}

func TestDeadband_Close_restart(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "deadband-temps.json")
	list := "  - {type: deadband, name: temps, absolute: 1, heartbeat: 1h}\n"
	newChain := func() (*Chain, *clock) {
		env, clk := testEnv()
		env.StateDir = dir
		return mustParse(t, list, env), clk
	}
	send := func(c *Chain, lp string) []string { return lines(c.Process(points(t, lp))) }

	// First run: two series sent, then a clean stop.
	c1, _ := newChain()
	if got := send(c1, "air,station=s1 t=20,h=50 0"); len(got) != 1 {
		t.Fatalf("first run sent %v", got)
	}
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	var st deadbandState
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	want := deadbandState{Version: 1, Series: []deadbandSeriesState{{Measurement: "air", Tags: []protocols.Tag{{Key: "station", Value: "s1"}}, Fields: []deadbandFieldState{
		{Field: "t", Value: 20, Time: t0.UnixNano()}, {Field: "h", Value: 50, Time: t0.UnixNano()},
	}}}}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Errorf("state file:\n got %+v\nwant %+v", st, want)
	}

	// A chain built only to check the configuration leaves the file alone.
	if _, err := parse(t, list, Env{StateDir: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("checking the configuration consumed the state: %v", err)
	}

	// Second run: the restored state still suppresses small changes; the
	// file is gone as soon as the chain runs.
	c2, _ := newChain()
	if got := send(c2, "air,station=s1 t=20.5,h=52 10"); strings.Join(got, "") != "air,station=s1 h=52 10" {
		t.Errorf("after a clean restart sent %v, want only h", got)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("state file still there while the chain runs: %v", err)
	}

	// c2 crashes (no Close). The third run knows nothing and sends again.
	c3, _ := newChain()
	if got := send(c3, "air,station=s1 t=20.5,h=52 20"); strings.Join(got, "") != "air,station=s1 t=20.5,h=52 20" {
		t.Errorf("after a crash sent %v, want everything", got)
	}
}

func TestDeadband_Close_forgetsPastHeartbeat(t *testing.T) {
	dir := t.TempDir()
	env, clk := testEnv()
	env.StateDir = dir
	c := mustParse(t, "  - {type: deadband, absolute: 1, heartbeat: 10m}\n", env)
	c.Process(points(t, "m,s=old v=1 0"))
	c.Process(points(t, "m,s=new v=1 600"))
	clk.Set(t0.Add(15 * time.Minute))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "deadband-processors-0.json"))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(data); strings.Contains(s, `"old"`) || !strings.Contains(s, `"new"`) {
		t.Errorf("state keeps s=old (silent past its heartbeat) or lost s=new:\n%s", s)
	}
}

func TestDeadband_Build_unreadableState(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "deadband-processors-0.json"), []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	env, _ := testEnv()
	env.StateDir = dir
	c := mustParse(t, "  - {type: deadband, absolute: 1}\n", env)
	equalLines(t, "first value", c.Process(points(t, "m v=1 0")), "m v=1 0")
}

func TestDeadband_Process_maxSeries(t *testing.T) {
	env, clk := testEnv()
	c := mustParse(t, "  - {type: deadband, absolute: 10, heartbeat: 1m, max_series: 2}\n", env)
	c.Process(points(t, "m,s=1 a=1,b=1 0"))
	// Full: a third series passes every value, unfiltered and counted.
	for i := range 3 {
		equalLines(t, "overflow", c.Process(points(t, fmt.Sprintf("m,s=2 a=1 %d", i))), fmt.Sprintf("m,s=2 a=1 %d", i))
	}
	if got := passed(env.Metrics, "processors-0", "max_series"); got != 3 {
		t.Errorf("passed{max_series} = %d, want 3", got)
	}
	// Once s=1 has been silent past its heartbeat it makes room.
	clk.Set(t0.Add(5 * time.Minute))
	equalLines(t, "admitted", c.Process(points(t, "m,s=2 a=1 300")), "m,s=2 a=1 300")
	equalLines(t, "now filtered", c.Process(points(t, "m,s=2 a=2 310")), "")
}
