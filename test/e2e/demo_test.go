package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// demoDir is configs/demo: the simulated city's registry, districts and
// collector config.
func demoDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "configs", "demo")
}

// demoCollector is a collector running the demo config's enrichment chain
// (with its files resolved from configs/demo), and a write token.
type demoCollector struct {
	p                *proc
	dataDir, cfg     string
	http, nats, base string
	token            string
}

// startDemoCollector writes the config as node name, checks it, starts
// the collector, waits for /readyz and adds the write token tokenName.
func startDemoCollector(t *testing.T, name, tokenName string) *demoCollector {
	t.Helper()
	demo := demoDir()
	raw, err := os.ReadFile(filepath.Join(demo, "collector.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The demo config's enrich list, with its files resolved from the demo
	// directory: the config under test is written elsewhere.
	i := strings.Index(string(raw), "\nenrich:")
	if i < 0 {
		t.Fatal("configs/demo/collector.yaml has no enrich: list")
	}
	enrichYAML := strings.NewReplacer(
		"file: stations.yaml", "file: "+filepath.Join(demo, "stations.yaml"),
		"districts: districts.geojson", "districts: "+filepath.Join(demo, "districts.geojson"),
	).Replace(string(raw[i:]))
	c := &demoCollector{dataDir: t.TempDir(), http: freeAddr(t), nats: freeAddr(t)}
	c.base = "http://" + c.http
	c.cfg = writeFile(t, "collector.yaml", "node:\n  name: "+name+"\n  data_dir: "+c.dataDir+"\n"+enrichYAML)
	if out, code := runCmd(t, "citysense-collector", "check", "-c", c.cfg); code != 0 {
		t.Fatalf("check: %s", out)
	}
	c.p = start(t, "citysense-collector", "run", "-c", c.cfg, "--http", c.http, "--nats", c.nats, "--log-format", "json")
	waitFor(t, "collector /readyz", 30*time.Second, func() (bool, error) { return httpOK(c.base + "/readyz") })
	out, code := runCmd(t, "citysense-collector", "token", "add", tokenName, "--data-dir", c.dataDir)
	c.token = regexp.MustCompile(`(?m)^cs_[A-Za-z0-9_-]{43}$`).FindString(out)
	if code != 0 || c.token == "" {
		t.Fatalf("token add (exit %d):\n%s", code, out)
	}
	return c
}
