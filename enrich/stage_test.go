package enrich

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

// testStations is a fixed Stations for tests.
type testStations map[string]Station

func (s testStations) Get(id string) (Station, bool) { st, ok := s[id]; return st, ok }
func (s testStations) All() []Station {
	var out []Station
	for _, st := range s {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Station) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// srcStage provides stations; depStage records what Build handed it.
type srcStage struct {
	Count int `yaml:"count"`
	name  string
}

func (s *srcStage) Name() string                                          { return s.name }
func (s *srcStage) Enrich(p []protocols.Point) ([]protocols.Point, error) { return p, nil }
func (s *srcStage) Stations() Stations                                    { return testStations{"a": {ID: "a", Public: true}} }
func (s *srcStage) Init(env Env) error {
	s.name = env.Name
	if s.Count < 0 {
		return confx.Problem{Path: "count", Msg: "must not be negative"}
	}
	return nil
}

type depStage struct {
	Need bool `yaml:"need"`
	name string
	env  Env
}

func (d *depStage) Name() string                                          { return d.name }
func (d *depStage) Enrich(p []protocols.Point) ([]protocols.Point, error) { return p, nil }
func (d *depStage) Init(env Env) error {
	d.name, d.env = env.Name, env
	if d.Need && env.Stations == nil {
		return errors.New("needs stations")
	}
	return nil
}

func init() {
	Register("test-src", func() Stage { return &srcStage{} })
	Register("test-dep", func() Stage { return &depStage{} })
}

func build(t *testing.T, src string, env Env) (*Chain, error) {
	t.Helper()
	var cfg struct {
		Enrich []yaml.Node `yaml:"enrich"`
	}
	doc, err := confx.Load("c.yaml", []byte(src), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	return Build(doc, cfg.Enrich, "enrich", env)
}

func TestBuild_Build_StationsFlowToLaterStages(t *testing.T) {
	c, err := build(t, `
enrich:
  - type: test-dep
    name: before
  - type: test-src
  - type: test-dep
    need: true
`, Env{Dir: "/etc/cs"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Names(), ","); got != "before,test-src,test-dep" {
		t.Fatalf("names = %s", got)
	}
	before, _ := Find[*depStage](c)
	if before.env.Stations != nil || before.env.Dir != "/etc/cs" || before.env.Log == nil {
		t.Fatalf("first stage env = %+v", before.env)
	}
	after := c.stages[2].(*depStage)
	if _, ok := after.env.Stations.Get("a"); !ok {
		t.Fatal("stage after the station source did not get its stations")
	}
	if _, ok := c.Stations().Get("a"); !ok {
		t.Fatal("chain does not expose its stations")
	}
}

func TestBuild_Build_ReportsEveryProblem(t *testing.T) {
	_, err := build(t, `
enrich:
  - type: nope
  - name: x
  - just a string
  - type: test-src
    count: -1
  - type: test-src
    colour: red
  - type: test-dep
    need: true
    name: bad name
`, Env{})
	var probs confx.Problems
	if !errors.As(err, &probs) {
		t.Fatalf("err = %v, want confx.Problems", err)
	}
	want := []string{
		`c.yaml:3: enrich[0].type: unknown stage type "nope"`,
		`c.yaml:4: enrich[1]: missing type`,
		`c.yaml:5: enrich[2]: want a mapping`,
		`c.yaml:7: enrich[3].count: must not be negative`,
		`c.yaml:8: enrich[4]: a stage named "test-src" appears twice`,
		`c.yaml:9: enrich[4].colour: unknown key "colour"`,
		`c.yaml:12: enrich[5].name: "bad name"`,
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, got)
		}
	}
	if len(probs) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(probs), len(want), got)
	}
}

func TestBuild_Build_DuplicateNamesAndMissingDependency(t *testing.T) {
	_, err := build(t, `
enrich:
  - type: test-dep
    need: true
  - type: test-src
  - type: test-src
`, Env{})
	got := fmt2(err)
	for _, w := range []string{`c.yaml:3: enrich[0]: needs stations`, `c.yaml:6: enrich[2]: a stage named "test-src" appears twice`} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, got)
		}
	}
}

func fmt2(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestRegister_Register_PanicsOnMisuse(t *testing.T) {
	for name, f := range map[string]func(){
		"empty":     func() { Register("", func() Stage { return nil }) },
		"nil":       func() { Register("x-nil", nil) },
		"duplicate": func() { Register("test-src", func() Stage { return &srcStage{} }) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
	if !slices.Contains(Types(), "test-src") {
		t.Fatalf("types = %v", Types())
	}
}

type locator struct{}

func (locator) Name() string                                          { return "loc" }
func (locator) Enrich(p []protocols.Point) ([]protocols.Point, error) { return p, nil }
func (locator) PublicLocation(st Station) (float64, float64)          { return 1, 2 }

func TestChain_PublicLocation(t *testing.T) {
	pub := Station{ID: "p", Lat: 48.1, Lon: 16.2, Located: true, Public: true}
	priv := Station{ID: "q", Lat: 48.1, Lon: 16.2, Located: true}
	mobile := Station{ID: "m", Public: true}
	plain, _ := NewChain()
	withLoc, _ := NewChain(locator{})
	for _, tc := range []struct {
		name     string
		c        *Chain
		st       Station
		lat, lon float64
		ok       bool
	}{
		{"public without privacy stage", plain, pub, 48.1, 16.2, true},
		{"private without privacy stage is withheld", plain, priv, 0, 0, false},
		{"mobile has no location", plain, mobile, 0, 0, false},
		{"privacy stage decides", withLoc, priv, 1, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lat, lon, ok := tc.c.PublicLocation(tc.st)
			if lat != tc.lat || lon != tc.lon || ok != tc.ok {
				t.Fatalf("got %v,%v,%v want %v,%v,%v", lat, lon, ok, tc.lat, tc.lon, tc.ok)
			}
		})
	}
}

func TestEnv_Resolve(t *testing.T) {
	e := Env{Dir: "/etc/cs"}
	for in, want := range map[string]string{"s.yaml": "/etc/cs/s.yaml", "/abs/s.yaml": "/abs/s.yaml", "": ""} {
		if got := e.Resolve(in); got != want {
			t.Errorf("Resolve(%q) = %q, want %q", in, got, want)
		}
	}
}
