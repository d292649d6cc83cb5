package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols/sim"
)

func write(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// check is what `citysense-agent check` does: load, validate, every problem.
func check(t *testing.T, path string) confx.Problems {
	t.Helper()
	c, err := Load(path)
	var probs confx.Problems
	if err != nil && !errors.As(err, &probs) {
		t.Fatalf("Load: %v", err)
	}
	if c == nil {
		return probs
	}
	if err := c.Validate(); err != nil {
		var vp confx.Problems
		if !errors.As(err, &vp) {
			t.Fatalf("Validate returned %T: %v", err, err)
		}
		probs = append(probs, vp...)
	}
	return probs
}

const valid = `agent:
  id: gw-017
  data_dir: /var/lib/citysense
  http: 127.0.0.1:9274
log:
  level: debug
  format: json
inputs:
  - type: sim
    stations: 5
    seed: 3
    interval: 1s
    start: 2025-01-01T00:00:00Z
    ticks: 10
    realtime: false
  - type: sim
    stations: 2
    processors:
      - type: filter
        exclude:
          measurement: [traffic]
processors:
  - type: tags
    add: {gateway: gw-017}
buffer:
  max_bytes: 64MiB
  max_age: 7d
  policy: drop_newest
  segment_size: 4MiB
  batch_points: 1000
  flush_interval: 5ms
  flush_points: 20000
  compression: s2
outputs:
  - type: nats
    url: nats://collector.example:4222
  - type: influx
    id: vm
    url: http://vm.example:8428
    api: v1
    database: city
    gzip: false
    backfill_rate: 0
`

func TestLoad_valid(t *testing.T) {
	path := write(t, valid)
	if probs := check(t, path); len(probs) > 0 {
		t.Fatalf("valid config has problems:\n%v", probs)
	}
	c, _ := Load(path)
	want := Agent{ID: "gw-017", DataDir: "/var/lib/citysense", HTTP: "127.0.0.1:9274", StuckAfter: confx.Duration(10 * time.Minute), MemoryLimit: 24 << 20}
	if c.Agent != want || c.Log != (Log{"debug", "json"}) {
		t.Fatalf("agent %+v log %+v", c.Agent, c.Log)
	}
	wantBuf := Buffer{MaxBytes: 64 << 20, MaxAge: confx.Duration(7 * 24 * time.Hour), Policy: "drop_newest", SegmentSize: 4 << 20,
		BatchPoints: 1000, FlushInterval: confx.Duration(5 * time.Millisecond), FlushPoints: 20000, Compression: "s2"}
	if c.Buffer != wantBuf {
		t.Fatalf("buffer %+v", c.Buffer)
	}
	zero, off := 0.0, false
	std := Output{Timeout: confx.Duration(DefaultTimeout), ReconnectWait: confx.Duration(DefaultReconnectWait), MaxBackoff: confx.Duration(DefaultMaxBackoff)}
	nats, vm := std, std
	nats.Type, nats.ID, nats.URL, nats.MaxInflight = "nats", "nats", "nats://collector.example:4222", DefaultMaxInflight
	vm.Type, vm.ID, vm.URL, vm.API, vm.Database, vm.Gzip, vm.BackfillRate, vm.MaxInflight = "influx", "vm", "http://vm.example:8428", "v1", "city", &off, &zero, DefaultInfluxInflight
	if !reflect.DeepEqual(c.Outputs, []Output{nats, vm}) {
		t.Fatalf("outputs %+v", c.Outputs)
	}
	if c.Outputs[0].Backfill() != DefaultBackfillRate || c.Outputs[1].Backfill() != 0 || !c.Outputs[0].GzipOn() || c.Outputs[1].GzipOn() {
		t.Fatal("backfill or gzip defaults wrong")
	}
	ins, err := c.BuildInputs(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := ins[0].Input.(*sim.Input)
	if len(ins) != 2 || ins[0].Type != "sim" || ins[0].Path != "inputs[0]" || !ok {
		t.Fatalf("inputs %+v", ins)
	}
	if len(ins[0].Processors) != 0 || len(ins[1].Processors) != 1 || len(c.Processors) != 1 {
		t.Fatalf("processors: input 0 %d, input 1 %d, global %d", len(ins[0].Processors), len(ins[1].Processors), len(c.Processors))
	}
	if ins[0].Key == "" || ins[0].Key == ins[1].Key {
		t.Fatalf("input keys %q %q", ins[0].Key, ins[1].Key)
	}
	if s.Stations != 5 || s.Seed != 3 || s.Interval.D() != time.Second || s.Ticks != 10 || s.Realtime {
		t.Fatalf("sim decoded as %+v", s)
	}
}

func TestLoad_defaultsForKeysLeftOut(t *testing.T) {
	c, err := Load(write(t, "inputs:\n  - type: sim\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.Agent != d.Agent || c.Buffer != d.Buffer || !reflect.DeepEqual(c.Outputs, d.Outputs) {
		t.Fatalf("left-out keys lost their defaults: %+v", c)
	}
	ins, _ := c.BuildInputs(nil)
	if s := ins[0].Input.(*sim.Input); s.Stations != 50 || !s.Realtime {
		t.Fatalf("sim defaults lost: %+v", s)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Agent.DataDir != "./data/agent" || c.Agent.HTTP != "127.0.0.1:9274" || c.Outputs[0].URL != "nats://127.0.0.1:4222" {
		t.Fatalf("default %+v %+v", c.Agent, c.Outputs)
	}
	ins, err := c.BuildInputs(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := ins[0].Input.(*sim.Input)
	if len(ins) != 1 || s.Stations != 10 || s.Interval.D() != 10*time.Second || !s.Realtime {
		t.Fatalf("default input %+v", s)
	}
	if !ValidID(c.Agent.ID) {
		t.Fatalf("default id %q is not valid", c.Agent.ID)
	}
}

func TestValidate_problems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each problem as printed, in order
	}{
		{
			name: "unknown top-level key",
			yaml: "agent:\n  id: gw-1\ninputs:\n  - type: sim\nbufer:\n  max_bytes: 1GiB\n",
			want: []string{`agent.yaml:5: bufer: unknown key "bufer" (known: agent, buffer, inputs, log, outputs, processors)`},
		},
		{
			name: "unknown key in an input block",
			yaml: "agent:\n  id: gw-1\ninputs:\n  - type: sim\n    stations: 3\n    statons: 4\n",
			want: []string{`agent.yaml:6: inputs[0].statons: unknown key "statons" (known: interval, realtime, seed, start, stations, ticks)`},
		},
		{
			name: "bad id",
			yaml: "agent:\n  id: gw.017\ninputs:\n  - type: sim\n",
			want: []string{`agent.yaml:2: agent.id: "gw.017" is not a valid agent id: want 1 to 64 of A-Z a-z 0-9 _ - (it is a NATS subject token)`},
		},
		{
			name: "input Init problems placed at their keys",
			yaml: "inputs:\n  - type: sim\n    stations: 0\n    interval: 1us\n",
			want: []string{
				`agent.yaml:3: inputs[0].stations: must be between 1 and 100000, got 0`,
				`agent.yaml:4: inputs[0].interval: must be at least 1ms, got 1µs`,
			},
		},
		{
			name: "unknown and missing input types",
			yaml: "inputs:\n  - type: modbuss\n  - stations: 3\n",
			want: []string{
				`agent.yaml:2: inputs[0].type: unknown input type "modbuss" (known: sim)`,
				`agent.yaml:3: inputs[1]: missing type (known: sim)`,
			},
		},
		{
			name: "processors problems at their lines",
			yaml: "inputs:\n  - type: sim\n    processors:\n      - type: filtr\nprocessors:\n  - type: tags\n    nope: 1\n",
			want: []string{
				`agent.yaml:4: inputs[0].processors[0]: unknown processor type "filtr" (known: aggregate, deadband, filter, rename, scale, tags)`,
				`agent.yaml:7: processors[0].nope: unknown key "nope" (known: add, delete, measurement, rename)`,
			},
		},
		{
			name: "influx needs its database or bucket; creds must be a key",
			yaml: "inputs:\n  - type: sim\noutputs:\n  - type: influx\n    url: http://vm:8428\n  - type: influx\n    id: v1\n    url: http://vm:8428\n    api: v1\n  - type: nats\n    url: nats://c:4222\n    creds: ${CREDS}\n",
			want: []string{
				`agent.yaml:4: outputs[0].bucket: api v2 needs a bucket`,
				`agent.yaml:6: outputs[1].database: api v1 needs a database`,
				`agent.yaml:12: outputs[2].creds: holds neither a user NKey seed nor a user JWT (want the file ` + "`citysense-collector agent add`" + ` wrote, or a NATS .creds file)`,
			},
		},
		{
			name: "no inputs",
			yaml: "agent:\n  id: x\n",
			want: []string{`agent.yaml: inputs: at least one input is required (known types: sim)`},
		},
		{
			name: "everything at once",
			yaml: `agent:
  id: ""
  http: localhost
log:
  level: loud
  format: xml
inputs:
  - type: sim
    seed: many
buffer:
  max_bytes: 10k
  flush_interval: 2s
  policy: drop_random
  batch_points: 0
  compression: lz4
outputs:
  - type: kafka
    url: http://x
    timeout: 1ms
  - type: nats
    url: nats://a:4222
    bucket: raw
  - type: nats
    url: http://b
    max_inflight: 2000
  - type: influx
    id: a.b
    url: nats://x
    api: v3
    creds: /x
`,
			want: []string{
				`agent.yaml:2: agent.id: "" is not a valid agent id: want 1 to 64 of A-Z a-z 0-9 _ - (it is a NATS subject token)`,
				`agent.yaml:3: agent.http: want host:port, e.g. 127.0.0.1:9274, got "localhost"`,
				`agent.yaml:5: log.level: want debug, info, warn or error, got "loud"`,
				`agent.yaml:6: log.format: want auto, text or json, got "xml"`,
				"agent.yaml:9: cannot unmarshal !!str `many` into int64",
				`agent.yaml:11: buffer.max_bytes: must be 0 (no limit) or at least 1MiB, got 10240 bytes`,
				`agent.yaml:12: buffer.flush_interval: must be between 0 and 1s, got 2s`,
				`agent.yaml:13: buffer.policy: want drop_oldest, drop_newest or block, got "drop_random"`,
				`agent.yaml:14: buffer.batch_points: must be between 1 and 100000, got 0`,
				`agent.yaml:15: buffer.compression: want zstd or s2, got "lz4"`,
				`agent.yaml:17: outputs[0].type: unknown output type "kafka" (known: influx, nats)`,
				`agent.yaml:19: outputs[0].timeout: must be at least 100ms, got 1ms`,
				`agent.yaml:22: outputs[1].bucket: is an option of the influx output, not of nats`,
				`agent.yaml:23: outputs[2].id: id "nats" is already used by outputs[1]; give each output its own id`,
				`agent.yaml:24: outputs[2].url: want nats://host:port or tls://host:port, got "http://b"`,
				`agent.yaml:25: outputs[2].max_inflight: must be between 1 and 1024, got 2000`,
				`agent.yaml:27: outputs[3].id: "a.b" is not a valid output id: want 1 to 64 of A-Z a-z 0-9 _ -`,
				`agent.yaml:28: outputs[3].url: want http://host:port or https://host:port, got "nats://x"`,
				`agent.yaml:29: outputs[3].api: want v1 or v2, got "v3"`,
				`agent.yaml:30: outputs[3].creds: is an option of the nats output, not of influx`,
			},
		},
	}
	junk := filepath.Join(t.TempDir(), "junk.creds")
	os.WriteFile(junk, []byte("not a key"), 0o600)
	t.Setenv("CREDS", junk)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, tt.yaml)
			var got []string
			for _, p := range check(t, path) {
				got = append(got, strings.TrimPrefix(p.Error(), filepath.Dir(path)+"/"))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLoad_notYAML(t *testing.T) {
	c, err := Load(write(t, "agent: [\n"))
	if c != nil || err == nil {
		t.Fatalf("Load = %v, %v; want an error and no config", c, err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file loaded")
	}
}

func TestIDFromHost(t *testing.T) {
	tests := map[string]string{
		"gw-017":                    "gw-017",
		"gw-017.city.example":       "gw-017",
		"Pi 4 (kitchen)":            "Pi-4--kitchen",
		"":                          "agent-1",
		"...":                       "agent-1",
		strings.Repeat("a", 80):     strings.Repeat("a", 64),
		"über-gateway.local":        "ber-gateway",
		"raspberrypi_1.localdomain": "raspberrypi_1",
	}
	for host, want := range tests {
		got := idFromHost(host)
		if got != want || !ValidID(got) {
			t.Errorf("idFromHost(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestValidate_memoryLimit(t *testing.T) {
	for _, tt := range []struct {
		limit, want string
	}{
		{"0", ""},
		{"64MiB", ""},
		{"1MiB", `agent.yaml:3: agent.memory_limit: must be 0 (no limit) or at least 8MiB, got 1048576 bytes`},
	} {
		path := write(t, "agent:\n  id: gw-1\n  memory_limit: "+tt.limit+"\ninputs:\n  - type: sim\noutputs:\n  - type: nats\n    url: nats://a:4222\n")
		var got []string
		for _, p := range check(t, path) {
			got = append(got, strings.TrimPrefix(p.Error(), filepath.Dir(path)+"/"))
		}
		if (tt.want == "" && len(got) > 0) || (tt.want != "" && (len(got) != 1 || got[0] != tt.want)) {
			t.Errorf("memory_limit %s: problems %q, want %q", tt.limit, got, tt.want)
		}
	}
}
