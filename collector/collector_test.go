package collector

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/citysense/citysense/collector/internal/config"
	"github.com/citysense/citysense/internal/confx"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testConfig(t *testing.T) config.Config {
	cfg := config.Default()
	cfg.Node.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.NATS.Listen = "127.0.0.1:0"
	// The tests write fixed dates in 2025; keep them.
	cfg.Store.Retention = config.Retention{}
	return cfg
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// An agent publishes a zstd batch over TCP; the public API serves it back.
func TestCollector_Run_endToEnd(t *testing.T) {
	c, err := New(testConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Started():
	case err := <-done:
		t.Fatalf("Run returned before starting: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("collector did not start")
	}
	base := "http://" + c.HTTPAddr()
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d %s", code, body)
	}

	nc, err := nats.Connect(c.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil)
	msg := nats.NewMsg("cs.raw.gw-1")
	msg.Header.Set(jetstream.MsgIDHeader, "gw-1-1")
	msg.Header.Set("Content-Encoding", "zstd")
	msg.Data = enc.EncodeAll([]byte(
		"station,district=d03,station=s0042 lat=48.2,lon=16.37 1735689600000000000\n"+
			"air,district=d03,station=s0042 pm25=12.3 1735689600000000000\n"), nil)
	enc.Close()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if _, err := js.PublishMsg(pctx, msg); err != nil {
		t.Fatal(err)
	}

	want := `{"series":[{"measurement":"air","field":"pm25","tags":{"district":"d03","station":"s0042"},"points":[[1735689600,12.3]]}],"partial":false,"resolution":"raw"}` + "\n"
	var body string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, body = get(t, base+"/api/v1/series?station=s0042&field=pm25&from=1735689600&to=1735689600"); body == want {
			break
		}
	}
	if body != want {
		t.Fatalf("series = %s, want %s", body, want)
	}
	// The stations index may trail the series answer by a moment under
	// load, like the ingest counter below; poll, then assert.
	var fc struct {
		Features []struct {
			Geometry struct {
				Coordinates []float64 `json:"coordinates"`
			} `json:"geometry"`
			Properties map[string]any `json:"properties"`
		} `json:"features"`
	}
	var stations string

	stationsOK := func() bool {
		return err == nil && len(fc.Features) == 1 && fc.Features[0].Properties["id"] == "s0042" &&
			len(fc.Features[0].Geometry.Coordinates) == 2 && fc.Features[0].Geometry.Coordinates[0] == 16.37
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, stations = get(t, base+"/api/v1/stations")
		fc.Features = nil
		if err = json.Unmarshal([]byte(stations), &fc); stationsOK() {
			break
		}
	}
	if !stationsOK() {
		t.Errorf("stations = %s (%v)", stations, err)
	}
	// The store makes points visible before the ingest stage counts them
	// (it counts after Write returns), so the counter may trail the answer
	// by a moment.
	const wantMetric = `citysense_ingest_points_total{stream="CS_SERIES"} 2`
	var m string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, m = get(t, base+"/metrics"); strings.Contains(m, wantMetric) {
			break
		}
	}
	if !strings.Contains(m, wantMetric) {
		t.Errorf("/metrics lacks %s:\n%s", wantMetric, m)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestCollector_Run_httpPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t)
	cfg.HTTP.Listen = ln.Addr().String()
	c, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "http listen") {
		t.Fatalf("Run = %v, want an http listen error", err)
	}
	// goleak in TestMain checks that the bus and store were shut down.
}

func TestNew_invalidConfig(t *testing.T) {
	cfg := testConfig(t)
	cfg.Node.Name = ""
	_, err := New(cfg, nil)
	var probs confx.Problems
	if !errors.As(err, &probs) || len(probs) != 1 || probs[0].Path != "node.name" {
		t.Fatalf("New = %v, want one problem at node.name", err)
	}
}
