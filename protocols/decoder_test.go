package protocols

import (
	"fmt"
	"strings"
	"testing"
)

// A Decoder decodes each batch as Decode does, whatever came before: the
// slabs and names it keeps never leak into the next call's points.
func TestDecoder_SameAsDecode(t *testing.T) {
	var batches []string
	for b := range 6 {
		var sb strings.Builder
		// Batches of different sizes and shapes: more lines than the
		// kept slabs hold, fewer, string fields (the general decoder), bad
		// lines, and a batch of unique names past the intern table's size.
		lines := []int{3000, 10, 500, 1, 20000, 5000}[b]
		for i := range lines {
			switch {
			case b == 2 && i%7 == 0:
				fmt.Fprintf(&sb, "note,station=s%04d text=\"hello %d\" %d\n", i%1000, i, int64(i)*1e9)
			case b == 2 && i%11 == 0:
				sb.WriteString("bad line\n")
			case b == 4:
				fmt.Fprintf(&sb, "m%d,k%d=v%d f%d=%di %d\n", i, i%3, i, i%5, i, int64(i)*1e9)
			default:
				fmt.Fprintf(&sb, "air,district=d%02d,station=s%04d pm25=%d.%d,pm10=%d %d\n", i%8, i%1000, i%50, b, i%90, int64(i+b)*1e9)
			}
		}
		batches = append(batches, sb.String())
	}
	var d Decoder
	for round := range 2 {
		for i, batch := range batches {
			want, wantErr := DecodeAll([]byte(batch), DecodeOptions{})
			var got []Point
			gotErr := d.Decode([]byte(batch), DecodeOptions{}, func(p Point) error {
				got = append(got, p)
				return nil
			})
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("round %d batch %d: error %v, want %v", round, i, gotErr, wantErr)
			}
			if len(got) != len(want) {
				t.Fatalf("round %d batch %d: %d points, want %d", round, i, len(got), len(want))
			}
			for j := range got {
				if !pointsEqual(got[j], want[j]) {
					t.Fatalf("round %d batch %d point %d: %v, want %v", round, i, j, got[j], want[j])
				}
				// Each point owns its slices within the call.
				if cap(got[j].Tags) != len(got[j].Tags) || cap(got[j].Fields) != len(got[j].Fields) {
					t.Fatalf("round %d batch %d point %d: slices not capped", round, i, j)
				}
			}
		}
	}
}

// Strings from an earlier call stay valid after the next one.
func TestDecoder_StringsSurvive(t *testing.T) {
	var d Decoder
	var first []Point
	_ = d.Decode([]byte("air,station=s0001 pm25=1 1\nair,station=s0002 pm25=2 2\n"), DecodeOptions{}, func(p Point) error {
		first = append(first, p)
		return nil
	})
	names := []string{first[0].Measurement, first[0].Tags[0].Value, first[1].Tags[0].Value, first[1].Fields[0].Key}
	_ = d.Decode([]byte("noise,station=s0003 laeq=50 3\nnoise,station=s0004 laeq=51 4\n"), DecodeOptions{}, func(Point) error { return nil })
	if got := strings.Join(names, " "); got != "air s0001 s0002 pm25" {
		t.Fatalf("names after the next call: %q", got)
	}
}
