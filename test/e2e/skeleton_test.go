package e2e

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols/sim"
)

type seriesAnswer struct {
	Series []struct {
		Measurement string            `json:"measurement"`
		Field       string            `json:"field"`
		Tags        map[string]string `json:"tags"`
		Points      [][2]float64      `json:"points"`
	} `json:"series"`
	Partial bool `json:"partial"`
}

type agentStatus struct {
	PointsRead     int64 `json:"points_read"`
	PointsSent     int64 `json:"points_sent"`
	BatchesSent    int64 `json:"batches_sent"`
	PendingBatches int64 `json:"buffer_pending_batches"`
	InputsDone     bool  `json:"inputs_done"`
}

// TestSkeleton_SimToAPI runs the whole path once: a finite simulation in the
// agent, the bbolt buffer, a JetStream publish, the collector's ingest and
// store, and the public API. Every point the agent reports having sent must
// come back from the API with the same time and the same value, and both
// processes must exit cleanly on SIGTERM.
func TestSkeleton_SimToAPI(t *testing.T) {
	const (
		stations = 7
		ticks    = 60
		seed     = 42
	)
	// Yesterday: inside the default raw retention (90 days).
	startT := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
	params := sim.Params{Stations: stations, Seed: seed, Interval: 10 * time.Second, Start: startT}

	httpC, natsC, httpA := freeAddr(t), freeAddr(t), freeAddr(t)
	collector := start(t, "citysense-collector", "run",
		"--data-dir", t.TempDir(), "--http", httpC, "--nats", natsC, "--log-format", "json")
	waitFor(t, "collector /readyz", 30*time.Second, func() (bool, error) { return httpOK("http://" + httpC + "/readyz") })

	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-gw-1
inputs:
  - type: sim
    stations: %d
    seed: %d
    interval: 10s
    start: %s
    ticks: %d
    realtime: false
`, stations, seed, startT.Format(time.RFC3339), ticks))
	agent := start(t, "citysense-agent", "run", "-c", cfg,
		"--data-dir", t.TempDir(), "--http", httpA, "--collector", "nats://"+natsC, "--log-format", "json")

	// The expected data, computed by the same pure generator the agent runs.
	type key struct{ station, field string }
	want := map[key][][2]float64{}
	wantPoints := 0
	for tick := 0; tick < ticks; tick++ {
		for _, p := range sim.Generate(params, tick) {
			wantPoints++
			st, _ := p.Tag("station")
			for _, f := range p.Fields {
				v, ok := f.Value.AsFloat()
				if !ok {
					t.Fatalf("sim produced a non-numeric field %v", f)
				}
				k := key{st, f.Key}
				want[k] = append(want[k], [2]float64{float64(p.Time / 1e9), v})
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var st agentStatus
	waitFor(t, "agent to send everything", 60*time.Second, func() (bool, error) {
		if err := getJSON(ctx, "http://"+httpA+"/status", &st); err != nil {
			return false, err
		}
		return st.InputsDone && st.PendingBatches == 0, fmt.Errorf("status %+v", st)
	})
	if st.PointsRead != int64(wantPoints) || st.PointsSent != int64(wantPoints) {
		t.Fatalf("agent read %d and sent %d points, simulation has %d", st.PointsRead, st.PointsSent, wantPoints)
	}
	if st.BatchesSent == 0 {
		t.Fatalf("agent reports no batches sent: %+v", st)
	}

	from, to := startT.Unix(), startT.Add(ticks*10*time.Second).Unix()
	query := func(k key) (seriesAnswer, error) {
		q := url.Values{"station": {k.station}, "field": {k.field}, "from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)}}
		var ans seriesAnswer
		err := getJSON(ctx, "http://"+httpC+"/api/v1/series?"+q.Encode(), &ans)
		return ans, err
	}
	// Ingest runs behind the JetStream ack, so wait until the last series is complete.
	last := key{fmt.Sprintf("s%04d", stations), "laeq"}
	waitFor(t, "collector to store the last series", 30*time.Second, func() (bool, error) {
		ans, err := query(last)
		if err != nil {
			return false, err
		}
		n := 0
		if len(ans.Series) == 1 {
			n = len(ans.Series[0].Points)
		}
		return n == len(want[last]), fmt.Errorf("%d of %d points", n, len(want[last]))
	})

	gotValues := 0
	for k, wantPts := range want {
		ans, err := query(k)
		if err != nil {
			t.Fatal(err)
		}
		if len(ans.Series) != 1 {
			t.Fatalf("%v: %d series, want 1", k, len(ans.Series))
		}
		s := ans.Series[0]
		if s.Tags["station"] != k.station || s.Field != k.field || ans.Partial {
			t.Fatalf("%v: answer labelled %v/%q partial=%v", k, s.Tags, s.Field, ans.Partial)
		}
		if len(s.Points) != len(wantPts) {
			t.Fatalf("%v: %d points, want %d", k, len(s.Points), len(wantPts))
		}
		for i := range wantPts {
			if s.Points[i] != wantPts[i] {
				t.Fatalf("%v point %d = %v, want %v", k, i, s.Points[i], wantPts[i])
			}
		}
		gotValues += len(s.Points)
	}
	wantValues := 0
	for _, v := range want {
		wantValues += len(v)
	}
	if gotValues != wantValues {
		t.Fatalf("API returned %d values, want %d", gotValues, wantValues)
	}
	t.Logf("agent sent %d points in %d batches; API returned all %d field values exactly", st.PointsSent, st.BatchesSent, gotValues)

	// Stations: a GeoJSON FeatureCollection with every station and its position.
	var fc struct {
		Type     string `json:"type"`
		Features []struct {
			Geometry *struct {
				Type        string     `json:"type"`
				Coordinates [2]float64 `json:"coordinates"`
			} `json:"geometry"`
			Properties map[string]any `json:"properties"`
		} `json:"features"`
	}
	if err := getJSON(ctx, "http://"+httpC+"/api/v1/stations", &fc); err != nil {
		t.Fatal(err)
	}
	if fc.Type != "FeatureCollection" || len(fc.Features) != stations {
		t.Fatalf("stations: type %q with %d features, want %d", fc.Type, len(fc.Features), stations)
	}
	positions := map[string][2]float64{}
	for _, p := range sim.Generate(params, 0) {
		if p.Measurement == "station" {
			id, _ := p.Tag("station")
			lat, _ := p.Field("lat")
			lon, _ := p.Field("lon")
			positions[id] = [2]float64{lon.FloatV(), lat.FloatV()}
		}
	}
	for _, f := range fc.Features {
		id, _ := f.Properties["id"].(string)
		wantPos, ok := positions[id]
		if !ok {
			t.Fatalf("unexpected station %q", id)
		}
		if f.Geometry == nil || f.Geometry.Type != "Point" || math.Abs(f.Geometry.Coordinates[0]-wantPos[0]) > 1e-9 || math.Abs(f.Geometry.Coordinates[1]-wantPos[1]) > 1e-9 {
			t.Fatalf("station %s geometry %+v, want %v", id, f.Geometry, wantPos)
		}
	}

	// The portal is served; what it shows is TestPortal's, in a browser.
	resp, err := client.Get("http://" + httpC + "/")
	if err != nil {
		t.Fatal(err)
	}
	if page := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(page, "/assets/app.js") {
		t.Fatalf("portal page: %d, %.200q", resp.StatusCode, page)
	}

	agent.stop(t, 20*time.Second)
	collector.stop(t, 20*time.Second)
}
