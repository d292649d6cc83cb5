package protocols

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// What the device inputs share: static tags from their configuration, a
// request's precision, line protocol with those tags, their counters, and
// warnings about bad device data that must not flood the log.

// SortedTags turns a configuration's tag map into a tag list sorted by key.
// An empty key is an error; the valid tags are returned with it.
func SortedTags(m map[string]string) ([]Tag, error) {
	var err error
	tags := make([]Tag, 0, len(m))
	for k, v := range m {
		if k == "" {
			err = errors.New("empty tag key")
			continue
		}
		tags = append(tags, Tag{Key: k, Value: v})
	}
	slices.SortFunc(tags, func(a, b Tag) int { return strings.Compare(a.Key, b.Key) })
	return tags, err
}

// AddMissingTags sets each of tags on p unless p carries that key already:
// what the device says wins over the configuration.
func AddMissingTags(p *Point, tags []Tag) {
	for _, t := range tags {
		if _, ok := p.Tag(t.Key); !ok {
			p.SetTag(t.Key, t.Value)
		}
	}
}

// LogLimiter writes at most one warning per period (a second when zero) and
// adds to the next one how many it held back ("suppressed"), so that a
// device sending garbage many times a second costs one log line a second.
// The zero value is ready to use; it is safe for concurrent use.
type LogLimiter struct {
	Period time.Duration

	mu      sync.Mutex
	last    time.Time
	dropped int
}

// Warn logs msg with args at warning level on log, unless a warning went
// out less than a period ago.
func (l *LogLimiter) Warn(log *slog.Logger, msg string, args ...any) {
	period := l.Period
	if period <= 0 {
		period = time.Second
	}
	l.mu.Lock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < period {
		l.dropped++
		l.mu.Unlock()
		return
	}
	if l.dropped > 0 {
		args = append(args, "suppressed", l.dropped)
	}
	l.last, l.dropped = now, 0
	l.mu.Unlock()
	log.Warn(msg, args...)
}

// PrecisionOr parses a request's precision (a query parameter, say); an
// empty s gives def.
func PrecisionOr(s string, def Precision) (Precision, error) {
	if s == "" {
		return def, nil
	}
	return ParsePrecision(s)
}

// DecodeTagged is DecodeAll in precision prec with tags added to every
// point that lacks them. Like Decode it returns the valid points along with
// the error naming the bad lines.
func DecodeTagged(data []byte, prec Precision, tags []Tag) ([]Point, error) {
	var pts []Point
	err := Decode(data, DecodeOptions{Precision: prec}, func(p Point) error {
		AddMissingTags(&p, tags)
		pts = append(pts, p)
		return nil
	})
	return pts, err
}

// InputCounters returns a maker of the counters of one input instance:
// counter("points") is citysense_input_points_total{input="<typ>",
// <key>="<value>"} in set (a private set when set is nil, so that an input
// run without the agent still counts).
func InputCounters(set *metrics.Set, typ, key, value string) func(name string) *metrics.Counter {
	if set == nil {
		set = metrics.NewSet()
	}
	labels := fmt.Sprintf(`{input=%q,%s=%q}`, typ, key, value)
	return func(name string) *metrics.Counter {
		return set.GetOrCreateCounter("citysense_input_" + name + "_total" + labels)
	}
}
