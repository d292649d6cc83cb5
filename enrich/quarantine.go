package enrich

import "github.com/citysense/citysense/protocols"

// Quarantine receives the points a stage removes from a batch, with the
// reason, so that nothing is lost silently: the collector keeps them in a
// bounded quarantine for inspection. Quarantine is called from Enrich, on the
// ingest path: it must be safe for concurrent use, must not block on I/O and
// takes ownership of p.
type Quarantine interface {
	Quarantine(stage string, p protocols.Point, reason string)
}

// QuarantineFunc adapts a function to a Quarantine.
type QuarantineFunc func(stage string, p protocols.Point, reason string)

// Quarantine calls f.
func (f QuarantineFunc) Quarantine(stage string, p protocols.Point, reason string) {
	f(stage, p, reason)
}

var _ Quarantine = QuarantineFunc(nil)
