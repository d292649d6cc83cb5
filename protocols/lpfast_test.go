package protocols

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// referenceDecode is Decode with the general decoder alone, as it was
// before the fast path: the behaviour the fast path must reproduce.
func referenceDecode(data []byte, opts DecodeOptions) ([]Point, []string) {
	now := opts.Now
	prec := opts.Precision.lp()
	dec := lineprotocol.NewDecoderWithBytes(data)
	var lines lineCounter
	st := newDecodeState(data)
	var pts []Point
	var errs []string
	for dec.Next() {
		p, lerr := st.decodeEntry(dec, prec, now, data, &lines)
		if lerr != nil {
			errs = append(errs, fmt.Sprintf("line %d: %v", lerr.Line, lerr.Err))
			continue
		}
		pts = append(pts, p)
	}
	return pts, errs
}

func decodeBoth(t *testing.T, data []byte, prec Precision) (got, want []Point, gotErrs, wantErrs []string) {
	opts := DecodeOptions{Precision: prec, Now: time.Unix(1767225600, 123456789), MaxErrors: 1 << 20}
	err := Decode(data, opts, func(p Point) error {
		got = append(got, p)
		return nil
	})
	if de, ok := err.(*DecodeErrors); ok {
		for _, e := range de.Errs {
			gotErrs = append(gotErrs, fmt.Sprintf("line %d: %v", e.Line, e.Err))
		}
	} else if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want, wantErrs = referenceDecode(data, opts)
	return
}

func samePoints(a, b []Point) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if len(x.Tags) == 0 {
			x.Tags = nil
		}
		if len(y.Tags) == 0 {
			y.Tags = nil
		}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

var fastCorpus = []string{
	"air,district=d01,station=s0001 pm25=12.3,no2=41,ok=t,n=42i,u=7u 1767225600000000000",
	"air pm25=1 1",
	"air,b=2,a=1 x=1.5e3,y=-0.25,z=1E-9 -5",
	"air,a=1,a=2 x=1 1",
	"air x=1,x=2 1",
	"air,a=1, x=1 1",
	"air,=1 x=1 1",
	"air,a= x=1 1",
	"air,a=b=c x=1 1",
	"air x= 1",
	"air x=1  1",
	"air x=1 1 ",
	"air  x=1 1",
	"air x=1",
	"air x=1 99999999999999999999",
	"air x=1 -9223372036854775808",
	"air x=1 9223372036854775807",
	"air x=9223372036854775808i 1",
	"air x=-9223372036854775808i 1",
	"air x=18446744073709551615u 1",
	"air x=18446744073709551616u 1",
	"air x=-1u 1",
	"air x=1e400 1",
	"air x=1. 1",
	"air x=.5 1",
	"air x=-.5 1",
	"air x=01 1",
	"air x=007i 1",
	"air x=NaN 1",
	"air x=inf 1",
	"air x=+1 1",
	"air x=TRUE,y=False,z=f 1",
	"air x=tRUE 1",
	"air,a=1 x=\"str\" 1",
	"air,a=x\\ y x=1 1",
	"air x=\"multi\nline\" 2\nair x=3 3",
	"# comment\nair x=1 1",
	"  air x=1 1",
	"air x=1 1\r\nair x=2 2",
	"air,a=1 x=1 1\n\nair,a=2 x=2 2\nbad line\nair,a=3 x=3 3",
	"=air x=1 1",
	"air= x=1 1",
	"a,b x=1 1",
	"air x=1,,y=2 1",
	"air x=1, 1",
	"air,a=1,b=2,c=3,d=4,e=5 f1=1,f2=2,f3=3,f4=4,f5=5,f6=6,f7=7,f8=8,f9=9 1",
}

func TestDecode_fastPathAgreesWithGeneral(t *testing.T) {
	for _, prec := range []Precision{Nanosecond, Microsecond, Millisecond, Second} {
		for _, c := range fastCorpus {
			got, want, gotErrs, wantErrs := decodeBoth(t, []byte(c), prec)
			if !samePoints(got, want) || strings.Join(gotErrs, "|") != strings.Join(wantErrs, "|") {
				t.Errorf("%q (%v):\n fast path %v %v\n general   %v %v", c, prec, got, gotErrs, want, wantErrs)
			}
		}
	}
	// All of the corpus in one batch: line numbers stay right.
	all := []byte(strings.Join(fastCorpus, "\n"))
	got, want, gotErrs, wantErrs := decodeBoth(t, all, Nanosecond)
	if !samePoints(got, want) || strings.Join(gotErrs, "|") != strings.Join(wantErrs, "|") {
		t.Errorf("whole corpus:\n fast path %d points %v\n general   %d points %v", len(got), gotErrs, len(want), wantErrs)
	}
}

// FuzzDecodeFastPath: on any input, Decode with the fast path yields the
// points and errors of the general decoder alone.
func FuzzDecodeFastPath(f *testing.F) {
	for _, c := range fastCorpus {
		f.Add([]byte(c), uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, p uint8) {
		prec := []Precision{Nanosecond, Microsecond, Millisecond, Second}[p%4]
		got, want, gotErrs, wantErrs := decodeBoth(t, data, prec)
		if !samePoints(got, want) || strings.Join(gotErrs, "|") != strings.Join(wantErrs, "|") {
			t.Fatalf("%q (%v):\n fast path %v %v\n general   %v %v", data, prec, got, gotErrs, want, wantErrs)
		}
	})
}

// BenchmarkDecodeGeneralOnly decodes BenchmarkDecode's batch with the
// general decoder alone: the cost the fast path saves, measured side by
// side on the same machine.
func BenchmarkDecodeGeneralOnly(b *testing.B) {
	data, _ := AppendLines(nil, benchPoints(), Nanosecond)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		pts, _ := referenceDecode(data, DecodeOptions{Now: time.Unix(1767225600, 0)})
		n += len(pts)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "points/s")
}
