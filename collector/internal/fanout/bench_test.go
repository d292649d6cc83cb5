package fanout

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/citysense/citysense/collector/internal/query"
	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/protocols"
)

// remoteView sends every partition to n2 or n3 (by parity), from a node
// that owns none.
type remoteView struct{ n2, n3 Node }

func (v *remoteView) Self() string    { return "client" }
func (v *remoteView) Partitions() int { return numParts }
func (v *remoteView) Candidates(p int) []Node {
	if p%2 == 0 {
		return []Node{v.n2}
	}
	return []Node{v.n3}
}

// remoteSetup serves the partitions of pts from two nodes and returns a
// Source on a third that holds nothing, and one node's store with all of
// pts for the single-store baseline.
func remoteSetup(b *testing.B, pts []protocols.Point, opts store.Options) (*Source, *store.Store) {
	open := func() *store.Store {
		s, err := store.OpenDir(b.TempDir(), opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	all, empty := open(), open()
	if _, err := all.Write(pts); err != nil {
		b.Fatal(err)
	}
	view := &remoteView{}
	for k, n := range []*Node{&view.n2, &view.n3} {
		st := open()
		var mine []protocols.Point
		for _, p := range pts {
			if partitionOf(p.Measurement, p.Tags)%2 == k {
				mine = append(mine, p)
			}
		}
		if _, err := st.Write(mine); err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(NewHandler(Options{Local: st, View: view, PartitionOf: partitionOf, Secret: secret}))
		b.Cleanup(srv.Close)
		*n = Node{Name: fmt.Sprintf("n%d", k+2), API: srv.URL}
	}
	o := Options{Local: empty, View: view, PartitionOf: partitionOf, Secret: secret, Client: DefaultClient()}
	b.Cleanup(o.Client.CloseIdleConnections)
	return NewSource(o), all
}

func receivedBytes(s *Source) int64 {
	var n int64
	for _, node := range []string{"n2", "n3"} {
		n += int64(s.set.GetOrCreateCounter(fmt.Sprintf(`citysense_fanout_received_bytes_total{node=%q}`, node)).Get())
	}
	return n
}

// BenchmarkSource_ReadRaw reads every raw sample of the test data set (40
// series × 180 minutes per field) from two remote nodes, against the same
// read from one local store.
func BenchmarkSource_ReadRaw(b *testing.B) {
	opts := store.DefaultOptions()
	opts.Now = func() time.Time { return t0.Add(5 * time.Hour) }
	src, all := remoteSetup(b, dataset(), opts)
	for _, tc := range []struct {
		name string
		s    query.Source
	}{{"fanout", src}, {"local", all}} {
		b.Run(tc.name, func(b *testing.B) {
			refs, err := tc.s.Lookup(store.Selector{Field: "pm25"})
			if err != nil {
				b.Fatal(err)
			}
			bytes0 := receivedBytes(src)
			samples := 0
			for b.Loop() {
				err := tc.s.ReadRaw(context.Background(), refs, 0, 1<<62, func(_ int, smp []store.Sample) error {
					samples += len(smp)
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(samples), "ns/sample")
			if tc.name == "fanout" {
				b.ReportMetric(float64(receivedBytes(src)-bytes0)/float64(samples), "B/sample")
			}
		})
	}
}

// BenchmarkEngine_yearHourly asks for a year of hourly means of 20
// stations (one reading an hour), through two remote nodes and from one
// local store.
func BenchmarkEngine_yearHourly(b *testing.B) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(1, 0, 0)
	var pts []protocols.Point
	for t := start; t.Before(end); t = t.Add(time.Hour) {
		for s := range 20 {
			tags := []protocols.Tag{{Key: "district", Value: fmt.Sprintf("d%d", s%5)}, {Key: "station", Value: fmt.Sprintf("s%03d", s)}}
			pts = append(pts, protocols.Point{Measurement: "air", Tags: tags, Time: t.UnixNano(),
				Fields: []protocols.Field{{Key: "pm25", Value: protocols.Float(float64((s*7+t.Hour()*13)%400) / 4)}}})
		}
	}
	opts := store.DefaultOptions()
	opts.Retention = store.Retention{}
	opts.Now = func() time.Time { return end.Add(time.Hour) }
	src, all := remoteSetup(b, pts, opts)
	req := query.Request{Field: "pm25", From: start.UnixNano(), To: end.UnixNano() - 1, Step: time.Hour, Agg: query.AggMean}
	for _, tc := range []struct {
		name string
		s    query.Source
	}{{"fanout", src}, {"local", all}} {
		b.Run(tc.name, func(b *testing.B) {
			e := &query.Engine{Source: tc.s}
			bytes0 := receivedBytes(src)
			points := 0
			for b.Loop() {
				res, err := e.Series(context.Background(), req)
				if err != nil {
					b.Fatal(err)
				}
				points = 0
				for _, s := range res.Series {
					points += len(s.Points)
				}
			}
			if points != 20*365*24 {
				b.Fatalf("%d points, want %d", points, 20*365*24)
			}
			if tc.name == "fanout" {
				b.ReportMetric(float64(receivedBytes(src)-bytes0)/float64(b.N), "B/op-wire")
			}
		})
	}
}
