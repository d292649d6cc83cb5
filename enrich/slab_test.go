package enrich

import (
	"testing"

	"github.com/citysense/citysense/protocols"
)

func TestSlab_SetTag_KeepsSortedAndSeparate(t *testing.T) {
	var sl Slab
	base := []protocols.Tag{{Key: "a", Value: "1"}, {Key: "c", Value: "3"}, {Key: "a", Value: "x"}, {Key: "c", Value: "y"}}
	p := protocols.Point{Tags: base[0:2:2]}
	q := protocols.Point{Tags: base[2:4:4]}
	for _, tc := range []struct{ key, val, want string }{
		{"b", "2", "a=1,b=2,c=3"},
		{"d", "4", "a=1,b=2,c=3,d=4"},
		{"0", "0", "0=0,a=1,b=2,c=3,d=4"},
		{"b", "two", "0=0,a=1,b=two,c=3,d=4"},
	} {
		sl.SetTag(&p, tc.key, tc.val)
		if got := tagString(p.Tags); got != tc.want {
			t.Fatalf("after %s=%s: %s, want %s", tc.key, tc.val, got, tc.want)
		}
	}
	sl.SetTag(&q, "b", "z")
	if tagString(p.Tags) != "0=0,a=1,b=two,c=3,d=4" || tagString(q.Tags) != "a=x,b=z,c=y" {
		t.Fatalf("slab slices overlap: p %s q %s", tagString(p.Tags), tagString(q.Tags))
	}
	if base[2].Value != "x" {
		t.Fatal("the original backing array was written")
	}
}

func tagString(tags []protocols.Tag) string {
	s := ""
	for i, t := range tags {
		if i > 0 {
			s += ","
		}
		s += t.Key + "=" + t.Value
	}
	return s
}

func TestSlab_AddFlag_OrsAndReplaces(t *testing.T) {
	var sl Slab
	fs := []protocols.Field{{Key: "pm25", Value: protocols.Float(1)}, {Key: "spoof_qc", Value: protocols.String("x")}}
	p := protocols.Point{Fields: fs[:2:2]}
	sl.AddFlag(&p, "pm25_qc", FlagRange)
	sl.AddFlag(&p, "pm25_qc", FlagSpike)
	sl.AddFlag(&p, "spoof_qc", FlagStale)
	AddFlag(&p, PointFlagKey, PointUnknownStation)
	if got := Flags(&p, "pm25_qc"); got != FlagRange|FlagSpike {
		t.Fatalf("pm25_qc = %d", got)
	}
	if got := Flags(&p, "spoof_qc"); got != FlagStale {
		t.Fatalf("spoof_qc = %d", got)
	}
	if got := Flags(&p, PointFlagKey); got != PointUnknownStation {
		t.Fatalf("qc = %d", got)
	}
	if Flags(&p, "absent_qc") != 0 || len(p.Fields) != 4 {
		t.Fatalf("fields = %+v", p.Fields)
	}
}

func TestFlags_Values(t *testing.T) {
	// The bit values are a published contract (docs/enrichment.md).
	got := []uint64{FlagRange, FlagSpike, FlagFlatline, FlagStale, FlagSchemaType, FlagSchemaRange, PointUnknownStation, PointMissingTag, PointMissingField}
	want := []uint64{1, 2, 4, 8, 16, 32, 1, 2, 4}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("flag %d = %d, want %d", i, got[i], want[i])
		}
	}
}
