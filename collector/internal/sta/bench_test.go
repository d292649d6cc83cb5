package sta

import (
	"fmt"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
)

// BenchmarkHandler_city: 10,000 stations × 5 air fields (50,000
// Datastreams). "snapshot" rebuilds the entities on every request (the
// worst case: one request per SnapshotTTL), the others reuse it.
func BenchmarkHandler_city(b *testing.B) {
	st := openStoreB(b)
	var pts []protocols.Point
	for s := range 10_000 {
		id := fmt.Sprintf("s%05d", s)
		for k := range 3 {
			pts = append(pts, point("air", t0+int64(k)*int64(time.Minute), map[string]string{"station": id, "district": fmt.Sprintf("d%02d", s%23)},
				map[string]protocols.Value{"pm25": protocols.Float(1.5), "pm10": protocols.Float(2), "no2": protocols.Float(3), "temperature": protocols.Float(4), "humidity": protocols.Float(5)}))
		}
	}
	if _, err := st.Write(pts); err != nil {
		b.Fatal(err)
	}
	shared := newHandler(st, nil)
	for _, c := range []struct{ name, url string }{
		{"snapshot", "/sta/v1.1/Things?$top=1"},
		{"Datastreams page", "/sta/v1.1/Datastreams?$top=100"},
		{"Datastreams filtered", q("/sta/v1.1/Datastreams?$filter=ObservedProperty/name eq 'pm25' and Thing/properties/district eq 'd07'&$count=true")},
		{"latest of 100 Datastreams", q("/sta/v1.1/Datastreams?$select=name&$expand=Observations($orderby=phenomenonTime desc;$top=1;$select=result)")},
		{"Observations page", "/sta/v1.1/Observations?$top=1000"},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := shared
			if c.name == "snapshot" {
				h = newHandler(st, func(o *Options) { o.SnapshotTTL = time.Nanosecond })
			}
			get(b, h, c.url) // the snapshot, built once for the others
			for b.Loop() {
				if code, _, body := get(b, h, c.url); code != 200 {
					b.Fatalf("%d %s", code, body)
				}
			}
		})
	}
}
