package confx

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type testInner struct {
	Name     string   `yaml:"name"`
	Interval Duration `yaml:"interval"`
}

type testConfig struct {
	Port  int    `yaml:"port"`
	Label string `yaml:"label"`
	Agent struct {
		ID      string `yaml:"id"`
		DataDir string `yaml:"data_dir"`
	} `yaml:"agent"`
	Buffer struct {
		MaxBytes Size `yaml:"max_bytes"`
	} `yaml:"buffer"`
	Items []testInner          `yaml:"items"`
	Named map[string]testInner `yaml:"named"`
}

func TestLoad_UnknownKeysAllReportedWithLines(t *testing.T) {
	src := "agent:\n  id: gw-1\n  dta_dir: /x\nbuffer:\n  max_bytes: 1MiB\nitems:\n  - name: a\n    intervl: 5s\nnamed:\n  x:\n    nam: b\nextra: 1\n"
	var c testConfig
	_, err := Load("agent.yaml", []byte(src), &c)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v, want Problems", err)
	}
	want := []string{
		"agent.yaml:3: agent.dta_dir: unknown key",
		"agent.yaml:8: items[0].intervl: unknown key",
		"agent.yaml:11: named.x.nam: unknown key",
		"agent.yaml:12: extra: unknown key",
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems:\n%v", len(ps), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(ps[i].Error(), w) {
			t.Errorf("problem %d = %q, want prefix %q", i, ps[i].Error(), w)
		}
	}
	if !strings.Contains(ps[0].Error(), "known: data_dir, id") {
		t.Errorf("problem does not list the known keys: %q", ps[0].Error())
	}
}

func TestLoad_ValuesAndDefaults(t *testing.T) {
	var c testConfig
	c.Agent.DataDir = "/default"
	t.Setenv("CS_TEST_ID", "gw-9")
	doc, err := Load("a.yaml", []byte("agent:\n  id: ${CS_TEST_ID}\nbuffer:\n  max_bytes: 256MiB\nitems:\n  - name: ${CS_UNSET_X:-fallback}\n    interval: 2d\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Agent.ID != "gw-9" || c.Agent.DataDir != "/default" || c.Buffer.MaxBytes != 256<<20 {
		t.Fatalf("config = %+v", c)
	}
	if c.Items[0].Name != "fallback" || c.Items[0].Interval.D() != 48*time.Hour {
		t.Fatalf("items = %+v", c.Items)
	}
	if doc.Line("items[0].interval") != 7 || doc.Line("items[0].interval.nothing") != 7 || doc.Line("nope") != 0 {
		t.Fatalf("lines: %d %d %d", doc.Line("items[0].interval"), doc.Line("items[0].interval.nothing"), doc.Line("nope"))
	}
	if got := doc.At("buffer.max_bytes", "too big").Error(); got != "a.yaml:4: buffer.max_bytes: too big" {
		t.Fatalf("At = %q", got)
	}
}

func TestLoad_TypeErrorsHaveLines(t *testing.T) {
	var c testConfig
	_, err := Load("c.yaml", []byte("buffer:\n  max_bytes: lots\nitems:\n  - name: a\n    interval: soon\n"), &c)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "c.yaml:2:") || !strings.Contains(msg, `invalid size "lots"`) {
		t.Errorf("size error not positioned: %q", msg)
	}
}

