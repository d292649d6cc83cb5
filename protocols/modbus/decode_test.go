package modbus

import (
	"errors"
	"math"
	"testing"

	"github.com/citysense/citysense/protocols"
)

func TestDecode(t *testing.T) {
	f32 := math.Float32bits(21.5) // 0x41AC0000
	hi, lo := uint16(f32>>16), uint16(f32)
	tests := []struct {
		name       string
		regs       []uint16
		typ, order string
		bit        int
		scale, off float64
		want       protocols.Value
		wantErr    error
	}{
		{"int16", []uint16{0xFF85}, TypeInt16, OrderABCD, -1, 1, 0, protocols.Int(-123), nil},
		{"int16 BA", []uint16{0x85FF}, TypeInt16, OrderBADC, -1, 1, 0, protocols.Int(-123), nil},
		{"uint16 scaled", []uint16{500}, TypeUint16, OrderABCD, -1, 0.1, 0, protocols.Float(50), nil},
		{"uint16 offset", []uint16{500}, TypeUint16, OrderABCD, -1, 1, -40, protocols.Float(460), nil},
		{"float32 ABCD", []uint16{hi, lo}, TypeFloat32, OrderABCD, -1, 1, 0, protocols.Float(21.5), nil},
		{"float32 CDAB", []uint16{lo, hi}, TypeFloat32, OrderCDAB, -1, 1, 0, protocols.Float(21.5), nil},
		{"float32 BADC", []uint16{0xAC41, 0x0000}, TypeFloat32, OrderBADC, -1, 1, 0, protocols.Float(21.5), nil},
		{"float32 DCBA", []uint16{0x0000, 0xAC41}, TypeFloat32, OrderDCBA, -1, 1, 0, protocols.Float(21.5), nil},
		{"int32 ABCD", []uint16{0xFFFE, 0x7960}, TypeInt32, OrderABCD, -1, 1, 0, protocols.Int(-100000), nil},
		{"uint32 DCBA", []uint16{0x7011, 0x0100}, TypeUint32, OrderDCBA, -1, 1, 0, protocols.Int(70000), nil},
		{"int64 CDAB", []uint16{0xFFFF, 0xFFFE, 0xFFFF, 0xFFFF}, TypeInt64, OrderCDAB, -1, 1, 0, protocols.Int(-65537), nil},
		{"uint64", []uint16{0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF}, TypeUint64, OrderABCD, -1, 1, 0, protocols.Uint(math.MaxUint64), nil},
		{"float64 ABCD", []uint16{0x4093, 0x4A45, 0x6D5C, 0xFAAD}, TypeFloat64, OrderABCD, -1, 1, 0, protocols.Float(1234.5678), nil},
		{"float64 DCBA", []uint16{0xADFA, 0x5C6D, 0x454A, 0x9340}, TypeFloat64, OrderDCBA, -1, 1, 0, protocols.Float(1234.5678), nil},
		{"bool nonzero", []uint16{2}, TypeBool, OrderABCD, -1, 1, 0, protocols.Bool(true), nil},
		{"bool bit 3", []uint16{0x0008}, TypeBool, OrderABCD, 3, 1, 0, protocols.Bool(true), nil},
		{"bool bit 2", []uint16{0x0008}, TypeBool, OrderABCD, 2, 1, 0, protocols.Bool(false), nil},
		{"string", []uint16{0x4353, 0x3031, 0x0000}, TypeString, OrderABCD, -1, 1, 0, protocols.String("CS01"), nil},
		{"string swapped", []uint16{0x5343, 0x3130}, TypeString, OrderDCBA, -1, 1, 0, protocols.String("CS01"), nil},
		{"float32 NaN", []uint16{0x7FC0, 0}, TypeFloat32, OrderABCD, -1, 1, 0, protocols.Value{}, ErrNotFinite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.regs, tt.typ, tt.order, tt.bit, tt.scale, tt.off)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got.Kind() == protocols.KindFloat && tt.want.Kind() == protocols.KindFloat {
				if math.Abs(got.FloatV()-tt.want.FloatV()) > 1e-9 {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
				return
			}
			if !got.Equal(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := Decode([]uint16{1}, TypeFloat32, OrderABCD, -1, 1, 0); err == nil {
		t.Fatal("float32 from one register: no error")
	}
}

func TestPlan(t *testing.T) {
	fs := []field{
		{Register: Register{Name: "a", Address: 0}, kind: KindHolding, width: 1},
		{Register: Register{Name: "b", Address: 1}, kind: KindHolding, width: 2},
		{Register: Register{Name: "c", Address: 5}, kind: KindHolding, width: 1},
		{Register: Register{Name: "d", Address: 0}, kind: KindInput, width: 1},
		{Register: Register{Name: "e", Address: 3}, kind: KindCoil, width: 1},
		{Register: Register{Name: "f", Address: 1}, kind: KindCoil, width: 1},
		{Register: Register{Name: "g", Address: 124}, kind: KindHolding, width: 2},
	}
	type req struct {
		kind         string
		start, count uint16
		fields       []int
	}
	check := func(maxGap int, want []req) {
		t.Helper()
		got := plan(fs, maxGap)
		if len(got) != len(want) {
			t.Fatalf("max_gap %d: %d requests %+v, want %d", maxGap, len(got), got, len(want))
		}
		for i := range want {
			g := req{got[i].kind, got[i].start, got[i].count, got[i].fields}
			if g.kind != want[i].kind || g.start != want[i].start || g.count != want[i].count || len(g.fields) != len(want[i].fields) {
				t.Fatalf("max_gap %d: request %d = %+v, want %+v", maxGap, i, g, want[i])
			}
		}
	}
	check(0, []req{{KindHolding, 0, 3, []int{0, 1}}, {KindHolding, 5, 1, []int{2}}, {KindHolding, 124, 2, []int{6}}, {KindInput, 0, 1, []int{3}}, {KindCoil, 1, 1, []int{5}}, {KindCoil, 3, 1, []int{4}}})
	// A gap of 2 joins c; g would make the request 126 registers long.
	check(2, []req{{KindHolding, 0, 6, []int{0, 1, 2}}, {KindHolding, 124, 2, []int{6}}, {KindInput, 0, 1, []int{3}}, {KindCoil, 1, 3, []int{5, 4}}})
}
