package all_test

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/internal/confx"
)

// TestSampleConfigs builds every stage's documented example against the
// demo files, so that the samples cannot drift from the code.
func TestSampleConfigs(t *testing.T) {
	var all strings.Builder
	for _, typ := range enrich.Types() {
		f, _ := enrich.Lookup(typ)
		s, ok := f().(interface{ SampleConfig() string })
		if !ok {
			t.Errorf("stage %q has no SampleConfig", typ)
			continue
		}
		all.WriteString(s.SampleConfig())
	}
	// privacy needs the registry before it; order the list as a collector
	// would.
	src := all.String()
	var nodes []yaml.Node
	doc, err := confx.Load("samples.yaml", []byte("enrich:\n"+indent(src)), &struct {
		Enrich *[]yaml.Node `yaml:"enrich"`
	}{&nodes})
	if err != nil {
		t.Fatal(err)
	}
	order := map[string]int{"schema": 0, "registry": 1, "geo": 2, "units": 3, "aqi": 4, "quality": 5, "privacy": 6}
	sorted := make([]yaml.Node, len(order))
	for _, n := range nodes {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "type" {
				sorted[order[n.Content[i+1].Value]] = n
			}
		}
	}
	c, err := enrich.Build(doc, sorted, "enrich", enrich.Env{Dir: "../../configs/demo"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Names(), ","); got != "schema,registry,geo,units,aqi,quality,privacy" {
		t.Fatalf("stages %s", got)
	}
}

func indent(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "\n")
}
