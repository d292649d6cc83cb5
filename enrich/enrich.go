package enrich

import (
	"errors"
	"fmt"

	"github.com/citysense/citysense/protocols"
)

// Enricher is one stage. Enrich may change points in place, append derived
// points, or mark points it rejects; it returns the batch to pass on. It must
// be safe for concurrent use by several ingest workers.
type Enricher interface {
	Name() string
	Enrich(pts []protocols.Point) ([]protocols.Point, error)
}

// Chain applies stages in order. The zero Chain passes batches through.
type Chain struct {
	stages []Enricher
}

// NewChain builds a chain; a nil stage or two stages with one name is a
// configuration error reported with the others.
func NewChain(stages ...Enricher) (*Chain, error) {
	var errs []error
	seen := map[string]bool{}
	for i, s := range stages {
		if s == nil {
			errs = append(errs, fmt.Errorf("stage %d is nil", i))
			continue
		}
		if seen[s.Name()] {
			errs = append(errs, fmt.Errorf("stage %d: %q appears twice", i, s.Name()))
		}
		seen[s.Name()] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Chain{stages: stages}, nil
}

// Enrich runs the batch through every stage. A stage error stops the chain
// and names the stage, so the caller can keep the raw batch for a retry
// instead of storing half-enriched data.
func (c *Chain) Enrich(pts []protocols.Point) ([]protocols.Point, error) {
	if c == nil {
		return pts, nil
	}
	var err error
	for _, s := range c.stages {
		if pts, err = s.Enrich(pts); err != nil {
			return nil, fmt.Errorf("enrich stage %q: %w", s.Name(), err)
		}
	}
	return pts, nil
}

// Names lists the stages in order, for logs and /status.
func (c *Chain) Names() []string {
	if c == nil {
		return nil
	}
	out := make([]string, len(c.stages))
	for i, s := range c.stages {
		out[i] = s.Name()
	}
	return out
}

// Func adapts a function to an Enricher, for small stages and tests.
type Func struct {
	N string
	F func([]protocols.Point) ([]protocols.Point, error)
}

// Name returns the stage name.
func (f Func) Name() string { return f.N }

// Enrich calls the function.
func (f Func) Enrich(pts []protocols.Point) ([]protocols.Point, error) { return f.F(pts) }

// Interface guards.
var (
	_ Enricher = Func{}
	_ Enricher = (*Chain)(nil)
)

// Name makes a Chain usable as one stage of another.
func (c *Chain) Name() string { return "chain" }
