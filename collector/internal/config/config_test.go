package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/citysense/citysense/internal/confx"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "collector.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoad_valid(t *testing.T) {
	pem := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(pem, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, `
node:
  name: c7
  data_dir: /var/lib/citysense
http:
  listen: 0.0.0.0:9000
  max_body: 1MiB
nats:
  listen: 127.0.0.1:4333
  sync_always: true
  tls:
    cert: `+pem+`
    key: `+pem+`
    ca: `+pem+`
    verify_clients: true
mqtt:
  listen: 127.0.0.1:1883
log:
  level: debug
  format: json
ingest:
  batch: 20
  ack_wait: 1m
  retry_delay: 250ms
  max_past: 30d
  max_future: 5m
  max_tags: 8
  max_fields: 16
  partitions: 32
store:
  retention:
    raw: 30d
    1m: 400d
    1h: forever
  cache: 16MiB
enrich:
  - type: registry
    file: stations.yaml
`)
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{
		Node: Node{Name: "c7", DataDir: "/var/lib/citysense"},
		HTTP: HTTP{Listen: "0.0.0.0:9000", MaxBody: 1 << 20},
		NATS: NATS{Listen: "127.0.0.1:4333", SyncAlways: true, TLS: TLS{Cert: pem, Key: pem, CA: pem, VerifyClients: true}},
		MQTT: MQTT{Listen: "127.0.0.1:1883"},
		Log:  Log{Level: "debug", Format: "json"},
		Ingest: Ingest{Batch: 20, AckWait: confx.Duration(time.Minute), RetryDelay: confx.Duration(250 * time.Millisecond),
			MaxPast: confx.Duration(30 * 24 * time.Hour), MaxFuture: confx.Duration(5 * time.Minute), MaxTags: 8, MaxFields: 16, Partitions: 32},
		Store: Store{Retention: Retention{Raw: Keep(30 * 24 * time.Hour), Minute: Keep(400 * 24 * time.Hour)}, Cache: 16 << 20},
	}
	if len(cfg.Enrich) != 1 || cfg.Enrich[0].Kind != yaml.MappingNode || cfg.Doc() == nil || cfg.Dir() != filepath.Dir(path) {
		t.Fatalf("enrich blocks %d, doc %v, dir %q", len(cfg.Enrich), cfg.Doc(), cfg.Dir())
	}
	cfg.Enrich, cfg.doc, cfg.file = nil, nil, ""
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestLoad_emptyFileKeepsDefaults(t *testing.T) {
	cfg, err := Load(writeFile(t, "# nothing here\n"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	cfg.doc, cfg.file = nil, ""
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("Load = %+v, want defaults %+v", cfg, Default())
	}
}

func TestDefault_valid(t *testing.T) {
	cfg := Default()
	if probs := cfg.Validate(nil); len(probs) > 0 {
		t.Fatalf("Default() is invalid: %v", probs)
	}
}

func TestLoad_problems(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string // every problem, in order, as printed
	}{
		{
			name: "unknown key",
			text: "node:\n  name: c1\n  dta_dir: /x\n",
			want: []string{`FILE:3: node.dta_dir: unknown key "dta_dir" (known: data_dir, name)`},
		},
		{
			name: "unknown section",
			text: "node:\n  name: c1\nclustr: {}\n",
			want: []string{`FILE:3: clustr: unknown key "clustr" (known: cluster, enrich, http, ingest, log, mqtt, nats, node, store)`},
		},
		{
			name: "bad duration",
			text: "ingest:\n  retry_delay: soon\n",
			want: []string{`FILE:2: invalid duration "soon" (want e.g. 10s, 5m, 2h, 90d)`},
		},
		{
			name: "every validation problem at once",
			text: "node:\n  name: 'a b'\n  data_dir: ''\nhttp:\n  listen: localhost\nnats:\n  listen: 127.0.0.1:99999\nlog:\n  level: loud\n  format: xml\ningest:\n  batch: 0\n  ack_wait: 10ms\n  retry_delay: 0s\n",
			want: []string{
				`FILE:2: node.name: "a b" must not contain spaces, '.', '*' or '>'`,
				`FILE:3: node.data_dir: must not be empty`,
				`FILE:5: http.listen: "localhost": want host:port`,
				`FILE:7: nats.listen: "127.0.0.1:99999": port must be a number from 0 to 65535`,
				`FILE:9: log.level: "loud": want debug, info, warn or error`,
				`FILE:10: log.format: "xml": want auto, text or json`,
				`FILE:12: ingest.batch: 0: want 1 to 10000`,
				`FILE:13: ingest.ack_wait: 10ms: want at least 1s`,
				`FILE:14: ingest.retry_delay: 0s: want more than 0`,
			},
		},
		{
			name: "public url",
			text: "http:\n  public_url: data.example.city/path?x=1\n",
			want: []string{`FILE:2: http.public_url: "data.example.city/path?x=1": want an absolute http or https URL without query, e.g. https://data.example.city`},
		},
		{
			name: "portal",
			text: "http:\n  portal:\n    tile_url: ftp://tiles/{z}/{x}.png\n    licence: ODbL\n",
			want: []string{
				`FILE:3: http.portal.tile_url: "ftp://tiles/{z}/{x}.png": want an http or https template with {z}, {x} and {y}, e.g. https://tiles.example.org/{z}/{x}/{y}.png`,
				`FILE:4: http.portal.licence: set licence and licence_url together`,
			},
		},
		{
			name: "decode and validation problems together",
			text: "log:\n  level: loud\ningest:\n  batch: many\n  retry_delay: 0s\nnode:\n  nam: x\n",
			want: []string{
				`FILE:2: log.level: "loud": want debug, info, warn or error`,
				"FILE:4: cannot unmarshal !!str `many` into int",
				`FILE:5: ingest.retry_delay: 0s: want more than 0`,
				`FILE:7: node.nam: unknown key "nam" (known: data_dir, name)`,
			},
		},
		{
			name: "write limits, tls and mqtt",
			text: "http:\n  max_body: 1KiB\nnats:\n  tls:\n    cert: /nonexistent/cert.pem\n    verify_clients: true\nmqtt:\n  listen: 127.0.0.1:8080\ningest:\n  max_past: 0s\n  max_future: -1s\n  max_tags: -1\n  max_fields: 0\n",
			want: []string{
				`FILE:2: http.max_body: 1024 bytes: want 64KiB to 1GiB`,
				// Keys the file leaves out are placed at their parent.
				`FILE:4: nats.tls.key: must be set with nats.tls.cert`,
				`FILE:4: nats.tls.ca: must be set with nats.tls.verify_clients`,
				`FILE:5: nats.tls.cert: cannot read "/nonexistent/cert.pem": no such file or directory`,
				`FILE:8: mqtt.listen: "127.0.0.1:8080" is also http.listen or nats.listen`,
				`FILE:11: ingest.max_future: -1s: want 0 or more`,
				`FILE:12: ingest.max_tags: -1: want 0 to 10000`,
				`FILE:13: ingest.max_fields: 0: want 1 to 10000`,
			},
		},
		{
			name: "retention",
			text: "store:\n  retention:\n    raw: 12h\n    1m: 30d\n    1h: 7d\n  cache: 100GiB\n",
			want: []string{
				`FILE:3: store.retention.raw: 12h0m0s: want at least 1d (a partition), or forever`,
				`FILE:4: store.retention.1m: 30d is longer than store.retention.1h (7d)`,
				`FILE:6: store.cache: 107374182400 bytes: want at most 64GiB`,
			},
		},
		{
			name: "max_past beyond raw retention",
			text: "ingest:\n  max_past: 100d\nstore:\n  retention:\n    raw: 90d\n",
			want: []string{`FILE:2: ingest.max_past: 100d is longer than store.retention.raw (90d): points that old would be accepted and dropped; leave max_past out to follow the retention`},
		},
		{
			name: "bad retention value",
			text: "store:\n  retention:\n    raw: always\n",
			want: []string{`FILE:3: invalid duration "always" (want e.g. 10s, 5m, 2h, 90d), or forever`},
		},
		{
			name: "cluster",
			text: "cluster:\n  gossip: 0.0.0.0:7946\n  routes: 127.0.0.1:4222\n  seeds: [c1]\n  replication: 9\n  key: c2hvcnQ=\n  series_retention: 10m\n",
			want: []string{
				`FILE:1: cluster.advertise: must be set when cluster.gossip listens on every interface ("0.0.0.0:7946"): the host other nodes reach this one at`,
				`FILE:3: cluster.routes: "127.0.0.1:4222" is also used by another listener`,
				`FILE:4: cluster.seeds[0]: "c1": want host:port`,
				`FILE:5: cluster.replication: 9: want 1 to 5 (2 survives losing a node)`,
				`FILE:6: cluster.key: cluster key: 5 bytes, want 16, 24 or 32`,
				`FILE:7: cluster.series_retention: 10m0s: want at least 1h`,
			},
		},
		{
			name: "cluster route tls",
			text: "cluster:\n  gossip: 127.0.0.2:7946\n  routes: 127.0.0.2:6222\n  key: AAECAwQFBgcICQoLDA0ODw==\n  tls:\n    cert: /nonexistent/route.pem\n",
			want: []string{
				`FILE:5: cluster.tls.key: must be set: route TLS needs cert, key and ca (peers are verified both ways)`,
				`FILE:5: cluster.tls.ca: must be set: route TLS needs cert, key and ca (peers are verified both ways)`,
				`FILE:6: cluster.tls.cert: cannot read "/nonexistent/route.pem": no such file or directory`,
			},
		},
		{
			name: "cluster without a key",
			text: "cluster:\n  gossip: 127.0.0.2:7946\n  routes: 127.0.0.2:6222\n",
			want: []string{"FILE:1: cluster.key: a cluster needs a shared key (or key_file): generate one with `citysense-collector cluster keygen`"},
		},
		{
			name: "same address twice",
			text: "http:\n  listen: 127.0.0.1:4222\n",
			want: []string{`FILE:2: http.listen: "127.0.0.1:4222" is also nats.listen`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.text)
			_, err := Load(path)
			var probs confx.Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Load error = %v (%T), want confx.Problems", err, err)
			}
			var got []string
			for _, p := range probs {
				got = append(got, strings.Replace(p.Error(), path, "FILE", 1))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLoad_cluster(t *testing.T) {
	path := writeFile(t, "cluster:\n  gossip: 127.0.0.2:7946\n  routes: 127.0.0.2:6222\n  seeds: [127.0.0.1:7946]\n  key: AAECAwQFBgcICQoLDA0ODw==\n")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cl := cfg.Cluster
	if cl == nil || cl.Replication != 2 || cl.SeriesRetention.D() != DefaultSeriesRetention || cl.AdvertiseHost() != "127.0.0.2" {
		t.Fatalf("cluster = %+v, want defaults replication 2, series_retention 24h, advertise 127.0.0.2", cl)
	}
	key, err := cl.ClusterKey()
	if err != nil || len(key) != 16 || key[15] != 15 {
		t.Fatalf("key = %v, %v", key, err)
	}
	if def := Default(); def.Cluster != nil {
		t.Fatal("the default configuration is a cluster")
	}
}

func TestLoad_missingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load error = %v, want os.ErrNotExist", err)
	}
}

func TestLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:4222", true},
		{"127.0.0.2:0", true},
		{"[::1]:4222", true},
		{"localhost:4222", true},
		{"0.0.0.0:4222", false},
		{":4222", false},
		{"[::]:4222", false},
		{"10.1.0.11:4222", false},
		{"collector.example:4222", false},
		{"nonsense", false},
	}
	for _, tt := range tests {
		if got := Loopback(tt.addr); got != tt.want {
			t.Errorf("Loopback(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}
