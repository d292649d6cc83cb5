package process_test

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/citysense/citysense/agent/internal/process"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

// A processors list as agent.yaml declares it: check ranges, tag the site,
// fold into 1-minute windows.
func Example() {
	var cfg struct {
		Processors []yaml.Node `yaml:"processors"`
	}
	doc, err := confx.Load("agent.yaml", []byte(`processors:
  - {type: filter, range: {pm25: [0, 1000]}}
  - {type: tags, add: {site: depot-3}}
  - {type: aggregate, window: 1m, functions: [mean, max]}
`), &cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	now := time.Date(2025, 1, 1, 12, 0, 50, 0, time.UTC)
	chain, err := process.Build(doc, cfg.Processors, "processors", process.Env{Now: func() time.Time { return now }})
	if err != nil {
		fmt.Println(err)
		return
	}
	pts, _ := protocols.DecodeAll([]byte(`air,station=s1 pm25=12 1735732800
air,station=s1 pm25=5000 1735732810
air,station=s1 pm25=14 1735732820
air,station=s1 pm25=19 1735732840
`), protocols.DecodeOptions{Precision: protocols.Second})

	fmt.Println("passed on now:", len(chain.Process(pts)))
	fmt.Println("flush at:", chain.NextFlush().Format(time.TimeOnly))
	now = chain.NextFlush()
	out, _ := protocols.AppendLines(nil, chain.Flush(false), protocols.Second)
	fmt.Print(string(out))
	// Output:
	// passed on now: 0
	// flush at: 12:01:00
	// air,site=depot-3,station=s1 pm25_mean=15,pm25_max=19 1735732800
}
