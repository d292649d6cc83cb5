package modbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/citysense/citysense/protocols"
)

// Register kinds.
const (
	KindHolding  = "holding"
	KindInput    = "input"
	KindCoil     = "coil"
	KindDiscrete = "discrete"
)

// Value types.
const (
	TypeInt16   = "int16"
	TypeUint16  = "uint16"
	TypeInt32   = "int32"
	TypeUint32  = "uint32"
	TypeInt64   = "int64"
	TypeUint64  = "uint64"
	TypeFloat32 = "float32"
	TypeFloat64 = "float64"
	TypeBool    = "bool"
	TypeString  = "string"
)

// Byte and word orders, named by where the bytes of the big-endian value
// A B C D sit on the wire: ABCD is big-endian, CDAB swaps the 16-bit words
// (common on meters), BADC swaps the bytes in each word, DCBA is
// little-endian. For 64-bit values the same rule applies to four words.
const (
	OrderABCD = "ABCD"
	OrderCDAB = "CDAB"
	OrderBADC = "BADC"
	OrderDCBA = "DCBA"
)

var orders = []string{OrderABCD, OrderCDAB, OrderBADC, OrderDCBA}

// width returns how many registers a type takes; strings take length.
func width(typ string, length int) int {
	switch typ {
	case TypeInt16, TypeUint16, TypeBool:
		return 1
	case TypeInt32, TypeUint32, TypeFloat32:
		return 2
	case TypeInt64, TypeUint64, TypeFloat64:
		return 4
	case TypeString:
		return length
	}
	return 0
}

// ErrNotFinite is returned for a float register holding NaN or ±Inf
// (often a meter's "no value").
var ErrNotFinite = errors.New("value is NaN or infinite")

// ordered returns the registers' bytes rearranged into big-endian order.
func ordered(regs []uint16, order string) []byte {
	n := len(regs)
	b := make([]byte, 2*n)
	for i, r := range regs {
		j := i
		if order == OrderCDAB || order == OrderDCBA {
			j = n - 1 - i // word order reversed
		}
		hi, lo := byte(r>>8), byte(r)
		if order == OrderBADC || order == OrderDCBA {
			hi, lo = lo, hi // bytes swapped within the word
		}
		b[2*j], b[2*j+1] = hi, lo
	}
	return b
}

// Decode turns raw register words into a value of typ in order, then applies
// scale and offset: an integer stays an integer when scale is 1 and offset
// 0, anything scaled becomes a float. bit selects one bit (0–15) of a
// 16-bit register for TypeBool; -1 means "non-zero".
func Decode(regs []uint16, typ, order string, bit int, scale, offset float64) (protocols.Value, error) {
	if w := width(typ, len(regs)); w == 0 || len(regs) != w {
		return protocols.Value{}, fmt.Errorf("%s needs %d registers, got %d", typ, w, len(regs))
	}
	if typ == TypeString {
		b := ordered(regs, orderForString(order))
		s := strings.TrimRight(string(b), "\x00 ")
		return protocols.String(strings.ToValidUTF8(s, "\uFFFD")), nil
	}
	b := ordered(regs, order)
	scaled := scale != 1 || offset != 0
	num := func(f float64) (protocols.Value, error) {
		f = f*scale + offset
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return protocols.Value{}, ErrNotFinite
		}
		return protocols.Float(f), nil
	}
	switch typ {
	case TypeBool:
		v := binary.BigEndian.Uint16(b)
		if bit >= 0 {
			return protocols.Bool(v>>uint(bit)&1 == 1), nil
		}
		return protocols.Bool(v != 0), nil
	case TypeInt16:
		v := int16(binary.BigEndian.Uint16(b))
		if scaled {
			return num(float64(v))
		}
		return protocols.Int(int64(v)), nil
	case TypeUint16:
		v := binary.BigEndian.Uint16(b)
		if scaled {
			return num(float64(v))
		}
		return protocols.Int(int64(v)), nil
	case TypeInt32:
		v := int32(binary.BigEndian.Uint32(b))
		if scaled {
			return num(float64(v))
		}
		return protocols.Int(int64(v)), nil
	case TypeUint32:
		v := binary.BigEndian.Uint32(b)
		if scaled {
			return num(float64(v))
		}
		return protocols.Int(int64(v)), nil
	case TypeInt64:
		v := int64(binary.BigEndian.Uint64(b))
		if scaled {
			return num(float64(v))
		}
		return protocols.Int(v), nil
	case TypeUint64:
		v := binary.BigEndian.Uint64(b)
		if scaled {
			return num(float64(v))
		}
		return protocols.Uint(v), nil
	case TypeFloat32:
		return num(float64(math.Float32frombits(binary.BigEndian.Uint32(b))))
	case TypeFloat64:
		return num(math.Float64frombits(binary.BigEndian.Uint64(b)))
	}
	return protocols.Value{}, fmt.Errorf("unknown type %q", typ)
}

// orderForString: a string's characters run in register order; only the
// byte order inside each register matters.
func orderForString(order string) string {
	if order == OrderBADC || order == OrderDCBA {
		return OrderBADC
	}
	return OrderABCD
}
