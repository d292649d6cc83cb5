package enrich

import "github.com/citysense/citysense/protocols"

// Slab hands out tag and field slices from a few shared arrays, so that a
// stage that grows points (a district tag, a flag field, a derived point)
// costs a few allocations per batch instead of one per point. Points from
// the decoder and the simulator have tag and field slices with no spare
// capacity, so any growth would otherwise allocate.
//
// Every slice handed out is capped (full slice expression): appending to
// one point's slice later can never overwrite another point's. A Slab is
// meant to live for one Enrich call and is not safe for concurrent use; the
// zero Slab is ready, and a nil *Slab allocates exactly what each call
// needs.
type Slab struct {
	t []protocols.Tag
	f []protocols.Field
}

// Slab chunk sizes: a batch of a few hundred points grows out of one chunk.
const (
	slabTags   = 256
	slabFields = 512
)

// Tags returns a slice of n tags.
func (s *Slab) Tags(n int) []protocols.Tag {
	if s == nil {
		return make([]protocols.Tag, n)
	}
	if len(s.t) < n {
		s.t = make([]protocols.Tag, max(slabTags, n))
	}
	out := s.t[:n:n]
	s.t = s.t[n:]
	return out
}

// Fields returns a slice of n fields.
func (s *Slab) Fields(n int) []protocols.Field {
	if s == nil {
		return make([]protocols.Field, n)
	}
	if len(s.f) < n {
		s.f = make([]protocols.Field, max(slabFields, n))
	}
	out := s.f[:n:n]
	s.f = s.f[n:]
	return out
}

// SetTag sets or adds a tag, keeping the tag set sorted, like
// protocols.Point.SetTag but growing the tag slice from the slab.
func (s *Slab) SetTag(p *protocols.Point, key, value string) {
	i := 0
	for i < len(p.Tags) && p.Tags[i].Key < key {
		i++
	}
	if i < len(p.Tags) && p.Tags[i].Key == key {
		p.Tags[i].Value = value
		return
	}
	var tags []protocols.Tag
	if cap(p.Tags) > len(p.Tags) {
		tags = p.Tags[:len(p.Tags)+1]
	} else {
		tags = s.Tags(len(p.Tags) + 1)
		copy(tags, p.Tags[:i])
	}
	copy(tags[i+1:], p.Tags[i:])
	tags[i] = protocols.Tag{Key: key, Value: value}
	p.Tags = tags
}

// AddFlag is the package-level AddFlag growing the field slice from the
// slab.
func (s *Slab) AddFlag(p *protocols.Point, key string, bits uint64) {
	if i := FieldIndex(p, key); i >= 0 {
		v := p.Fields[i].Value
		if v.Kind() == protocols.KindUint {
			bits |= v.UintV()
		}
		p.Fields[i].Value = protocols.Uint(bits)
		return
	}
	s.AppendField(p, protocols.Field{Key: key, Value: protocols.Uint(bits)})
}

// AppendField appends a field to p.
func (s *Slab) AppendField(p *protocols.Point, f protocols.Field) {
	if cap(p.Fields) > len(p.Fields) {
		p.Fields = append(p.Fields, f)
		return
	}
	fields := s.Fields(len(p.Fields) + 1)
	copy(fields, p.Fields)
	fields[len(p.Fields)] = f
	p.Fields = fields
}
