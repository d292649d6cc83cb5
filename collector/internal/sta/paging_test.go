package sta

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
)

// pagingStore holds 25,000 readings of s0100 pm25, one a second from t0
// with value i/4 for the i-th, and 500 of s0101 pm25 (value -i) at the
// same seconds, so pages cross a Datastream boundary and times tie.
func pagingStore(t *testing.T) *countingStore {
	st := openStore(t)
	var pts []protocols.Point
	for i := range 25_000 {
		ts := t0 + int64(i)*int64(time.Second)
		pts = append(pts, point("air", ts, map[string]string{"station": "s0100"}, map[string]protocols.Value{"pm25": protocols.Float(float64(i) / 4)}))
		if i < 500 {
			pts = append(pts, point("air", ts, map[string]string{"station": "s0101"}, map[string]protocols.Value{"pm25": protocols.Float(-float64(i))}))
		}
	}
	if _, err := st.Write(pts); err != nil {
		t.Fatal(err)
	}
	return &countingStore{Store: st}
}

type obsRow struct {
	ds    string
	t     int64
	value float64
}

// follow pages through target via @iot.nextLink and returns every
// Observation with the points each page read.
func follow(t *testing.T, h *Handler, cs *countingStore, target string, maxPages int) (rows []obsRow, pages int, maxRead int64) {
	t.Helper()
	next := target
	for ; next != ""; pages++ {
		if pages == maxPages {
			t.Fatalf("more than %d pages", maxPages)
		}
		before := cs.read.Load()
		code, v, body := get(t, h, strings.TrimPrefix(next, "http://example.com"))
		if code != 200 {
			t.Fatalf("GET %s = %d %s", next, code, body)
		}
		maxRead = max(maxRead, cs.read.Load()-before)
		for _, e := range v["value"].([]any) {
			m := e.(map[string]any)
			id := m["@iot.id"].(string)
			i := strings.LastIndexByte(id, ':')
			ts, err := strconv.ParseInt(id[i+1:], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			if pt := m["phenomenonTime"].(string); pt != formatTime(ts) {
				t.Fatalf("%s: phenomenonTime %s", id, pt)
			}
			rows = append(rows, obsRow{id[:i], ts, m["result"].(float64)})
		}
		next, _ = v["@iot.nextLink"].(string)
	}
	return rows, pages, maxRead
}

func wantValue(t *testing.T, r obsRow) {
	t.Helper()
	i := (r.t - t0) / int64(time.Second)
	want := float64(i) / 4
	if r.ds == "s0101:air:pm25" {
		want = -float64(i)
	}
	if r.value != want {
		t.Fatalf("%+v: value %v, want %v", r, r.value, want)
	}
}

// TestHandler_paging25000: paging through 25,500 Observations by
// @iot.nextLink yields each exactly once, in order, with its value; each
// page reads a bounded number of points (at most the page and the rest of
// one 2-hour storage window), not everything before it.
func TestHandler_paging25000(t *testing.T) {
	cs := pagingStore(t)
	h := newHandler(cs, nil)

	t.Run("default order", func(t *testing.T) {
		rows, pages, maxRead := follow(t, h, cs, q("/sta/v1.1/Observations?$top=1000&$filter=Datastream/ObservedProperty/name eq 'pm25'&$select=@iot.id,phenomenonTime,result"), 100)
		if len(rows) != 25_500 || pages != 26 {
			t.Fatalf("%d Observations in %d pages, want 25500 in 26", len(rows), pages)
		}
		for k, r := range rows {
			wantDS, i := "s0100:air:pm25", k
			if k >= 25_000 {
				wantDS, i = "s0101:air:pm25", k-25_000
			}
			if r.ds != wantDS || r.t != t0+int64(i)*int64(time.Second) {
				t.Fatalf("row %d = %+v, want %s at second %d (a gap or a repeat)", k, r, wantDS, i)
			}
			wantValue(t, r)
		}
		t.Logf("26 pages; the most points one page read: %d", maxRead)
		if maxRead > 1000+2*7200 {
			t.Fatalf("a page read %d points; paging should not rescan", maxRead)
		}
	})

	t.Run("newest first", func(t *testing.T) {
		rows, pages, maxRead := follow(t, h, cs, q("/sta/v1.1/Observations?$top=2000&$orderby=phenomenonTime desc&$select=@iot.id,phenomenonTime,result"), 100)
		if len(rows) != 25_500 || pages != 13 {
			t.Fatalf("%d Observations in %d pages, want 25500 in 13", len(rows), pages)
		}
		seen := map[obsRow]bool{}
		for k, r := range rows {
			if seen[r] {
				t.Fatalf("row %d repeats %+v", k, r)
			}
			seen[r] = true
			if k > 0 {
				p := rows[k-1]
				if r.t > p.t || r.t == p.t && r.ds <= p.ds {
					t.Fatalf("rows %d, %d out of order: %+v %+v", k-1, k, p, r)
				}
			}
			wantValue(t, r)
		}
		t.Logf("13 pages; the most points one page read: %d", maxRead)
		// The first page reads a few hours of slabs, never the whole set.
		if maxRead >= 25_500 {
			t.Fatalf("a page read %d points, the whole set", maxRead)
		}
	})

	t.Run("time range pushed down", func(t *testing.T) {
		before := cs.read.Load()
		from := formatTime(t0 + 20_000*int64(time.Second))
		rows, _, _ := follow(t, h, cs, q("/sta/v1.1/Datastreams('s0100:air:pm25')/Observations?$filter=phenomenonTime ge "+from+"&$top=10000&$select=@iot.id,phenomenonTime,result&$count=true"), 5)
		if len(rows) != 5_000 || rows[0].t != t0+20_000*int64(time.Second) {
			t.Fatalf("%d rows from %+v", len(rows), rows[0])
		}
		// count and page: twice the range and the part of its first window
		// before the bound, not the 20,000 points before it.
		if read := cs.read.Load() - before; read > 2*(5_000+7_200) {
			t.Fatalf("read %d points for a range of 5,000", read)
		}
	})

	t.Run("open-ended time orders read in few slabs", func(t *testing.T) {
		// Oldest first from the beginning of time and newest first to its
		// end: the slabs grow fourfold, so reaching 2026 from either end
		// of int64 time takes a few dozen reads, not millions.
		for _, u := range []string{"/sta/v1.1/Observations?$orderby=phenomenonTime&$top=1&$select=result",
			"/sta/v1.1/Observations?$orderby=phenomenonTime%20desc&$top=1&$select=result&$filter=phenomenonTime%20lt%202026-01-01T00:00:01Z",
			"/sta/v1.1/Observations?$orderby=phenomenonTime%20desc&$top=1&$select=result&$filter=phenomenonTime%20lt%201900-01-01",
			"/sta/v1.1/Observations?$orderby=phenomenonTime&$top=1&$select=result&$filter=phenomenonTime%20gt%202200-01-01"} {
			before := cs.calls.Load()
			code, _, body := get(t, h, u)
			calls := cs.calls.Load() - before
			if code != 200 || calls > 64 {
				t.Fatalf("GET %s = %d %s after %d reads", u, code, body, calls)
			}
			t.Logf("%s: %d reads", u, calls)
		}
	})

	t.Run("id pushed down", func(t *testing.T) {
		id := "s0100:air:pm25:" + strconv.FormatInt(t0+12_345*int64(time.Second), 10)
		before := cs.read.Load()
		code, _, body := get(t, h, "/sta/v1.1/Observations?$select=result&$filter=@iot.id%20eq%20%27"+id+"%27")
		if code != 200 || strings.TrimSpace(body) != `{"value":[{"result":3086.25}]}` {
			t.Fatalf("%d %s", code, body)
		}
		if read := cs.read.Load() - before; read > 7200 {
			t.Fatalf("read %d points for one", read)
		}
	})

	t.Run("skip far in", func(t *testing.T) {
		code, v, body := get(t, h, "/sta/v1.1/Datastreams('s0101:air:pm25')/Observations?$skip=499&$select=result")
		if code != 200 || strings.TrimSpace(body) != `{"value":[{"result":-499}]}` || v["@iot.nextLink"] != nil {
			t.Fatalf("%d %s", code, body)
		}
	})
}

// TestSatAdd: the slab arithmetic saturates rather than wraps.
func TestSatAdd(t *testing.T) {
	for _, c := range [][3]int64{{math.MaxInt64, 1, math.MaxInt64}, {math.MinInt64, -1, math.MinInt64}, {1, 2, 3}, {-5, -5, -10}} {
		if got := satAdd(c[0], c[1]); got != c[2] {
			t.Errorf("satAdd(%d, %d) = %d, want %d", c[0], c[1], got, c[2])
		}
	}
}
