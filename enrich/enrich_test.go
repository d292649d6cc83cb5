package enrich

import (
	"errors"
	"strings"
	"testing"

	"github.com/citysense/citysense/protocols"
)

func TestChain_Enrich_InOrder(t *testing.T) {
	tag := func(name, k, v string) Enricher {
		return Func{N: name, F: func(pts []protocols.Point) ([]protocols.Point, error) {
			for i := range pts {
				old, _ := pts[i].Tag(k)
				pts[i].SetTag(k, old+v)
			}
			return pts, nil
		}}
	}
	c, err := NewChain(tag("a", "trail", "a"), tag("b", "trail", "b"))
	if err != nil {
		t.Fatal(err)
	}
	in := []protocols.Point{{Measurement: "m", Fields: []protocols.Field{{Key: "f", Value: protocols.Float(1)}}}}
	out, err := c.Enrich(in)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := out[0].Tag("trail"); v != "ab" {
		t.Fatalf("trail = %q, want ab", v)
	}
	if got := strings.Join(c.Names(), ","); got != "a,b" {
		t.Fatalf("names = %q", got)
	}
}

func TestChain_Enrich_ErrorNamesStage(t *testing.T) {
	boom := errors.New("boom")
	c, _ := NewChain(Func{N: "geo", F: func([]protocols.Point) ([]protocols.Point, error) { return nil, boom }})
	_, err := c.Enrich(nil)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"geo"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestNewChain_RejectsNilAndDuplicates(t *testing.T) {
	f := Func{N: "x", F: func(p []protocols.Point) ([]protocols.Point, error) { return p, nil }}
	_, err := NewChain(f, nil, f)
	if err == nil || !strings.Contains(err.Error(), "stage 1 is nil") || !strings.Contains(err.Error(), `"x" appears twice`) {
		t.Fatalf("err = %v", err)
	}
	var nilChain *Chain
	if out, err := nilChain.Enrich([]protocols.Point{{}}); err != nil || len(out) != 1 {
		t.Fatalf("nil chain: %v %v", out, err)
	}
}
