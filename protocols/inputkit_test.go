package protocols

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func TestSortedTags(t *testing.T) {
	tags, err := SortedTags(map[string]string{"station": "s1", "district": "d1", "": "x"})
	if err == nil || fmt.Sprint(tags) != "[{district d1} {station s1}]" {
		t.Fatalf("SortedTags = %v, %v", tags, err)
	}
	if tags, err := SortedTags(nil); err != nil || len(tags) != 0 {
		t.Fatalf("SortedTags(nil) = %v, %v", tags, err)
	}
}

func TestDecodeTagged(t *testing.T) {
	tags := []Tag{{"district", "d1"}, {"station", "cfg"}}
	pts, err := DecodeTagged([]byte("air,station=s9 pm25=1 1700000000\nair pm25= 1700000060\nair pm25=3 1700000120\n"), Second, tags)
	var de *DecodeErrors
	if !errors.As(err, &de) || len(de.Errs) != 1 || de.Errs[0].Line != 2 {
		t.Fatalf("err = %v, want line 2 named", err)
	}
	got := fmt.Sprint(pts[0].Tags, pts[0].Time, pts[1].Tags, pts[1].Time)
	if len(pts) != 2 || got != "[{district d1} {station s9}] 1700000000000000000 [{district d1} {station cfg}] 1700000120000000000" {
		t.Fatalf("points %d: %s", len(pts), got)
	}
}

func TestPrecisionOr(t *testing.T) {
	if p, err := PrecisionOr("", Millisecond); err != nil || p != Millisecond {
		t.Fatalf("empty: %v %v", p, err)
	}
	if p, err := PrecisionOr("s", Millisecond); err != nil || p != Second {
		t.Fatalf("s: %v %v", p, err)
	}
	if _, err := PrecisionOr("h", Millisecond); err == nil {
		t.Fatal("h accepted")
	}
}

func TestInputCounters(t *testing.T) {
	set := metrics.NewSet()
	c := InputCounters(set, "http", "listen", "127.0.0.1:8186")
	c("points").Add(3)
	var b bytes.Buffer
	set.WritePrometheus(&b)
	if !strings.Contains(b.String(), `citysense_input_points_total{input="http",listen="127.0.0.1:8186"} 3`) {
		t.Fatalf("metrics:\n%s", b.String())
	}
	InputCounters(nil, "x", "k", "v")("points").Inc() // a private set
}

func TestLogLimiter_Warn(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	l := LogLimiter{Period: time.Hour}
	for i := range 5 {
		l.Warn(log, "bad payload", "n", i)
	}
	if n := strings.Count(b.String(), "bad payload"); n != 1 || !strings.Contains(b.String(), "n=0") {
		t.Fatalf("log:\n%s", b.String())
	}
	l.last = l.last.Add(-2 * time.Hour) // a period later
	l.Warn(log, "bad payload", "n", 5)
	if !strings.Contains(b.String(), "n=5 suppressed=4") {
		t.Fatalf("log:\n%s", b.String())
	}
}

type plainAcc struct{}

func (plainAcc) Write(context.Context, []Point) error { return nil }

type keepingAcc struct {
	plainAcc
	got string
}

func (k *keepingAcc) Quarantine(_ context.Context, source string, raw []byte, reason error) error {
	k.got = source + " " + string(raw) + " " + reason.Error()
	return nil
}

func TestQuarantine(t *testing.T) {
	if err := Quarantine(t.Context(), plainAcc{}, "s", []byte("x"), errors.New("r")); err != nil {
		t.Fatal(err)
	}
	k := &keepingAcc{}
	if err := Quarantine(t.Context(), k, "mqtt a/b", []byte("{oops"), errors.New("json")); err != nil || k.got != "mqtt a/b {oops json" {
		t.Fatalf("got %q, %v", k.got, err)
	}
}
