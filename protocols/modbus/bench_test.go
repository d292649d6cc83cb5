package modbus

import (
	"testing"
)

// BenchmarkDevice_poll measures decoding one poll of a 10-field map served
// by a fake client (no I/O): the parser's cost per point.
func BenchmarkDevice_poll(b *testing.B) {
	in := testInput(&fakeDevice{regs: testRegs(), bad: []uint16{20}})
	if err := in.Init(nil); err != nil {
		b.Fatal(err)
	}
	d := in.devices[0]
	b.ReportAllocs()
	for b.Loop() {
		fields, ferrs, err := d.poll()
		if err != nil || len(ferrs) != 1 || len(fields) != 10 {
			b.Fatal(err, ferrs, len(fields))
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
}

func BenchmarkDecode_float32(b *testing.B) {
	regs := []uint16{0x0000, 0x41AC}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(regs, TypeFloat32, OrderCDAB, -1, 1, 0); err != nil {
			b.Fatal(err)
		}
	}
}
