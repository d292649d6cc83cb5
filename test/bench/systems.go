package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/citysense/citysense/protocols/sim"
)

// system is one server under test.
type system interface {
	name() string
	// start starts the server on a data directory under dir (reusing it
	// when it exists) and returns once it answers.
	start(ctx context.Context, dir string) (*proc, error)
	// write sends one batch of line protocol and returns once the server
	// acknowledged it.
	write(ctx context.Context, body []byte) error
	// stored reports whether every point of ds is queryable.
	stored(ctx context.Context, ds *dataset) (bool, error)
	// queries are Q1, Q2 and Q3.
	queries(ds *dataset) [3]query
	// storeBytes is the disk taken by the part of dir that is the time-
	// series store proper; 0 when that is the whole data directory.
	storeBytes(dir string) int64
}

func lastStation(ds *dataset) string { return sim.StationID(ds.params.Stations) }

func districts(ds *dataset) int {
	seen := map[string]bool{}
	for i := 1; i <= ds.params.Stations; i++ {
		seen[sim.District(sim.Position(ds.params.Seed, i))] = true
	}
	return len(seen)
}

// post sends body and wants one of the ok statuses.
func post(ctx context.Context, u string, header http.Header, body []byte, ok ...int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, s := range ok {
		if resp.StatusCode == s {
			return nil
		}
	}
	return fmt.Errorf("POST %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b[:min(len(b), 300)])))
}

func getJSON(ctx context.Context, u string, v any) error {
	q := query{url: u, check: func(body []byte) error { return json.Unmarshal(body, v) }}
	return q.do(ctx)
}

func waitHTTP(ctx context.Context, p *proc, u string, want int) error {
	return waitFor(ctx, 2*time.Minute, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("%s exited: %v (log %s)", p.name, p.err, p.log)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == want, fmt.Errorf("%s", resp.Status)
	})
}

// ---- CitySense ----

type citysense struct {
	bin   string
	token string
	http  string
}

func (*citysense) name() string { return "CitySense" }

func (c *citysense) start(ctx context.Context, dir string) (*proc, error) {
	data := filepath.Join(dir, "data")
	if c.token == "" {
		// A name of its own: a -query-only run starts on a kept store
		// that already has the first run's token.
		name := fmt.Sprintf("bench-%d", time.Now().UnixNano())
		out, err := exec.CommandContext(ctx, c.bin, "token", "add", name, "--data-dir", data).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%w: %s", err, lastLines(ee.Stderr, 3))
			}
			return nil, fmt.Errorf("issue a write token: %w", err)
		}
		c.token = strings.TrimSpace(string(out))
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	natsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	c.http = httpAddr
	p, err := startProc("citysense-collector", c.bin, []string{"run", "--data-dir", data, "--http", httpAddr, "--nats", natsAddr,
		"--log-format", "json", "--log-level", "warn"}, filepath.Join(dir, "collector.log"))
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, p, "http://"+httpAddr+"/readyz", http.StatusOK); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

func (c *citysense) write(ctx context.Context, body []byte) error {
	return post(ctx, "http://"+c.http+"/api/v2/write?org=bench&bucket=bench&precision=ns",
		http.Header{"Authorization": {"Token " + c.token}}, body, http.StatusNoContent)
}

type csAnswer struct {
	Series []struct {
		Tags   map[string]string `json:"tags"`
		Points [][2]float64      `json:"points"`
	} `json:"series"`
}

func (c *citysense) series(ds *dataset, params url.Values) string {
	params.Set("from", strconv.FormatInt(ds.from.Unix(), 10))
	params.Set("to", strconv.FormatInt(ds.to.Unix(), 10))
	return "http://" + c.http + "/api/v1/series?" + params.Encode()
}

func (c *citysense) stored(ctx context.Context, ds *dataset) (bool, error) {
	for _, probe := range []url.Values{
		{"measurement": {"air"}, "field": {"pm25"}, "station": {"s0001"}},
		{"measurement": {"noise"}, "field": {"laeq"}, "station": {lastStation(ds)}},
	} {
		var a csAnswer
		if err := getJSON(ctx, c.series(ds, probe), &a); err != nil {
			return false, err
		}
		if len(a.Series) != 1 || len(a.Series[0].Points) != ds.ticks {
			n := 0
			if len(a.Series) > 0 {
				n = len(a.Series[0].Points)
			}
			return false, fmt.Errorf("%v: %d of %d points", probe, n, ds.ticks)
		}
	}
	return true, nil
}

