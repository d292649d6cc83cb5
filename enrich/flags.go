package enrich

import "github.com/citysense/citysense/protocols"

// Field flags: bits of the uint field <F>_qc that a stage adds to a point
// when field F fails a check. See the package documentation.
const (
	FlagRange       uint64 = 1 << iota // quality: outside min/max
	FlagSpike                          // quality: rate of change above the limit
	FlagFlatline                       // quality: same value too often / too long
	FlagStale                          // quality: far behind the station's newest point
	FlagSchemaType                     // schema: wrong type for the contract
	FlagSchemaRange                    // schema: outside the contract's min/max
)

// Point flags: bits of the uint field qc, for problems of the point as a
// whole rather than of one field.
const (
	PointUnknownStation uint64 = 1 << iota // registry: station tag not in the registry
	PointMissingTag                        // schema: a required tag is missing
	PointMissingField                      // schema: a required field is missing
)

// PointFlagKey is the field holding point flags.
const PointFlagKey = "qc"

// FlagSuffix ends every field-flag key.
const FlagSuffix = "_qc"

// FlagKey returns the flag field of field, e.g. "pm25_qc". Stages call it
// once in Init and keep the result: building keys per point would allocate.
func FlagKey(field string) string { return field + FlagSuffix }

// AddFlag ORs bits into the uint field key of p, adding the field when it is
// missing. A non-uint value under a reserved flag key (a client that sent
// pm25_qc="x") is replaced: flags are the pipeline's to set. Stages on the
// hot path use (*Slab).AddFlag, which grows points without an allocation
// each.
func AddFlag(p *protocols.Point, key string, bits uint64) {
	(*Slab)(nil).AddFlag(p, key, bits)
}

// Flags returns the bits in the flag field key of p, 0 when there is none.
func Flags(p *protocols.Point, key string) uint64 {
	for i := range p.Fields {
		if p.Fields[i].Key == key {
			if v := p.Fields[i].Value; v.Kind() == protocols.KindUint {
				return v.UintV()
			}
			return 0
		}
	}
	return 0
}

// Lookup helpers used on the hot path of several stages.

// TagValue returns the value of tag key; tags are sorted, but a linear scan
// beats a binary search over the two or three tags a point has.
func TagValue(p *protocols.Point, key string) (string, bool) {
	for i := range p.Tags {
		if p.Tags[i].Key == key {
			return p.Tags[i].Value, true
		}
	}
	return "", false
}

// FieldIndex returns the index of field key in p.Fields, or -1.
func FieldIndex(p *protocols.Point, key string) int {
	for i := range p.Fields {
		if p.Fields[i].Key == key {
			return i
		}
	}
	return -1
}

// The tags stages read and write.
const (
	StationTag  = "station"
	DistrictTag = "district"
)
