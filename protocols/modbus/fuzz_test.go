package modbus

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/citysense/citysense/protocols"
)

// FuzzDecode: any registers in any type and order decode to a valid value
// or an error, never a panic or a non-finite float.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x41, 0xac, 0, 0}, uint8(6), uint8(1), 1.0, 0.0)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint8(4), uint8(3), 0.1, 5.0)
	types := []string{TypeInt16, TypeUint16, TypeInt32, TypeUint32, TypeInt64, TypeUint64, TypeFloat32, TypeFloat64, TypeBool, TypeString}
	f.Fuzz(func(t *testing.T, raw []byte, ti, oi uint8, scale, offset float64) {
		regs := make([]uint16, len(raw)/2)
		for i := range regs {
			regs[i] = binary.BigEndian.Uint16(raw[2*i:])
		}
		typ := types[int(ti)%len(types)]
		order := orders[int(oi)%len(orders)]
		if typ == TypeBool || typ == TypeString {
			scale, offset = 1, 0
		}
		v, err := Decode(regs, typ, order, -1, scale, offset)
		if err != nil {
			return
		}
		p := protocols.Point{Measurement: "m", Fields: []protocols.Field{{Key: "f", Value: v}}}
		if err := p.Validate(); err != nil {
			t.Fatalf("%s %s %v: %v", typ, order, regs, err)
		}
		if v.Kind() == protocols.KindFloat && (math.IsNaN(v.FloatV()) || math.IsInf(v.FloatV(), 0)) {
			t.Fatal("non-finite float passed")
		}
	})
}