func (c *citysense) queries(ds *dataset) [3]query {
	check := func(series, minPoints int) func([]byte) error {
		return func(b []byte) error {
			var a csAnswer
			if err := json.Unmarshal(b, &a); err != nil {
				return err
			}
			return checkShape(len(a.Series), series, func(i int) int { return len(a.Series[i].Points) }, minPoints)
		}
	}
	days := int(ds.to.Sub(ds.from) / (24 * time.Hour))
	return [3]query{
		{url: c.series(ds, url.Values{"measurement": {"air"}, "field": {"pm25"}, "station": {"s0001"}, "step": {"1h"}, "agg": {"mean"}}),
			check: check(1, days*24)},
		{url: "http://" + c.http + "/api/v1/latest?" + url.Values{"measurement": {"air"}, "field": {"pm25"}, "window": {"1h"},
			"at": {strconv.FormatInt(ds.to.Unix(), 10)}}.Encode(),
			check: func(b []byte) error {
				var a struct {
					Latest []struct {
						Value *float64 `json:"value"`
					} `json:"latest"`
				}
				if err := json.Unmarshal(b, &a); err != nil {
					return err
				}
				if len(a.Latest) != ds.params.Stations {
					return fmt.Errorf("%d latest values, want %d", len(a.Latest), ds.params.Stations)
				}
				return nil
			}},
		{url: c.series(ds, url.Values{"measurement": {"air"}, "field": {"pm25"}, "step": {"24h"}, "agg": {"max"}, "group_by": {"district"}}),
			check: check(districts(ds), days)},
	}
}

func (*citysense) storeBytes(dir string) int64 {
	for _, sub := range []string{"store", "store.db"} {
		if _, err := os.Stat(filepath.Join(dir, "data", sub)); err == nil {
			n, _ := diskUsage(filepath.Join(dir, "data", sub))
			return n
		}
	}
	return 0
}

func checkShape(got, want int, points func(int) int, minPoints int) error {
	if got != want {
		return fmt.Errorf("%d series, want %d", got, want)
	}
	for i := range got {
		if n := points(i); n < minPoints {
			return fmt.Errorf("series %d has %d points, want at least %d", i, n, minPoints)
		}
	}
	return nil
}

// ---- VictoriaMetrics ----

type victoria struct {
	bin  string
	http string
}

func (*victoria) name() string { return "VictoriaMetrics" }

func (v *victoria) start(ctx context.Context, dir string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	v.http = addr
	p, err := startProc("victoria-metrics", v.bin, []string{
		"-storageDataPath=" + filepath.Join(dir, "data"),
		"-httpListenAddr=" + addr,
		"-retentionPeriod=100y",
		// Answer up to the newest point, like the others.
		"-search.latencyOffset=0s",
		"-loggerLevel=ERROR",
	}, filepath.Join(dir, "victoria-metrics.log"))
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, p, "http://"+addr+"/health", http.StatusOK); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

func (v *victoria) write(ctx context.Context, body []byte) error {
	return post(ctx, "http://"+v.http+"/write", nil, body, http.StatusNoContent)
}

type vmAnswer struct {
	Status string `json:"status"`
	Data   struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

func (v *victoria) instant(q string, at time.Time) string {
	return "http://" + v.http + "/api/v1/query?" + url.Values{"query": {q}, "time": {strconv.FormatInt(at.Unix(), 10)}}.Encode()
}

func (v *victoria) stored(ctx context.Context, ds *dataset) (bool, error) {
	// Newly written rows become searchable within a second; do not wait.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+v.http+"/internal/force_flush", nil)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
	}
	span := ds.to.Sub(ds.from) + time.Minute
	for _, q := range []string{
		fmt.Sprintf(`count_over_time(air_pm25{station="s0001"}[%ds])`, int(span.Seconds())),
		fmt.Sprintf(`count_over_time(noise_laeq{station=%q}[%ds])`, lastStation(ds), int(span.Seconds())),
	} {
		var a vmAnswer
		if err := getJSON(ctx, v.instant(q, ds.to), &a); err != nil {
			return false, err
		}
		if len(a.Data.Result) != 1 || fmt.Sprint(a.Data.Result[0].Value[1]) != strconv.Itoa(ds.ticks) {
			return false, fmt.Errorf("%s: %+v", q, a.Data.Result)
		}
	}
	return true, nil
}

func (v *victoria) queries(ds *dataset) [3]query {
	rangeURL := func(q string, step time.Duration) string {
		return "http://" + v.http + "/api/v1/query_range?" + url.Values{
			"query": {q}, "start": {strconv.FormatInt(ds.from.Unix(), 10)}, "end": {strconv.FormatInt(ds.to.Unix(), 10)},
			"step": {strconv.Itoa(int(step.Seconds()))},
		}.Encode()
	}
	check := func(series, minPoints int) func([]byte) error {
		return func(b []byte) error {
			var a vmAnswer
			if err := json.Unmarshal(b, &a); err != nil {
				return err
			}
			return checkShape(len(a.Data.Result), series, func(i int) int {
				if a.Data.Result[i].Values == nil {
					return 1
				}
				return len(a.Data.Result[i].Values)
			}, minPoints)
		}
	}
	days := int(ds.to.Sub(ds.from) / (24 * time.Hour))
	return [3]query{
		{url: rangeURL(`avg_over_time(air_pm25{station="s0001"}[1h])`, time.Hour), check: check(1, days*24)},
		{url: v.instant(`last_over_time(air_pm25[1h])`, ds.to), check: check(ds.params.Stations, 1)},
		{url: rangeURL(`max by (district) (max_over_time(air_pm25[1d]))`, 24*time.Hour), check: check(districts(ds), days)},
	}
}

