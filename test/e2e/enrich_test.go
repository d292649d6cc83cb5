package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// valueAnswer is /api/v1/series with values of any JSON type (the AQI
// categories are strings).
type valueAnswer struct {
	Series []struct {
		Measurement string            `json:"measurement"`
		Field       string            `json:"field"`
		Tags        map[string]string `json:"tags"`
		Points      [][2]any          `json:"points"`
	} `json:"series"`
}

// TestEnrich_InfluxWriteLandsEnriched writes line protocol the way Telegraf
// does (v2 API, gzip, token) into a collector running the demo enrichment
// chain, and asserts exactly what the enrichment added: the registry's
// district, the US EPA and European AQI derived from the written
// concentrations, quality and schema flags, the unknown-station flag, and a
// coarsened position for a private station.
func TestEnrich_InfluxWriteLandsEnriched(t *testing.T) {
	demo := demoDir()

	// What the registry says about the stations used below.
	var reg struct {
		Stations []struct {
			ID       string  `yaml:"id"`
			District string  `yaml:"district"`
			Lat      float64 `yaml:"lat"`
			Lon      float64 `yaml:"lon"`
			Public   *bool   `yaml:"public"`
		} `yaml:"stations"`
	}
	sb, err := os.ReadFile(filepath.Join(demo, "stations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(sb, &reg); err != nil {
		t.Fatal(err)
	}
	district := map[string]string{}
	for _, s := range reg.Stations {
		district[s.ID] = s.District
	}
	if district["s0001"] == "" || district["s0002"] == "" {
		t.Fatalf("demo registry lacks s0001/s0002 districts: %v", district)
	}

	dc := startDemoCollector(t, "e2e", "telegraf")
	collector, httpC, token := dc.p, dc.http, dc.token

	t0 := time.Now().Add(-30 * time.Minute).Truncate(time.Minute).Unix()
	var lp strings.Builder
	for k := int64(0); k < 3; k++ {
		// Constant concentrations: every averaging period's mean is the
		// written value. PM2.5 35.5 µg/m³ is the first value of the EPA's
		// "Unhealthy for Sensitive Groups" band (AQI 101) and within the
		// EEA's "Poor" band (25–50); PM10 15 and NO2 30 µg/m³ stay lower.
		fmt.Fprintf(&lp, "air,station=s0001 pm25=35.5,pm10=15,no2=30,temperature=21.5,humidity=50 %d\n", t0+60*k)
	}
	// Out of the schema's and the quality check's range: flagged, kept.
	fmt.Fprintf(&lp, "air,station=s0002 pm25=2000,pm10=40 %d\n", t0)
	// A station the registry does not know: flagged, kept.
	fmt.Fprintf(&lp, "air,station=zz99 pm25=5 %d\n", t0)
	body := gzipFile(t, "batch.lp.gz", lp.String())
	writeURL := "http://" + httpC + "/api/v2/write?org=city&bucket=sensors&precision=s"
	var status int
	var answer string
	waitFor(t, "the collector to accept the new token", 10*time.Second, func() (bool, error) {
		status, answer = curl(t, writeURL, body, "Authorization: Token "+token, "Content-Encoding: gzip")
		return status != 401, fmt.Errorf("status %d: %s", status, answer)
	})
	if status != 204 {
		t.Fatalf("write: %d %s", status, answer)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	query := func(station, field string) valueAnswer {
		t.Helper()
		q := url.Values{"station": {station}, "field": {field}, "from": {fmt.Sprint(t0 - 60)}, "to": {fmt.Sprint(t0 + 600)}}
		var ans valueAnswer
		waitFor(t, station+" "+field, 15*time.Second, func() (bool, error) {
			err := getJSON(ctx, "http://"+httpC+"/api/v1/series?"+q.Encode(), &ans)
			return err == nil && len(ans.Series) > 0, err
		})
		return ans
	}

	// The registry's district is on the stored series.
	pm := query("s0001", "pm25")
	if len(pm.Series) != 1 || pm.Series[0].Tags["district"] != district["s0001"] || len(pm.Series[0].Points) != 3 {
		t.Fatalf("s0001 pm25 = %+v, want 3 points tagged district=%s", pm.Series, district["s0001"])
	}

	// Derived AQI points, on the station's tags, with the standards' own names.
	wantAQI := map[string]any{
		"us_epa": 101.0, "us_epa_category": "Unhealthy for Sensitive Groups", "us_epa_pollutant": "PM2.5",
		"eu_eaqi": 4.0, "eu_eaqi_category": "Poor",
	}
	for field, want := range wantAQI {
		ans := query("s0001", field)
		s := ans.Series[0]
		if s.Measurement != "aqi" || s.Tags["district"] != district["s0001"] || len(s.Points) == 0 {
			t.Fatalf("aqi %s = %+v", field, s)
		}
		for _, p := range s.Points {
			if p[1] != want {
				t.Errorf("aqi %s at %v = %v, want %v", field, p[0], p[1], want)
			}
		}
	}

	// Flags: range (1) from quality and schema range (32) on pm25; the
	// value itself is kept unchanged.
	if v := query("s0002", "pm25").Series[0].Points; len(v) != 1 || v[0][1] != 2000.0 {
		t.Errorf("s0002 pm25 = %v, want the out-of-range 2000 kept", v)
	}
	if v := query("s0002", "pm25_qc").Series[0].Points; len(v) != 1 || v[0][1] != 33.0 {
		t.Errorf("s0002 pm25_qc = %v, want 33 (quality range 1 | schema range 32)", v)
	}
	if v := query("zz99", "qc").Series[0].Points; len(v) != 1 || v[0][1] != 1.0 {
		t.Errorf("zz99 qc = %v, want 1 (unknown station)", v)
	}
	// Clean data carries no flag field at all.
	var clean valueAnswer
	q := url.Values{"station": {"s0001"}, "field": {"pm25_qc"}, "from": {fmt.Sprint(t0 - 60)}, "to": {fmt.Sprint(t0 + 600)}}
	if err := getJSON(ctx, "http://"+httpC+"/api/v1/series?"+q.Encode(), &clean); err != nil || len(clean.Series) != 0 {
		t.Errorf("s0001 has flags it should not: %+v %v", clean.Series, err)
	}

	// The schema is published, and private stations are shown coarsened.
	var schema struct {
		Measurements []struct {
			Measurement string `json:"measurement"`
			Fields      []struct {
				Name string `json:"name"`
				Unit string `json:"unit"`
			} `json:"fields"`
		} `json:"measurements"`
	}
	if err := getJSON(ctx, "http://"+httpC+"/api/v1/schema", &schema); err != nil {
		t.Fatal(err)
	}
	units := map[string]string{}
	for _, m := range schema.Measurements {
		for _, f := range m.Fields {
			units[m.Measurement+"."+f.Name] = f.Unit
		}
	}
	if units["air.pm25"] != "µg/m³" || units["noise.laeq"] != "dB(A)" {
		t.Errorf("schema units = %v", units)
	}
	var fc struct {
		Features []struct {
			Geometry *struct {
				Coordinates [2]float64 `json:"coordinates"`
			} `json:"geometry"`
			Properties struct {
				ID        string `json:"id"`
				Coarsened bool   `json:"coarsened"`
			} `json:"properties"`
		} `json:"features"`
	}
	if err := getJSON(ctx, "http://"+httpC+"/api/v1/stations", &fc); err != nil {
		t.Fatal(err)
	}
	private := 0
	for _, s := range reg.Stations {
		if s.Public == nil || *s.Public {
			continue
		}
		private++
		for _, f := range fc.Features {
			if f.Properties.ID != s.ID {
				continue
			}
			if !f.Properties.Coarsened || f.Geometry == nil || f.Geometry.Coordinates == [2]float64{s.Lon, s.Lat} {
				t.Errorf("private station %s shown as %+v", s.ID, f)
			}
			for _, c := range f.Geometry.Coordinates {
				if r := c * 100; r != float64(int64(r+0.5*sign(r))) {
					t.Errorf("private station %s coordinate %v is not on the 0.01° grid", s.ID, c)
				}
			}
		}
	}
	if private == 0 {
		t.Fatal("the demo registry has no private station to check")
	}
	collector.stop(t, 20*time.Second)
}

func sign(x float64) float64 {
	if x < 0 {
		return -1
	}
	return 1
}
