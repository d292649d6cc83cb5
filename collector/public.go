package collector

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"

	"github.com/citysense/citysense/collector/internal/api"
	"github.com/citysense/citysense/collector/internal/bus"
	"github.com/citysense/citysense/collector/internal/wire"
	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/enrich/geo"
	"github.com/citysense/citysense/protocols"
)

// liveSource feeds the API's live stream: a core NATS subscription on the
// enriched subjects (cs.series.>), which sees every batch the series stage
// publishes to JetStream. It is best effort by design: a live view, not a
// delivery guarantee (that is the store's consumer).
type liveSource struct {
	nc  *nats.Conn
	log *slog.Logger
}

// maxLiveBatch bounds the decoded size of one batch the live stream reads.
const maxLiveBatch = 64 << 20

func (l liveSource) Subscribe(fn func(pts []protocols.Point)) (func(), error) {
	sub, err := l.nc.Subscribe(bus.SubjectSeries, func(m *nats.Msg) {
		data := m.Data
		if m.Header.Get("Content-Encoding") == "s2" {
			n, err := s2.DecodedLen(data)
			if err != nil || n > maxLiveBatch {
				l.log.Debug("live: undecodable batch", "subject", m.Subject, "err", err)
				return
			}
			if data, err = s2.Decode(nil, data); err != nil {
				l.log.Debug("live: undecodable batch", "subject", m.Subject, "err", err)
				return
			}
		}
		// The enrich stage publishes the collector's binary wire format;
		// line protocol is what older nodes published.
		var pts []protocols.Point
		var err error
		if wire.Is(data) {
			pts, err = wire.Decode(data, wire.Options{})
		} else {
			pts, err = protocols.DecodeAll(data, protocols.DecodeOptions{})
		}
		if len(pts) > 0 {
			fn(pts)
		}
		if err != nil {
			l.log.Debug("live: batch with bad lines", "subject", m.Subject, "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("live: subscribe %s: %w", bus.SubjectSeries, err)
	}
	// A slow consumer only loses live events; never let it grow the heap.
	sub.SetPendingLimits(10_000, 64<<20)
	return func() { sub.Unsubscribe() }, nil
}

// districtsFile returns the geo stage's districts GeoJSON and the property
// that names a district, or nil when the chain has no geo stage.
func districtsFile(c *enrich.Chain, dir string) ([]byte, string, error) {
	g, ok := enrich.Find[*geo.Geo](c)
	if !ok {
		return nil, "", nil
	}
	path := enrich.Env{Dir: dir}.Resolve(g.Districts)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read districts %q: %w", path, err)
	}
	return b, g.Property, nil
}

var _ api.LiveSource = liveSource{}