func (*victoria) storeBytes(string) int64 { return 0 }

// ---- InfluxDB 1.x ----

type influx struct {
	bin     string
	http    string
	created bool
}

func (*influx) name() string { return "InfluxDB" }

const influxConf = `reporting-disabled = true
bind-address = %q
[meta]
  dir = %q
[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
  # Snapshot the cache and compact soon after writes stop, so that the data
  # directory is measured as TSM files rather than as a write-ahead log.
  cache-snapshot-write-cold-duration = "5s"
  compact-full-write-cold-duration = "15s"
[http]
  bind-address = %q
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "error"
`

func (x *influx) start(ctx context.Context, dir string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	rpc, err := freeAddr()
	if err != nil {
		return nil, err
	}
	x.http = addr
	data := filepath.Join(dir, "data")
	conf := filepath.Join(dir, "influxdb.conf")
	body := fmt.Sprintf(influxConf, rpc, filepath.Join(data, "meta"), filepath.Join(data, "data"), filepath.Join(data, "wal"), addr)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc("influxd", x.bin, []string{"-config", conf}, filepath.Join(dir, "influxd.log"))
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, p, "http://"+addr+"/ping", http.StatusNoContent); err != nil {
		p.kill()
		return nil, err
	}
	if !x.created {
		if err := post(ctx, "http://"+addr+"/query?"+url.Values{"q": {"CREATE DATABASE bench"}}.Encode(), nil, nil, http.StatusOK); err != nil {
			p.kill()
			return nil, err
		}
		x.created = true
	}
	return p, nil
}

func (x *influx) write(ctx context.Context, body []byte) error {
	return post(ctx, "http://"+x.http+"/write?db=bench&precision=ns", nil, body, http.StatusNoContent)
}

type influxAnswer struct {
	Results []struct {
		Error  string `json:"error"`
		Series []struct {
			Tags   map[string]string `json:"tags"`
			Values [][]any           `json:"values"`
		} `json:"series"`
	} `json:"results"`
}

func (x *influx) query(q string) string {
	return "http://" + x.http + "/query?" + url.Values{"db": {"bench"}, "q": {q}, "epoch": {"s"}}.Encode()
}

func (x *influx) stored(ctx context.Context, ds *dataset) (bool, error) {
	for _, q := range []string{
		`SELECT count(pm25) FROM air WHERE station='s0001'`,
		fmt.Sprintf(`SELECT count(laeq) FROM noise WHERE station='%s'`, lastStation(ds)),
	} {
		var a influxAnswer
		if err := getJSON(ctx, x.query(q), &a); err != nil {
			return false, err
		}
		if len(a.Results) != 1 || len(a.Results[0].Series) != 1 || len(a.Results[0].Series[0].Values) != 1 ||
			fmt.Sprint(a.Results[0].Series[0].Values[0][1]) != strconv.Itoa(ds.ticks) {
			return false, fmt.Errorf("%s: %+v", q, a.Results)
		}
	}
	return true, nil
}

func (x *influx) queries(ds *dataset) [3]query {
	from, to := ds.from.UnixNano(), ds.to.UnixNano()
	check := func(series, minPoints int) func([]byte) error {
		return func(b []byte) error {
			var a influxAnswer
			if err := json.Unmarshal(b, &a); err != nil {
				return err
			}
			if len(a.Results) != 1 || a.Results[0].Error != "" {
				return fmt.Errorf("answer %s", b[:min(len(b), 300)])
			}
			s := a.Results[0].Series
			return checkShape(len(s), series, func(i int) int { return len(s[i].Values) }, minPoints)
		}
	}
	days := int(ds.to.Sub(ds.from) / (24 * time.Hour))
	return [3]query{
		{url: x.query(fmt.Sprintf(`SELECT mean(pm25) FROM air WHERE station='s0001' AND time >= %d AND time <= %d GROUP BY time(1h)`, from, to)),
			check: check(1, days*24)},
		{url: x.query(fmt.Sprintf(`SELECT last(pm25) FROM air WHERE time >= %d AND time <= %d GROUP BY station`, to-int64(time.Hour), to)),
			check: check(ds.params.Stations, 1)},
		{url: x.query(fmt.Sprintf(`SELECT max(pm25) FROM air WHERE time >= %d AND time <= %d GROUP BY time(1d), district`, from, to)),
			check: check(districts(ds), days)},
	}
}

func (*influx) storeBytes(string) int64 { return 0 }

// settle waits for InfluxDB to snapshot its cache into TSM files and empty
// its write-ahead log (5 s after the last write, as configured), so that
// the data directory is measured in the form it keeps data in.
func (x *influx) settle(ctx context.Context, dir string) error {
	wal := filepath.Join(dir, "data", "wal")
	return waitFor(ctx, 2*time.Minute, func() (bool, error) {
		n, err := diskUsage(wal)
		if err != nil {
			return false, err
		}
		return n < 1<<20, fmt.Errorf("write-ahead log still holds %d bytes", n)
	})
}
