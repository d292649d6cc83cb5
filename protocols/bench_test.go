package protocols

import (
	"strconv"
	"testing"
)

// benchPoints is a city-like batch: 1,000 stations × one air reading.
func benchPoints() []Point {
	pts := make([]Point, 1000)
	for i := range pts {
		pts[i] = Point{
			Measurement: "air",
			Tags:        []Tag{{"district", "d0" + strconv.Itoa(i%8+1)}, {"station", "s" + strconv.Itoa(10000 + i)[1:]}},
			Fields: []Field{
				{"pm25", Float(12.3 + float64(i%50))}, {"pm10", Float(20.1)}, {"no2", Float(31.7)},
				{"temperature", Float(18.4)}, {"humidity", Float(63)},
			},
			Time: 1735689600000000000 + int64(i)*1e9,
		}
	}
	return pts
}

func BenchmarkEncode(b *testing.B) {
	pts := benchPoints()
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf, _ = AppendLines(buf[:0], pts, Nanosecond)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(len(pts)*b.N)/b.Elapsed().Seconds(), "points/s")
}

func BenchmarkDecode(b *testing.B) {
	data, _ := AppendLines(nil, benchPoints(), Nanosecond)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		_ = Decode(data, DecodeOptions{}, func(Point) error { n++; return nil })
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkDecode_oneLine is one MQTT message's worth of line protocol:
// the decoder's scratch must be sized to the input, not to a batch.
func BenchmarkDecode_oneLine(b *testing.B) {
	data := []byte("air,district=d01,station=s0001 pm25=12.3,pm10=20.1,no2=31.7,temperature=18.4,humidity=63 1735689600000000000\n")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		_ = Decode(data, DecodeOptions{}, func(Point) error { n++; return nil })
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkDecoder is BenchmarkDecode with a Decoder kept across batches,
// the way the write API decodes one body after another.
func BenchmarkDecoder(b *testing.B) {
	data, _ := AppendLines(nil, benchPoints(), Nanosecond)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	var d Decoder
	for b.Loop() {
		_ = d.Decode(data, DecodeOptions{}, func(Point) error { n++; return nil })
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "points/s")
}
