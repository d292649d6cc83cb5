package e2e

import (
	"context"
	"encoding/csv"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

// needOrSkip fails under CI (where every peer must be installed) and skips
// on a developer's machine.
func needOrSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// artifacts is where screenshots go: $CITYSENSE_ARTIFACTS, or the test's
// temporary directory.
func artifacts(t *testing.T) string {
	dir := os.Getenv("CITYSENSE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPortal runs the portal in headless Chromium against a collector with
// the demo enrichment chain, fed 26 hours of the simulated city: the map
// shows every station, a station's charts hold exactly the API's points in
// every range, the CSV download holds the same rows, live updates arrive,
// and axe-core finds no serious or critical accessibility violation.
func TestPortal(t *testing.T) {
	chrome := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chrome = p
			break
		}
	}
	if chrome == "" {
		needOrSkip(t, "no chromium on PATH (Debian package chromium)")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	axeSrc, err := os.ReadFile(filepath.Join(root, "collector", "internal", "portal", "web", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		needOrSkip(t, "axe-core is not installed (make portal, or npm ci in collector/internal/portal/web): %v", err)
	}
	out := artifacts(t)

	// The collector, with the demo chain as enrich_test.go runs it.
	dc := startDemoCollector(t, "e2e-portal", "portal-e2e")
	base, token := dc.base, dc.token

	// 26 hours of the simulated city, every 10 minutes, up to now.
	const stations = 50
	interval := 10 * time.Minute
	startT := time.Now().Add(-26 * time.Hour).Truncate(interval)
	params := sim.Params{Stations: stations, Seed: 1, Interval: interval, Start: startT}
	ticks := int(time.Since(startT) / interval)
	write := func(from, to int) {
		t.Helper()
		var lp []byte
		for k := from; k < to; k++ {
			if lp, err = protocols.AppendLines(lp, sim.Generate(params, k), protocols.Nanosecond); err != nil {
				t.Fatal(err)
			}
		}
		body := gzipFile(t, "batch.lp.gz", string(lp))
		writeURL := base + "/api/v2/write?org=city&bucket=sensors&precision=ns"
		var status int
		var answer string
		waitFor(t, "a write to be accepted", 15*time.Second, func() (bool, error) {
			status, answer = curl(t, writeURL, body, "Authorization: Token "+token, "Content-Encoding: gzip")
			return status != 401, fmt.Errorf("status %d: %s", status, answer)
		})
		if status != 204 {
			t.Fatalf("write ticks %d-%d: %d %s", from, to, status, answer)
		}
	}
	for k := 0; k < ticks; k += 24 {
		write(k, min(k+24, ticks))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	type station struct {
		Geometry *struct {
			Coordinates [2]float64 `json:"coordinates"`
		} `json:"geometry"`
		Properties struct {
			ID  string `json:"id"`
			AQI *int   `json:"aqi"`
		} `json:"properties"`
	}
	var fc struct {
		Features []station `json:"features"`
	}
	lastTick := startT.Add(time.Duration(ticks-1) * interval).Unix()
	waitFor(t, "every station's newest reading and AQI in /api/v1/stations", 60*time.Second, func() (bool, error) {
		var s1 seriesAnswer
		q := url.Values{"station": {"s0050"}, "measurement": {"air"}, "field": {"pm25"}, "from": {strconv.FormatInt(lastTick, 10)}}
		if err := getJSON(ctx, base+"/api/v1/series?"+q.Encode(), &s1); err != nil || len(s1.Series) == 0 {
			return false, fmt.Errorf("newest tick not stored yet: %v", err)
		}
		time.Sleep(11 * time.Second) // the station list is a snapshot of up to 10 s
		if err := getJSON(ctx, base+"/api/v1/stations", &fc); err != nil {
			return false, err
		}
		withAQI := 0
		for _, f := range fc.Features {
			if f.Properties.AQI != nil {
				withAQI++
			}
		}
		return len(fc.Features) == stations && withAQI == stations, fmt.Errorf("%d features, %d with AQI", len(fc.Features), withAQI)
	})
	located := 0
	for _, f := range fc.Features {
		if f.Geometry != nil {
			located++
		}
	}

	// The browser.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1280, 1000),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("lang", "en-GB"))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel()
	shot := func(name string) {
		t.Helper()
		var png []byte
		if err := chromedp.Run(bctx, chromedp.FullScreenshot(&png, 100)); err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(out, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	axe := func(page string) {
		t.Helper()
		var res struct {
			Violations []struct {
				ID     string `json:"id"`
				Impact string `json:"impact"`
				Help   string `json:"help"`
				Nodes  []struct {
					Target []any `json:"target"`
				} `json:"nodes"`
			} `json:"violations"`
		}
		var injected bool
		if err := chromedp.Run(bctx, chromedp.Evaluate(string(axeSrc)+";true", &injected)); err != nil {
			t.Fatalf("inject axe-core: %v", err)
		}
		run := `axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]}}).then(r => ({violations: r.violations}))`
		if err := chromedp.Run(bctx, chromedp.Evaluate(run, &res, func(p *cdpruntime.EvaluateParams) *cdpruntime.EvaluateParams { return p.WithAwaitPromise(true) })); err != nil {
			t.Fatalf("axe on %s: %v", page, err)
		}
		for _, v := range res.Violations {
			msg := fmt.Sprintf("axe on %s: %s (%s): %s, at %v", page, v.ID, v.Impact, v.Help, v.Nodes)
			if v.Impact == "serious" || v.Impact == "critical" {
				t.Error(msg)
			} else {
				t.Log(msg)
			}
		}
	}

	// The map: every located station is on it, one by one or in a
	// cluster whose label counts it.
	var shown int
	countJS := `(() => { let n = document.querySelectorAll("#map .cs-marker").length;
		document.querySelectorAll("#map .cs-cluster span").forEach(s => n += parseInt(s.textContent, 10)); return n; })()`
	if err := chromedp.Run(bctx,
		chromedp.Navigate(base+"/#/"),
		chromedp.WaitVisible("#map .leaflet-marker-icon", chromedp.ByQuery),
		chromedp.WaitVisible(`#map-summary`, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("map: %v", err)
	}
	waitFor(t, "every station on the map", 20*time.Second, func() (bool, error) {
		err := chromedp.Run(bctx, chromedp.Evaluate(countJS, &shown))
		return err == nil && shown == located, fmt.Errorf("%d shown of %d: %v", shown, located, err)
	})
	var layers int
	if err := chromedp.Run(bctx, chromedp.Evaluate(`citysense.cluster.getLayers().length`, &layers)); err != nil || layers != located {
		t.Errorf("cluster holds %d markers, want %d (%v)", layers, located, err)
	}
	var districtPaths int
	if err := chromedp.Run(bctx, chromedp.Evaluate(`document.querySelectorAll("#map path.leaflet-interactive").length`, &districtPaths)); err != nil || districtPaths == 0 {
		t.Errorf("no district outlines on the map (%v)", err)
	}
	shot("portal-map")
	axe("the map")

	// Live: a reading written now reaches the open page.
	liveAt := time.Now().Truncate(time.Second)
	lp := fmt.Sprintf("air,station=s0003 pm25=17.5,pm10=20 %d\n", liveAt.UnixNano())
	if status, answer := curl(t, base+"/api/v2/write?org=city&bucket=sensors&precision=ns", gzipFile(t, "live.lp.gz", lp),
		"Authorization: Token "+token, "Content-Encoding: gzip"); status != 204 {
		t.Fatalf("live write: %d %s", status, answer)
	}
	var statusText string
	waitFor(t, "the live update on the map", 20*time.Second, func() (bool, error) {
		err := chromedp.Run(bctx, chromedp.Text("#status", &statusText, chromedp.ByQuery))
		return err == nil && strings.Contains(statusText, "Live update"), fmt.Errorf("status %q: %v", statusText, err)
	})

	// Keyboard: a marker takes the focus, and Enter opens its station.
	var opened string
	if err := chromedp.Run(bctx,
		chromedp.Focus("#map .cs-marker", chromedp.ByQuery),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible("#view-station #charts[data-ready]", chromedp.ByQuery),
		chromedp.Evaluate(`location.hash`, &opened),
	); err != nil || !strings.HasPrefix(opened, "#/station/s") {
		t.Fatalf("keyboard: Enter on a marker opened %q (%v)", opened, err)
	}

	// The table alternative lists every station.
	var rows int
	if err := chromedp.Run(bctx,
		chromedp.Click(`a[href="#/table"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#station-table tbody tr[data-station="s0001"]`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll("#station-table tbody tr").length`, &rows),
	); err != nil || rows != stations {
		t.Fatalf("table: %d rows, want %d (%v)", rows, stations, err)
	}
	axe("the station table")

	// A station, opened from the table.
	if err := chromedp.Run(bctx,
		chromedp.Click(`#station-table tr[data-station="s0001"] a`, chromedp.ByQuery),
		chromedp.WaitVisible(`#charts[data-ready="24h"]`, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("station page: %v", err)
	}
	var badges []string
	if err := chromedp.Run(bctx, chromedp.Evaluate(`[...document.querySelectorAll("#station-badges .badge")].map(b => b.dataset.badge + ": " + b.textContent)`, &badges)); err != nil {
		t.Fatal(err)
	}
	if len(badges) != 3 || !strings.HasPrefix(badges[0], "aqi: AQI ") || !strings.HasPrefix(badges[1], "eaqi: European index ") || !strings.HasPrefix(badges[2], "quality: Quality") {
		t.Errorf("badges = %q", badges)
	}
	shot("portal-station-24h")
	axe("a station page")

	type chartData struct {
		Src  string      `json:"src"`
		Data [][]float64 `json:"data"`
		CSV  string      `json:"csv"`
	}
	chart := func(field string) chartData {
		t.Helper()
		var c chartData
		js := fmt.Sprintf(`({src: document.querySelector('[data-field="%[1]s"] .chart').dataset.src, data: citysense.charts["%[1]s"].data,
			csv: document.querySelector('a[data-csv="%[1]s"]').getAttribute("href")})`, field)
		if err := chromedp.Run(bctx, chromedp.Evaluate(js, &c)); err != nil {
			t.Fatalf("chart %s: %v", field, err)
		}
		return c
	}
	// Every range: the chart's points are exactly the API's.
	for _, rng := range []string{"7d", "30d", "1y", "24h"} {
		if err := chromedp.Run(bctx,
			chromedp.Click(`.ranges button[data-range="`+rng+`"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`#charts[data-ready="`+rng+`"]`, chromedp.ByQuery),
		); err != nil {
			t.Fatalf("range %s: %v", rng, err)
		}
		for _, field := range []string{"air.pm25", "air.temperature", "noise.laeq"} {
			c := chart(field)
			if !strings.Contains(c.Src, "step=") {
				t.Errorf("%s %s: chart not from a step query: %s", rng, field, c.Src)
			}
			var ans seriesAnswer
			if err := getJSON(ctx, base+c.Src, &ans); err != nil || len(ans.Series) != 1 {
				t.Fatalf("%s %s: API %s: %v %+v", rng, field, c.Src, err, ans)
			}
			pts := ans.Series[0].Points
			if len(c.Data) != 2 || len(c.Data[0]) != len(pts) || len(pts) == 0 {
				t.Fatalf("%s %s: chart has %d points, the API %d", rng, field, len(c.Data[0]), len(pts))
			}
			for k, p := range pts {
				if c.Data[0][k] != p[0] || c.Data[1][k] != p[1] {
					t.Fatalf("%s %s point %d: chart (%v, %v), API %v", rng, field, k, c.Data[0][k], c.Data[1][k], p)
				}
			}
		}
		if rng == "1y" {
			shot("portal-station-1y")
		}
	}

	// The CSV download holds the chart's rows.
	dl := t.TempDir()
	done := make(chan string, 1)
	chromedp.ListenTarget(bctx, func(ev any) {
		if e, ok := ev.(*browser.EventDownloadProgress); ok && e.State == browser.DownloadProgressStateCompleted {
			select {
			case done <- e.GUID:
			default:
			}
		}
	})
	if err := chromedp.Run(bctx, browser.SetDownloadBehavior(browser.SetDownloadBehaviorBehaviorAllowAndName).WithDownloadPath(dl).WithEventsEnabled(true)); err != nil {
		t.Fatal(err)
	}
	c := chart("air.pm25")
	if err := chromedp.Run(bctx, chromedp.Click(`a[data-csv="air.pm25"]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	var guid string
	select {
	case guid = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the CSV download did not complete")
	}
	f, err := os.Open(filepath.Join(dl, guid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 2 || strings.Join(recs[0], ",") != "time,measurement,field,district,station,value" {
		t.Fatalf("CSV header %v", recs[:min(len(recs), 1)])
	}
	if len(recs)-1 != len(c.Data[0]) {
		t.Fatalf("CSV has %d rows, the chart %d", len(recs)-1, len(c.Data[0]))
	}
	for k, r := range recs[1:] {
		ts, err := time.Parse(time.RFC3339Nano, r[0])
		v, verr := strconv.ParseFloat(r[5], 64)
		if err != nil || verr != nil || float64(ts.Unix()) != c.Data[0][k] || math.Abs(v-c.Data[1][k]) > 0 || r[4] != "s0001" || r[2] != "pm25" {
			t.Fatalf("CSV row %d %v: chart (%v, %v)", k, r, c.Data[0][k], c.Data[1][k])
		}
	}
	t.Logf("CSV %s: %d rows equal to the chart and the API", c.CSV, len(recs)-1)

	// Custom range: two days, from the date inputs.
	from, to := time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02"), time.Now().UTC().Format("2006-01-02")
	if err := chromedp.Run(bctx,
		chromedp.SetValue("#range-from", from, chromedp.ByQuery),
		chromedp.SetValue("#range-to", to, chromedp.ByQuery),
		chromedp.Click(`.ranges button[data-range="custom"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#charts[data-ready="custom"]`, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("custom range: %v", err)
	}
	cc := chart("air.pm25")
	var ans seriesAnswer
	if err := getJSON(ctx, base+cc.Src, &ans); err != nil || len(ans.Series) != 1 || len(ans.Series[0].Points) != len(cc.Data[0]) {
		t.Fatalf("custom range %s: %v, chart %d points", cc.Src, err, len(cc.Data[0]))
	}

	// Mobile: one column, nothing wider than the screen.
	var overflow bool
	if err := chromedp.Run(bctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Sleep(300*time.Millisecond),
		chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth`, &overflow),
	); err != nil || overflow {
		t.Errorf("station page wider than a 390 px screen (%v)", err)
	}
	shot("portal-station-mobile")
	if err := chromedp.Run(bctx, chromedp.EmulateViewport(1280, 1000)); err != nil {
		t.Fatal(err)
	}

	// A district page, the about page and the German catalogue.
	var title, stationsN string
	if err := chromedp.Run(bctx,
		chromedp.Navigate(base+"/#/district/d01"),
		chromedp.WaitVisible(`#district-table tbody tr`, chromedp.ByQuery),
		chromedp.Text("#district-title", &title, chromedp.ByQuery),
		chromedp.Text("#district-meta dd", &stationsN, chromedp.ByQuery),
	); err != nil || title != "d01" {
		t.Fatalf("district page: %q %v", title, err)
	}
	want := 0
	var dists struct {
		Features []struct {
			ID         string `json:"id"`
			Properties struct {
				Stations int `json:"stations"`
			} `json:"properties"`
		} `json:"features"`
	}
	if err := getJSON(ctx, base+"/api/v1/districts", &dists); err != nil {
		t.Fatal(err)
	}
	for _, d := range dists.Features {
		if d.ID == "d01" {
			want = d.Properties.Stations
		}
	}
	if stationsN != strconv.Itoa(want) || want == 0 {
		t.Errorf("district d01 shows %q stations, the API %d", stationsN, want)
	}
	shot("portal-district")
	var licence, heading string
	if err := chromedp.Run(bctx,
		chromedp.Navigate(base+"/#/about"),
		chromedp.WaitVisible("#licence-link", chromedp.ByQuery),
		chromedp.Text("#licence-link", &licence, chromedp.ByQuery),
		chromedp.SetValue("#lang", "de", chromedp.ByQuery),
		chromedp.Evaluate(`document.getElementById("lang").dispatchEvent(new Event("change"))`, nil),
	); err != nil || licence != "CC BY 4.0" {
		t.Fatalf("about: %q %v", licence, err)
	}
	waitFor(t, "the German catalogue", 10*time.Second, func() (bool, error) {
		err := chromedp.Run(bctx, chromedp.Text("#view-about h1", &heading, chromedp.ByQuery))
		return heading == "Über die Daten", fmt.Errorf("heading %q: %v", heading, err)
	})
	axe("the about page (German)")
	shot("portal-about-de")
	t.Logf("screenshots in %s", out)
}
