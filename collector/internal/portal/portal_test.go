package portal

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, target string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler_index(t *testing.T) {
	h := New(Options{}, nil)
	rec := get(t, h, "/")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	want := "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; " +
		"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
	if csp := rec.Header().Get("Content-Security-Policy"); csp != want {
		t.Errorf("CSP\n got %s\nwant %s", csp, want)
	}
	if strings.Contains(rec.Header().Get("Content-Security-Policy"), "unsafe") {
		t.Errorf("CSP allows unsafe sources")
	}
	body := rec.Body.String()
	// No inline script or style: everything comes from files the CSP allows.
	for _, bad := range []string{"<script>", " style=", "<style", "javascript:", " onclick="} {
		if strings.Contains(body, bad) {
			t.Errorf("index.html contains %q", bad)
		}
	}
	etag := rec.Header().Get("ETag")
	if r := get(t, h, "/", "If-None-Match", etag); r.Code != 304 {
		t.Errorf("If-None-Match: %d", r.Code)
	}
}

func TestHandler_config(t *testing.T) {
	tests := []struct {
		opts   Options
		config map[string]string
		img    string
	}{
		{Options{}, map[string]string{"tile_url": "", "tile_attribution": "", "licence": "CC BY 4.0",
			"licence_url": "https://creativecommons.org/licenses/by/4.0/", "attribution": "CitySense contributors"}, "img-src 'self' data:;"},
		{Options{TileURL: "https://tiles.example.org/{z}/{x}/{y}.png", TileAttribution: "© Example", Licence: "ODbL", LicenceURL: "https://opendatacommons.org/licenses/odbl/", Attribution: "City of X"},
			map[string]string{"tile_url": "https://tiles.example.org/{z}/{x}/{y}.png", "tile_attribution": "© Example", "licence": "ODbL",
				"licence_url": "https://opendatacommons.org/licenses/odbl/", "attribution": "City of X"}, "img-src 'self' data: https://tiles.example.org;"},
		// Not an http(s) template: dropped, the map draws without tiles.
		{Options{TileURL: "javascript:alert(1)//{z}"}, map[string]string{"tile_url": "", "tile_attribution": "", "licence": "CC BY 4.0",
			"licence_url": "https://creativecommons.org/licenses/by/4.0/", "attribution": "CitySense contributors"}, "img-src 'self' data:;"},
	}
	for _, tt := range tests {
		rec := get(t, New(tt.opts, nil), "/portal/config.json")
		var got map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%v %v", err, rec.Header())
		}
		for k, v := range tt.config {
			if got[k] != v {
				t.Errorf("%+v: %s = %q, want %q", tt.opts, k, got[k], v)
			}
		}
		if !strings.Contains(rec.Header().Get("Content-Security-Policy"), tt.img) {
			t.Errorf("%+v: CSP %q lacks %q", tt.opts, rec.Header().Get("Content-Security-Policy"), tt.img)
		}
	}
}

func TestHandler_assetsAndNotFound(t *testing.T) {
	h := New(Options{}, nil)
	tests := []struct {
		target string
		code   int
		ctype  string
	}{
		{"/assets/app.js", 200, "text/javascript; charset=utf-8"},
		{"/assets/app.css", 200, "text/css; charset=utf-8"},
		{"/assets/i18n/de.json", 200, "application/json"},
		{"/assets/vendor/leaflet.js", 200, "text/javascript; charset=utf-8"},
		{"/assets/vendor/uPlot.iife.min.js", 200, "text/javascript; charset=utf-8"},
		{"/assets/nope.js", 404, ""},
		{"/assets/../portal.go", 404, ""},
		{"/assets/", 404, ""},
		{"/station/s0001", 404, ""},
	}
	for _, tt := range tests {
		rec := get(t, h, tt.target)
		if rec.Code != tt.code || (tt.ctype != "" && rec.Header().Get("Content-Type") != tt.ctype) {
			t.Errorf("%s: %d %q, want %d %q", tt.target, rec.Code, rec.Header().Get("Content-Type"), tt.code, tt.ctype)
		}
		if tt.code == 200 && (rec.Body.Len() == 0 || rec.Header().Get("Cache-Control") != "public, max-age=300") {
			t.Errorf("%s: %d bytes, Cache-Control %q", tt.target, rec.Body.Len(), rec.Header().Get("Cache-Control"))
		}
	}
}
