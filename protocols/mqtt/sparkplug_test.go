package mqtt

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/citysense/citysense/protocols"
)

// spPayload encodes a Sparkplug B payload for tests.
type spM struct {
	name     string
	alias    uint64
	ts       uint64
	datatype uint32
	field    protowire.Number // value field: 10 int, 11 long, 12 float, 13 double, 14 bool, 15 string
	u        uint64
	f        float64
	s        string
}

func spPayload(ts uint64, ms ...spM) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, ts)
	for _, m := range ms {
		var mb []byte
		if m.name != "" {
			mb = protowire.AppendTag(mb, 1, protowire.BytesType)
			mb = protowire.AppendString(mb, m.name)
		}
		if m.alias != 0 {
			mb = protowire.AppendTag(mb, 2, protowire.VarintType)
			mb = protowire.AppendVarint(mb, m.alias)
		}
		if m.ts != 0 {
			mb = protowire.AppendTag(mb, 3, protowire.VarintType)
			mb = protowire.AppendVarint(mb, m.ts)
		}
		mb = protowire.AppendTag(mb, 4, protowire.VarintType)
		mb = protowire.AppendVarint(mb, uint64(m.datatype))
		switch m.field {
		case 10, 11, 14:
			mb = protowire.AppendTag(mb, m.field, protowire.VarintType)
			mb = protowire.AppendVarint(mb, m.u)
		case 12:
			mb = protowire.AppendTag(mb, 12, protowire.Fixed32Type)
			mb = protowire.AppendFixed32(mb, math.Float32bits(float32(m.f)))
		case 13:
			mb = protowire.AppendTag(mb, 13, protowire.Fixed64Type)
			mb = protowire.AppendFixed64(mb, math.Float64bits(m.f))
		case 15:
			mb = protowire.AppendTag(mb, 15, protowire.BytesType)
			mb = protowire.AppendString(mb, m.s)
		}
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, mb)
	}
	b = protowire.AppendTag(b, 3, protowire.VarintType) // seq, skipped
	return protowire.AppendVarint(b, 7)
}

func TestSparkplugParser_parse(t *testing.T) {
	sp := newSparkplugParser()
	var a alloc
	envFor := func(topic string) *envelope {
		return &envelope{measurement: "sparkplug", topic: topic, now: now}
	}
	tags := []protocols.Tag{{Key: "device", Value: "meter1"}, {Key: "edge_node", Value: "gw1"}, {Key: "group", Value: "plant"}}
	birth := spPayload(1735689600000,
		spM{name: "Power/Active", alias: 1, datatype: spDouble, field: 13, f: 4.25},
		spM{name: "Temp", alias: 2, datatype: spFloat, field: 12, f: 21.5},
		spM{name: "Count", alias: 3, datatype: spInt16, field: 10, u: uint64(uint32(0xFFFF))}, // -1 as int16
		spM{name: "Door", alias: 4, datatype: spBoolean, field: 14, u: 1},
		spM{name: "Model", alias: 5, datatype: spString, field: 15, s: "EM24"},
	)
	got, err := sp.parse(nil, birth, envFor("spBv1.0/plant/DBIRTH/gw1/meter1"), &a)
	if err != nil {
		t.Fatal(err)
	}
	want := []protocols.Point{{Measurement: "sparkplug", Tags: tags, Time: 1735689600000e6, Fields: []protocols.Field{
		{Key: "Power_Active", Value: protocols.Float(4.25)}, {Key: "Temp", Value: protocols.Float(21.5)},
		{Key: "Count", Value: protocols.Int(-1)}, {Key: "Door", Value: protocols.Bool(true)}, {Key: "Model", Value: protocols.String("EM24")},
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("birth\n got %v\nwant %v", got, want)
	}
	// DATA by alias only, one metric with its own timestamp.
	data := spPayload(1735689601000,
		spM{alias: 1, datatype: spDouble, field: 13, f: 4.5},
		spM{alias: 2, ts: 1735689600500, datatype: spFloat, field: 12, f: 21.75},
	)
	got, err = sp.parse(nil, data, envFor("spBv1.0/plant/DDATA/gw1/meter1"), &a)
	if err != nil {
		t.Fatal(err)
	}
	want = []protocols.Point{
		{Measurement: "sparkplug", Tags: tags, Time: 1735689601000e6, Fields: []protocols.Field{{Key: "Power_Active", Value: protocols.Float(4.5)}}},
		{Measurement: "sparkplug", Tags: tags, Time: 1735689600500e6, Fields: []protocols.Field{{Key: "Temp", Value: protocols.Float(21.75)}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("data\n got %v\nwant %v", got, want)
	}
	// An alias without a BIRTH is reported; death and commands yield nothing.
	if _, err := sp.parse(nil, data, envFor("spBv1.0/plant/DDATA/gw2/meter9"), &a); err == nil || !strings.Contains(err.Error(), "alias 1 unknown") {
		t.Fatalf("unknown alias: %v", err)
	}
	if got, err := sp.parse(nil, data, envFor("spBv1.0/plant/NDEATH/gw1"), &a); err != nil || len(got) != 0 {
		t.Fatalf("NDEATH: %v %v", got, err)
	}
	if _, err := sp.parse(nil, []byte{0xff}, envFor("spBv1.0/plant/NDATA/gw1"), &a); err == nil {
		t.Fatal("garbage: no error")
	}
	if _, err := sp.parse(nil, data, envFor("other/topic"), &a); err == nil {
		t.Fatal("non-sparkplug topic: no error")
	}
}

func FuzzSparkplug(f *testing.F) {
	f.Add(spPayload(1, spM{name: "a", alias: 1, datatype: spDouble, field: 13, f: 1}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		sp := newSparkplugParser()
		var a alloc
		pts, _ := sp.parse(nil, payload, &envelope{measurement: "m", topic: "spBv1.0/g/NDATA/n", now: 1}, &a)
		for i := range pts {
			if err := pts[i].Validate(); err != nil {
				t.Fatalf("invalid point %v: %v", pts[i], err)
			}
		}
	})
}

func BenchmarkSparkplugParser(b *testing.B) {
	sp := newSparkplugParser()
	var a alloc
	env := &envelope{measurement: "sparkplug", topic: "spBv1.0/plant/DDATA/gw1/meter1", now: now}
	var ms []spM
	for i, n := range []string{"pm25", "pm10", "no2", "temperature", "humidity"} {
		ms = append(ms, spM{name: n, alias: uint64(i + 1), datatype: spDouble, field: 13, f: 12.5})
	}
	payload := spPayload(1735689600000, ms...)
	pts := make([]protocols.Point, 0, 4)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if pts, err = sp.parse(pts[:0], payload, env, &a); err != nil || len(pts) != 1 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
}
