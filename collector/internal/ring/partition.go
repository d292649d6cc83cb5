package ring

import (
	"math/bits"

	"github.com/citysense/citysense/protocols"
)

// FNV-1a, 64 bit. Written out rather than through hash/fnv so that hashing
// a point allocates nothing and visits the strings in place.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// fnvSep mixes in a zero byte between strings, so that ("ab","c") and
// ("a","bc") hash differently.
func fnvSep(h uint64) uint64 { return h * fnvPrime }

// PointHash hashes a point's measurement and tag set — its series without
// the field name — so that all fields of one reading land in the same
// partition and travel as one line. Tags are sorted in the model, so equal
// tag sets hash equally.
//
// The function is part of the on-disk contract: changing it moves every
// series to another partition.
func PointHash(p *protocols.Point) uint64 {
	return seriesHash(p.Measurement, p.Tags)
}

// seriesHash is PointHash's body, shared with SeriesPartition so that the
// contract is written down once.
func seriesHash(measurement string, tags []protocols.Tag) uint64 {
	h := fnvString(fnvOffset, measurement)
	for _, t := range tags {
		h = fnvString(fnvSep(h), t.Key)
		h = fnvString(fnvSep(h), t.Value)
	}
	return fmix64(h)
}

// fmix64 is MurmurHash3's finaliser. FNV-1a leaves the high bits poorly
// mixed for short keys that differ only at the end (s0001, s0002, …), and
// Partition reads the high bits; without it 1,000 sim stations left one of
// 16 partitions empty.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Partition maps a point to one of n partitions (n ≥ 1).
func Partition(p *protocols.Point, n int) int {
	if n <= 1 {
		return 0
	}
	return reduce(PointHash(p), n)
}

// SeriesPartition maps a series, given by its measurement and sorted tags,
// to one of n partitions: the same answer as Partition on a point with that
// measurement and those tags, without building one.
func SeriesPartition(measurement string, tags []protocols.Tag, n int) int {
	if n <= 1 {
		return 0
	}
	return reduce(seriesHash(measurement, tags), n)
}

// reduce maps h onto [0, n) by multiply-shift: as uniform as a modulo,
// without a division. It reads the high bits of h.
func reduce(h uint64, n int) int {
	hi, _ := bits.Mul64(h, uint64(n))
	return int(hi)
}
