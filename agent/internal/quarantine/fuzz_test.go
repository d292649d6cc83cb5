package quarantine

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDecode: any stored value decodes to an entry or ErrCorrupt, never a
// panic, and what decodes encodes to a value that decodes to the same entry.
func FuzzDecode(f *testing.F) {
	f.Add(encode(Entry{Time: time.Unix(1, 2), Input: "inputs[0]", Source: "mqtt a/b", Reason: "json", Size: 3, Raw: []byte("{x}")}))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, v []byte) {
		e, err := decode(7, v, true)
		if err != nil {
			return
		}
		if e.Size < 0 {
			t.Fatalf("negative size from %x", v)
		}
		again, err := decode(7, encode(e), true)
		if err != nil || again.Time != e.Time || again.Input != e.Input || again.Source != e.Source ||
			again.Reason != e.Reason || again.Size != e.Size || !bytes.Equal(again.Raw, e.Raw) {
			t.Fatalf("%x: %+v encodes to %+v, %v", v, e, again, err)
		}
	})
}
