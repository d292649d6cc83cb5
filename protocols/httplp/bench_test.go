package httplp

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/citysense/citysense/protocols"
)

type discard struct{}

func (discard) Write(context.Context, []protocols.Point) error { return nil }

// BenchmarkInput_write measures a /write of 1,000 five-field lines through
// the handler (no network).
func BenchmarkInput_write(b *testing.B) {
	var body bytes.Buffer
	for i := range 1000 {
		fmt.Fprintf(&body, "air,district=d01,station=s%04d pm25=12.3,pm10=20.1,no2=31,temperature=4.5,humidity=81.2 %d\n", i%50, 1735689600000000000+int64(i))
	}
	in := New()
	if err := in.Init(nil); err != nil {
		b.Fatal(err)
	}
	h := in.Handler(discard{})
	b.ReportAllocs()
	b.SetBytes(int64(body.Len()))
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/write", bytes.NewReader(body.Bytes())))
		if rec.Code != 204 {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkInput_push measures /api/v1/push with 100 points per request.
func BenchmarkInput_push(b *testing.B) {
	var body bytes.Buffer
	body.WriteByte('[')
	for i := range 100 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"measurement":"air","tags":{"station":"s%04d"},"fields":{"pm25":12.3,"pm10":20.1,"no2":31,"temperature":4.5,"humidity":81.2},"time":%d}`, i, 1735689600+i)
	}
	body.WriteByte(']')
	in := New()
	if err := in.Init(nil); err != nil {
		b.Fatal(err)
	}
	h := in.Handler(discard{})
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/push", bytes.NewReader(body.Bytes())))
		if rec.Code != 204 {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
	b.ReportMetric(float64(b.N)*100/b.Elapsed().Seconds(), "points/s")
}
