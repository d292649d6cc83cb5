package protocols

import (
	"testing"
	"time"
)

// FuzzDecode checks that no input crashes the decoder, that every point it
// delivers is valid, and that what it delivers survives an encode/decode
// round trip unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"air,station=s0001 pm25=12.5,n=3i,u=4u,b=t,s=\"x\" 1735689600000000000\n",
		"m\\ x,k\\=1=v\\,w f=2 6\n# comment\n\nm f=\"a\nb\" 7",
		"m f=1,f=2 3", "m f=NaN", "m,a=1,a=2 f=1", "m f=1 99999999999999999999", "\xff f=1",
	} {
		f.Add([]byte(s))
	}
	now := time.Unix(1735689600, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		pts, _ := DecodeAll(data, DecodeOptions{Now: now})
		for i := range pts {
			if err := pts[i].Validate(); err != nil {
				t.Fatalf("decoder delivered invalid point %+v: %v", pts[i], err)
			}
		}
		out, err := AppendLines(nil, pts, Nanosecond)
		if err != nil {
			// Valid UTF-8 is not required of decoded strings by the parser
			// in every position; such points are skipped by the encoder.
			return
		}
		back, err := DecodeAll(out, DecodeOptions{Now: now})
		if err != nil {
			t.Fatalf("re-decode of %q: %v", out, err)
		}
		if len(back) != len(pts) {
			t.Fatalf("round trip %d → %d points", len(pts), len(back))
		}
		for i := range pts {
			if !pointsEqual(pts[i], back[i]) {
				t.Fatalf("round trip changed point %d:\n got %+v\nwant %+v", i, back[i], pts[i])
			}
		}
	})
}
