package portal

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/collector/internal/store"
)

type fakeStations struct {
	sts []store.Station
	err error
}

func (f fakeStations) Stations() ([]store.Station, error) { return f.sts, f.err }

func render(t *testing.T, src Stations) *httptest.ResponseRecorder {
	t.Helper()
	h := New(src, nil)
	h.now = func() time.Time { return time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC) }
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	return rec
}

func TestHandler_ServeHTTP_listsStations(t *testing.T) {
	rec := render(t, fakeStations{sts: []store.Station{
		{ID: "s0001", District: "d01", Measurements: []string{"air", "noise"}, LastSeen: time.Date(2025, 1, 1, 0, 0, 10, 0, time.UTC).UnixNano()},
		{ID: "s0002", Measurements: []string{"air"}, LastSeen: 0},
	}})
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	body := rec.Body.String()
	for _, want := range []string{
		"<h2>Stations (2)</h2>",
		"<td>s0001</td>\n<td>d01</td>\n<td>air, noise</td>\n<td>2025-01-01T00:00:10Z</td>",
		`<a href="/api/v1/series?station=s0001&amp;field=pm25">series</a>`,
		"<td>s0002</td>\n<td><span class=\"muted\">unknown</span></td>",
		"Page generated 2025-01-01T12:00:00Z.",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
}

// Station ids and districts come from the field; they must come out inert.
func TestHandler_ServeHTTP_escapes(t *testing.T) {
	evil := `"><script>alert(1)</script>&x=`
	rec := render(t, fakeStations{sts: []store.Station{{ID: evil, District: "<b>d</b>", Measurements: []string{"<i>"}}}})
	body := rec.Body.String()
	if strings.Contains(body, "<script>") || strings.Contains(body, "<b>") || strings.Contains(body, "<i>") {
		t.Fatalf("unescaped markup in page:\n%s", body)
	}
	for _, want := range []string{
		`<td>&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;x=</td>`,
		`href="/api/v1/series?station=%22%3e%3cscript%3ealert%281%29%3c%2fscript%3e%26x%3d&amp;field=pm25"`,
		`<td>&lt;b&gt;d&lt;/b&gt;</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
}

func TestHandler_ServeHTTP_empty(t *testing.T) {
	rec := render(t, fakeStations{})
	if !strings.Contains(rec.Body.String(), "No station has reported yet.") {
		t.Errorf("empty page:\n%s", rec.Body.String())
	}
}

func TestHandler_ServeHTTP_storeError(t *testing.T) {
	rec := render(t, fakeStations{err: errors.New("boom")})
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "boom") {
		t.Errorf("status %d body %q; want 500 without internals", rec.Code, rec.Body.String())
	}
}