func TestLoad_MissingEnvIsAnError(t *testing.T) {
	var c testConfig
	_, err := Load("c.yaml", []byte("# ${IN_A_COMMENT} is left alone\nagent:\n  id: ${CS_SURELY_UNSET_VAR}\n"), &c)
	if err == nil || !strings.HasPrefix(err.Error(), "c.yaml:3: environment variable not set: CS_SURELY_UNSET_VAR") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoad_EnvNumbersResolve(t *testing.T) {
	var c testConfig
	t.Setenv("CS_TEST_PORT", "4222")
	if _, err := Load("c.yaml", []byte("port: ${CS_TEST_PORT}\nlabel: \"${CS_TEST_PORT}\"\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Port != 4222 || c.Label != "4222" {
		t.Fatalf("port %d label %q", c.Port, c.Label)
	}
}

func TestLoad_EnvValueCannotChangeStructure(t *testing.T) {
	var c testConfig
	t.Setenv("CS_TEST_HOSTILE", "x\nextra: 1\nagent: {id: evil}")
	if _, err := Load("c.yaml", []byte("agent:\n  data_dir: ${CS_TEST_HOSTILE}\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Agent.DataDir != "x\nextra: 1\nagent: {id: evil}" || c.Agent.ID != "" {
		t.Fatalf("config = %+v", c.Agent)
	}
}

func TestLoad_SyntaxError(t *testing.T) {
	var c testConfig
	_, err := Load("c.yaml", []byte("agent:\n  id: [unclosed\n"), &c)
	if err == nil || !strings.HasPrefix(err.Error(), "c.yaml:") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "1k": 1024, "1KB": 1000, "256MiB": 256 << 20, "1.5GiB": 3 << 29, "2 tb": 2e12} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1XB", "MiB", "99999999999TiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) = nil error", bad)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"10s": 10 * time.Second, "1h30m": 90 * time.Minute, "90d": 90 * 24 * time.Hour} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "5", "d", "-3d", "1y"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) = nil error", bad)
		}
	}
}

func TestWithout_TakesSelectorKeys(t *testing.T) {
	var c struct {
		Items []yaml.Node `yaml:"items"`
	}
	doc, err := Load("p.yaml", []byte("items:\n  - type: sim\n    name: a\n    stations: 3\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	body, keys := Without(&c.Items[0], "type", "name")
	if keys["type"] != (Key{"sim", 2}) || keys["name"] != (Key{"a", 3}) || keys["absent"] != (Key{}) {
		t.Fatalf("keys = %v", keys)
	}
	var v struct {
		Stations int `yaml:"stations"`
	}
	if err := doc.Decode(body, "items[0]", &v); err != nil || v.Stations != 3 {
		t.Fatalf("decode body: %v %+v", err, v)
	}
	if len(c.Items[0].Content) != 6 {
		t.Fatal("Without changed the original node")
	}
}

func TestDoc_Place(t *testing.T) {
	var c struct {
		Items []yaml.Node `yaml:"items"`
	}
	doc, _ := Load("p.yaml", []byte("items:\n  - type: sim\n    stations: 0\n"), &c)
	// Decoding the block records its keys' lines, as a plugin's Init does.
	var plugin struct {
		Type     string `yaml:"type"`
		Stations int    `yaml:"stations"`
	}
	if err := doc.Decode(&c.Items[0], "items[0]", &plugin); err != nil {
		t.Fatal(err)
	}
	err := errors.Join(
		Problem{Path: "stations", Msg: "must be at least 1"},
		Problem{File: "stations.yaml", Line: 9, Msg: "bad latitude"},
		Problem{Msg: "no path"},
		errors.New("plain"),
	)
	got := doc.Place(nil, "items[0]", err)
	want := []string{
		"p.yaml:3: items[0].stations: must be at least 1",
		"stations.yaml:9: bad latitude",
		"p.yaml:2: items[0]: no path",
		"p.yaml:2: items[0]: plain",
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].Error() != want[i] {
			t.Errorf("problem %d = %q, want %q", i, got[i].Error(), want[i])
		}
	}
}

func TestCheckListen(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:8186", ":0", "[::1]:65535", "localhost:80"} {
		if err := CheckListen(ok, "127.0.0.1:1"); err != nil {
			t.Errorf("CheckListen(%q) = %v", ok, err)
		}
	}
	for in, want := range map[string]string{
		"8186":            `want host:port such as 127.0.0.1:1, got "8186"`,
		"127.0.0.1:99999": `invalid port "99999"`,
		"127.0.0.1:http":  `invalid port "http"`,
	} {
		if err := CheckListen(in, "127.0.0.1:1"); err == nil || err.Error() != want {
			t.Errorf("CheckListen(%q) = %v, want %q", in, err, want)
		}
	}
}
