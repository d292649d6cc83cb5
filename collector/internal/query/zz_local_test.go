package query

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/citysense/citysense/collector/internal/store"
)

func BenchmarkLocalQ1(b *testing.B) {
	dir := os.Getenv("Q1DIR")
	if dir == "" {
		b.Skip()
	}
	opts := store.DefaultOptions()
	st, err := store.OpenDir(dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e := &Engine{Source: st, MaxSeries: 10000, MaxPoints: 1000000, MaxScan: 100000000}
	m, _ := store.NewMatcher("station", store.MatchEqual, "s0001")
	req := Request{Measurement: "air", Field: "pm25", Matchers: []store.Matcher{m}, From: time.Date(2026, 11, 20, 17, 13, 0, 0, time.UTC).UnixNano(), To: time.Date(2026, 11, 23, 17, 12, 0, 0, time.UTC).UnixNano(), Step: time.Hour, Agg: AggMean}
	r, err := e.Series(context.Background(), req)
	if err != nil || len(r.Series) != 1 {
		b.Fatal(err, len(r.Series))
	}
	b.Log(len(r.Series[0].Points))
	b.ResetTimer()
	for b.Loop() {
		e.Series(context.Background(), req)
	}
}
