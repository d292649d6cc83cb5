package process

import (
	"fmt"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

// workedExample is the configuration of the worked example in
// docs/agent-processing.md: 1-minute means, then report by exception.
const workedExample = `  - type: aggregate
    window: 1m
    functions: [mean]
    suffix: false
  - type: deadband
    name: air-quality
    fields: [pm25, pm10, no2]
    absolute: 1
    percent: 5
    heartbeat: 15m
  - type: deadband
    name: climate
    fields: [temperature, humidity, laeq]
    absolute: 0.3
    heartbeat: 15m
  - type: deadband
    name: traffic
    fields: [count]
    percent: 10
    absolute: 2
    heartbeat: 15m
`

// volume is what a stream of points costs on the uplink.
type volume struct {
	points, values int
	bytes          int // line protocol, ns timestamps
	zstd           int // zstd (default level) per batch of 5,000 points, as the buffer stores and sends
}

func (v volume) String() string {
	return fmt.Sprintf("%d points, %d values, %d B line protocol, %d B zstd", v.points, v.values, v.bytes, v.zstd)
}

type meter struct {
	v   volume
	n   int    // points in lp
	lp  []byte // the batch being filled, encoded at once: the chain changes points in place
	z   []byte
	enc *zstd.Encoder
}

func newMeter(t testing.TB) *meter {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	return &meter{enc: enc}
}

func (m *meter) add(pts []protocols.Point) {
	for i := range pts {
		m.v.points++
		m.v.values += len(pts[i].Fields)
		m.lp, _ = protocols.AppendLines(m.lp, pts[i:i+1], protocols.Nanosecond)
		if m.n++; m.n == 5000 {
			m.flush()
		}
	}
}

func (m *meter) flush() {
	if m.n == 0 {
		return
	}
	m.v.bytes += len(m.lp)
	m.z = m.enc.EncodeAll(m.lp, m.z[:0])
	m.v.zstd += len(m.z)
	m.lp, m.n = m.lp[:0], 0
}

// measureReduction runs ticks of the simulator through the chain as the
// agent would (Process, then Flush whenever NextFlush has come, with the
// clock following the data) and meters what goes in and what comes out.
func measureReduction(t testing.TB, list string, stations int, span time.Duration) (in, out volume) {
	const interval = 10 * time.Second
	p := sim.Params{Stations: stations, Seed: 1, Interval: interval, Start: t0}
	env, clk := testEnv()
	c := mustParse(t, list, env)
	mi, mo := newMeter(t), newMeter(t)
	for tick := 1; tick <= int(span/interval); tick++ { // tick 0 adds positions: not a steady state
		now := p.Start.Add(time.Duration(tick) * interval)
		clk.Set(now)
		pts := sim.Generate(p, tick)
		mi.add(pts)
		mo.add(c.Process(pts))
		if next := c.NextFlush(); !next.IsZero() && !now.Before(next) {
			mo.add(c.Flush(false))
		}
	}
	mo.add(c.Flush(true))
	mi.flush()
	mo.flush()
	return mi.v, mo.v
}

func TestWorkedExample_reduction(t *testing.T) {
	in, out := measureReduction(t, workedExample, 20, 6*time.Hour)
	t.Logf("in:  %v\nout: %v\nratio: points %.1f, values %.1f, line protocol %.1f, zstd %.1f",
		in, out, float64(in.points)/float64(out.points), float64(in.values)/float64(out.values),
		float64(in.bytes)/float64(out.bytes), float64(in.zstd)/float64(out.zstd))
	// 20 stations × 2,160 ticks: 20 air, 20 noise and 7 traffic points a tick.
	if in.points != 2160*47 || in.values != 2160*(20*5+20+7) {
		t.Errorf("sim produced %v", in)
	}
	// The 1-minute means alone cut values by 6; the deadband must at least
	// double that on this slowly changing city, and the bytes follow.
	if r := float64(in.values) / float64(out.values); r < 12 {
		t.Errorf("values reduced %.1f×, want at least 12×", r)
	}
	if r := float64(in.zstd) / float64(out.zstd); r < 5 {
		t.Errorf("compressed bytes reduced %.1f×, want at least 5×", r)
	}
}
