package mqtt

import (
	"strconv"
	"testing"

	"github.com/citysense/citysense/protocols"
)

// BenchmarkJSONParser measures the JSON mapper on a typical 5-field sensor
// payload with a timestamp, topic tags included.
func BenchmarkJSONParser(b *testing.B) {
	payloads := make([][]byte, 64)
	for i := range payloads {
		payloads[i] = []byte(`{"ts":` + strconv.Itoa(1735689600+i) + `,"pm25":12.` + strconv.Itoa(i%10) + `,"pm10":20.1,"no2":31,"temperature":4.5,"humidity":81.2}`)
	}
	tm, _ := ParseTemplate("sensors/{district}/{station}/{_measurement}")
	jp := newJSONParser(JSONOptions{TimePath: "ts"})
	var a alloc
	pts := make([]protocols.Point, 0, 1024)
	var m topicMatch
	e := envelope{field: "value"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m = topicMatch{tags: m.tags[:0]}
		tm.match("sensors/d01/s0001/air", &m)
		e.measurement, e.tags = m.measurement, e.tags[:0]
		for _, t := range m.tags {
			e.tags = append(e.tags, protocols.Tag{Key: t.key, Value: t.value})
		}
		var err error
		if pts, err = jp.parse(pts[:0], payloads[i%len(payloads)], &e, &a); err != nil || len(pts) != 1 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
}

func BenchmarkLineParser(b *testing.B) {
	payload := []byte("air,district=d01,station=s0001 pm25=12.3,pm10=20.1,no2=31,temperature=4.5,humidity=81.2 1735689600000000000")
	lp := &lineParser{}
	e := envelope{measurement: "air"}
	pts := make([]protocols.Point, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if pts, err = lp.parse(pts[:0], payload, &e, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
}

func BenchmarkValueParser(b *testing.B) {
	vp := &valueParser{dataType: TypeFloat}
	e := envelope{measurement: "meter", field: "power", tags: []protocols.Tag{{Key: "meter", Value: "m1"}}}
	var a alloc
	pts := make([]protocols.Point, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if pts, err = vp.parse(pts[:0], []byte("4.25"), &e, &a); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
}

func BenchmarkTemplateParser(b *testing.B) {
	vt, _ := ParseValueTemplate("T={temperature};H={humidity}")
	tp := &templateParser{vt: vt}
	e := envelope{measurement: "weather"}
	var a alloc
	pts := make([]protocols.Point, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if pts, err = tp.parse(pts[:0], []byte("T=21.5;H=40"), &e, &a); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
}
