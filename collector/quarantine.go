package collector

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citysense/citysense/collector/internal/bus"
	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/protocols"
)

// quarantine keeps the points enrichment refuses in the bounded
// CS_QUARANTINE stream, one message per point with the stage and reason in
// headers, so an operator can see what was refused and why (`nats stream
// view CS_QUARANTINE`, or a later admin endpoint). Enrich calls it on the
// ingest hot path, so it publishes asynchronously and never blocks; if the
// stream cannot take the point, the refusal is still counted and logged.
type quarantine struct {
	js    atomic.Pointer[jetstream.JetStream]
	log   *slog.Logger
	count *metrics.Counter
	lost  *metrics.Counter

	mu      sync.Mutex
	nextLog time.Time
	skipped int
}

func newQuarantine(log *slog.Logger, set *metrics.Set) *quarantine {
	return &quarantine{
		log:   log.With("component", "quarantine"),
		count: set.NewCounter("citysense_quarantine_points_total"),
		lost:  set.NewCounter("citysense_quarantine_publish_errors_total"),
	}
}

// attach gives the quarantine its stream once the bus runs.
func (q *quarantine) attach(js jetstream.JetStream) { q.js.Store(&js) }

// Quarantine implements enrich.Quarantine.
func (q *quarantine) Quarantine(stage string, p protocols.Point, reason string) {
	q.count.Inc()
	q.logLimited(stage, &p, reason)
	js := q.js.Load()
	if js == nil {
		q.lost.Inc()
		return
	}
	body, err := protocols.AppendLines(nil, []protocols.Point{p}, protocols.Nanosecond)
	if err != nil {
		q.lost.Inc()
		return
	}
	msg := nats.NewMsg(strings.TrimSuffix(bus.SubjectsQuarantine, ">") + subjectToken(stage))
	msg.Data = body
	msg.Header.Set("Cs-Stage", stage)
	msg.Header.Set("Cs-Reason", reason)
	if _, err := (*js).PublishMsgAsync(msg); err != nil {
		q.lost.Inc()
	}
}

func (q *quarantine) logLimited(stage string, p *protocols.Point, reason string) {
	q.mu.Lock()
	now := time.Now()
	if now.Before(q.nextLog) {
		q.skipped++
		q.mu.Unlock()
		return
	}
	skipped := q.skipped
	q.skipped, q.nextLog = 0, now.Add(10*time.Second)
	q.mu.Unlock()
	station, _ := p.Tag("station")
	q.log.Warn("point quarantined", "stage", stage, "measurement", p.Measurement, "station", station,
		"reason", reason, "suppressed", skipped)
}

// subjectToken makes a stage name safe as one NATS subject token.
func subjectToken(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, s)
}

var _ enrich.Quarantine = (*quarantine)(nil)
