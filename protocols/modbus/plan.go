package modbus

import (
	"slices"
)

// Limits of one Modbus request.
const (
	maxRegistersPerRead = 125
	maxBitsPerRead      = 2000
)

// field is one compiled register map entry.
type field struct {
	Register
	kind  string
	width int // registers or bits
}

// request is one coalesced read and the fields it serves.
type request struct {
	kind   string
	start  uint16
	count  uint16
	fields []int // indexes into the device's fields
}

func isBitKind(kind string) bool { return kind == KindCoil || kind == KindDiscrete }

// plan coalesces the fields into requests per kind: fields sorted by address
// join the current request while the gap to it is at most maxGap and the
// request stays within the protocol's size limit.
func plan(fields []field, maxGap int) []request {
	idx := make([]int, len(fields))
	for i := range idx {
		idx[i] = i
	}
	kindOrder := map[string]int{KindHolding: 0, KindInput: 1, KindCoil: 2, KindDiscrete: 3}
	slices.SortStableFunc(idx, func(a, b int) int {
		fa, fb := fields[a], fields[b]
		if d := kindOrder[fa.kind] - kindOrder[fb.kind]; d != 0 {
			return d
		}
		return int(fa.Address) - int(fb.Address)
	})
	var out []request
	for _, i := range idx {
		f := fields[i]
		end := int(f.Address) + f.width // exclusive
		limit := maxRegistersPerRead
		if isBitKind(f.kind) {
			limit = maxBitsPerRead
		}
		if n := len(out); n > 0 {
			r := &out[n-1]
			rEnd := int(r.start) + int(r.count)
			if r.kind == f.kind && int(f.Address) <= rEnd+maxGap && max(end, rEnd)-int(r.start) <= limit {
				r.count = uint16(max(end, rEnd) - int(r.start))
				r.fields = append(r.fields, i)
				continue
			}
		}
		out = append(out, request{kind: f.kind, start: f.Address, count: uint16(f.width), fields: []int{i}})
	}
	return out
}
