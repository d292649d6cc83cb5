package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

// staGet fetches a SensorThings URL with optional headers (name, value
// pairs) and returns the status and decoded body.
func staGet(t *testing.T, url string, headers ...string) (int, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET %s: %d, not JSON: %.300s", url, resp.StatusCode, body)
	}
	return resp.StatusCode, v
}

// TestSTA_DemoCollector runs a collector with the demo enrichment chain,
// writes readings over the Influx v2 write API with curl, and reads them
// back through SensorThings: entities from the demo registry, the
// coarsened Location of a private station, Observations with exact values
// through $filter, $orderby, $count, $expand with nested ';' options,
// dataArray, links behind a proxy, and 400s for bad options.
func TestSTA_DemoCollector(t *testing.T) {
	dc := startDemoCollector(t, "e2e-sta", "sta-writer")
	httpC, token := dc.http, dc.token

	// Five pm25 readings of s0001 a minute apart (12.5, 13.5, … 16.5),
	// two of the private station s0017, one noise reading.
	t0 := time.Now().Add(-20 * time.Minute).Truncate(time.Minute).Unix()
	var lp strings.Builder
	for k := int64(0); k < 5; k++ {
		fmt.Fprintf(&lp, "air,station=s0001 pm25=%g %d\n", 12.5+float64(k), t0+60*k)
	}
	fmt.Fprintf(&lp, "air,station=s0017 pm25=3.25 %d\nair,station=s0017 pm25=4.75 %d\n", t0, t0+60)
	fmt.Fprintf(&lp, "noise,station=s0001 laeq=61.5 %d\n", t0)
	body := writeFile(t, "batch.lp", lp.String())
	writeURL := "http://" + httpC + "/api/v2/write?org=city&bucket=sensors&precision=s"
	var status int
	var answer string
	waitFor(t, "the collector to accept the new token", 10*time.Second, func() (bool, error) {
		status, answer = curl(t, writeURL, body, "Authorization: Token "+token)
		return status != 401, fmt.Errorf("status %d: %s", status, answer)
	})
	if status != 204 {
		t.Fatalf("write: %d %s", status, answer)
	}

	sta := "http://" + httpC + "/sta/v1.1"
	enc := func(s string) string { return strings.NewReplacer(" ", "%20", "'", "%27").Replace(s) }
	// The points pass the bus and the enrich stage asynchronously; the
	// aqi stage derives Observations of its own (measurement aqi).
	waitFor(t, "8 written Observations through SensorThings", 20*time.Second, func() (bool, error) {
		code, v := staGet(t, sta+enc("/Observations?$count=true&$top=0&$filter=Datastream/properties/measurement ne 'aqi'"))
		return code == 200 && v["@iot.count"] == 8.0, fmt.Errorf("%d %v", code, v)
	})
	code, v := staGet(t, sta+enc("/Datastreams?$count=true&$top=0&$filter=Thing/@iot.id eq 's0001' and properties/measurement eq 'aqi'"))
	if n, _ := v["@iot.count"].(float64); code != 200 || n == 0 {
		t.Fatalf("no aqi Datastreams derived for s0001: %d %v", code, v)
	}

	var landing map[string]any
	// The landing page lists the entity sets and the implemented classes.
	code, landing = staGet(t, sta+"/")
	conf := landing["serverSettings"].(map[string]any)["conformance"].([]any)
	if code != 200 || len(landing["value"].([]any)) != 8 || len(conf) != 4 {
		t.Fatalf("landing page: %d %v", code, landing)
	}

	// A Thing from the demo registry, with its Datastreams.
	code, thing := staGet(t, sta+enc("/Things('s0001')?$expand=Datastreams($select=name;$orderby=name;$filter=properties/measurement ne 'aqi')"))
	dss, _ := thing["Datastreams"].([]any)
	if code != 200 || thing["name"] != "Karlsplatz" || len(dss) != 2 ||
		dss[0].(map[string]any)["name"] != "Karlsplatz laeq" || dss[1].(map[string]any)["name"] != "Karlsplatz pm25" {
		t.Fatalf("Things('s0001'): %d %v", code, thing)
	}

	// A private station's Location is on the privacy grid, not exact.
	code, loc := staGet(t, sta+enc("/Locations('s0017')"))
	coords, _ := loc["location"].(map[string]any)["coordinates"].([]any)
	if code != 200 || len(coords) != 2 {
		t.Fatalf("Locations('s0017'): %d %v", code, loc)
	}
	lon, lat := coords[0].(float64), coords[1].(float64)
	onGrid := func(x float64) bool { return math.Abs(x*100-math.Round(x*100)) < 1e-6 }
	if lat == 48.14611 || lon == 16.44827 || !onGrid(lat) || !onGrid(lon) || math.Abs(lat-48.14611) > 0.01 || math.Abs(lon-16.44827) > 0.01 {
		t.Fatalf("s0017 shown at %v, %v: want the 0.01° grid near the registry position", lon, lat)
	}

	// Observations of one Datastream, newest first, with exact values.
	code, v = staGet(t, sta+enc("/Datastreams('s0001:air:pm25')/Observations?$orderby=phenomenonTime desc&$top=2&$count=true&$select=result,phenomenonTime"))
	list, _ := v["value"].([]any)
	if code != 200 || v["@iot.count"] != 5.0 || len(list) != 2 {
		t.Fatalf("newest pm25: %d %v", code, v)
	}
	for k, want := range []float64{16.5, 15.5} {
		o := list[k].(map[string]any)
		wantTime := time.Unix(t0+60*int64(4-k), 0).UTC().Format(time.RFC3339)
		if o["result"] != want || o["phenomenonTime"] != wantTime {
			t.Errorf("Observation %d = %v, want %v at %s", k, o, want, wantTime)
		}
	}
	next, _ := v["@iot.nextLink"].(string)
	if !strings.HasPrefix(next, sta+"/Datastreams('s0001:air:pm25')/Observations?") {
		t.Fatalf("nextLink %q", next)
	}
	code, v = staGet(t, next)
	if list, _ := v["value"].([]any); code != 200 || len(list) != 2 || list[0].(map[string]any)["result"] != 14.5 {
		t.Fatalf("second page %s: %d %v", next, code, v)
	}

	// A filter across Datastreams with a path and a time literal.
	from := time.Unix(t0+60, 0).UTC().Format(time.RFC3339)
	code, v = staGet(t, sta+enc("/Observations?$filter=Datastream/ObservedProperty/name eq 'pm25' and phenomenonTime ge "+from+"&$count=true&$expand=Datastream($select=name)&$select=result"))
	if code != 200 || v["@iot.count"] != 5.0 {
		t.Fatalf("filtered Observations: %d %v", code, v)
	}
	var results []string
	for _, o := range v["value"].([]any) {
		m := o.(map[string]any)
		results = append(results, fmt.Sprint(m["Datastream"].(map[string]any)["name"], "=", m["result"]))
	}
	if got := strings.Join(results, " "); got != "Karlsplatz pm25=13.5 Karlsplatz pm25=14.5 Karlsplatz pm25=15.5 Karlsplatz pm25=16.5 Hernalser Hauptstraße pm25=4.75" {
		t.Fatalf("filtered Observations: %s", got)
	}

	// dataArray.
	code, v = staGet(t, sta+enc("/Datastreams('s0017:air:pm25')/Observations?$resultFormat=dataArray&$select=result"))
	if b, _ := json.Marshal(v["value"]); code != 200 || !strings.HasSuffix(string(b), `"components":["result"],"dataArray":[[3.25],[4.75]],"dataArray@iot.count":2}]`) {
		t.Fatalf("dataArray: %d %s", code, b)
	}

	// Behind a reverse proxy.
	code, v = staGet(t, sta+"/Things?$top=1", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "data.example.city", "X-Forwarded-Prefix", "/open-data")
	self := v["value"].([]any)[0].(map[string]any)["@iot.selfLink"]
	if code != 200 || !strings.HasPrefix(self.(string), "https://data.example.city/open-data/sta/v1.1/Things(") ||
		!strings.HasPrefix(v["@iot.nextLink"].(string), "https://data.example.city/open-data/sta/v1.1/Things?") {
		t.Fatalf("links behind a proxy: %d %v", code, v)
	}

	// Bad options are 400 with a JSON error.
	for _, u := range []string{"/Things?$top=10001", "/Things?$expand=Datastreams/Thing/Datastreams/Thing",
		enc("/Observations?$filter=phenomenonTime gt 2026-13-45T00:00:00Z"), enc("/Things?$filter=name eq 'x' or 1=1 --")} {
		code, v := staGet(t, sta+u)
		if msg, _ := v["error"].(string); code != 400 || msg == "" {
			t.Errorf("GET %s = %d %v, want 400 with an error", u, code, v)
		}
	}
}
