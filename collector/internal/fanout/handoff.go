package fanout

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/protocols"
)

// handOffBatch is how many points HandOff gives w at a time.
const handOffBatch = 10_000

// HandOff copies the raw points of partition p with time < before (ns)
// from node from, which holds the partition, into w — a new owner's store
// — in batches of about 10,000 points, and calls progress with the total
// written after each batch. It returns how many points it wrote. Each
// sample becomes one point with the series' measurement and tags and one
// field named as the series' field; writing them again is harmless, since
// the store's writes are idempotent, so an interrupted hand-off is simply
// run again.
//
// The export is streamed: neither side holds more than a batch. It carries
// raw points only. Rollups of days whose raw points retention already
// dropped on the old owner (the 1m and 1h tiers beyond the raw horizon)
// are not carried, so the new owner answers hourly or minutely queries
// over that older range with nothing until it has aged in data of its own;
// the old owner still holds them as long as it keeps its copy. Stations'
// positions and last-seen times follow from the points written.
//
// w's slices are not reused after Write returns: each batch is fresh.
func HandOff(ctx context.Context, o Options, from Node, p int, before int64, w interface {
	Write([]protocols.Point) (int, error)
}, progress func(points int64)) (int64, error) {
	s := &Source{o: o, client: o.Client, token: token(o.Secret)}
	if s.client == nil {
		s.client = DefaultClient()
	}
	q := url.Values{"partition": {strconv.Itoa(p)}, "before": {strconv.FormatInt(before, 10)}}
	var (
		series []store.SeriesKey
		batch  []protocols.Point
		fields []protocols.Field
		total  int64
		buf    []store.Sample
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := w.Write(batch); err != nil {
			return &callerError{fmt.Errorf("hand-off of partition %d: writing %d points: %w", p, len(batch), err)}
		}
		total += int64(len(batch))
		batch, fields = nil, nil
		if progress != nil {
			progress(total)
		}
		return nil
	}
	err := s.call(ctx, from, http.MethodGet, "export?"+q.Encode(), nil, func(typ byte, pl []byte) error {
		switch typ {
		case frameRef:
			k, err := decodeRef(pl)
			series = append(series, k)
			return err
		case frameSamples:
			i, smp, err := decodeSamples(pl, buf)
			buf = smp
			if err != nil {
				return err
			}
			if i >= len(series) {
				return fmt.Errorf("series %d of %d", i, len(series))
			}
			k := &series[i]
			for _, x := range smp {
				if batch == nil {
					batch = make([]protocols.Point, 0, handOffBatch)
					fields = make([]protocols.Field, 0, handOffBatch)
				}
				fields = append(fields, protocols.Field{Key: k.Field, Value: x.Value})
				batch = append(batch, protocols.Point{Measurement: k.Measurement, Tags: k.Tags, Fields: fields[len(fields)-1 : len(fields) : len(fields)], Time: x.Time})
				if len(batch) == handOffBatch {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			return nil
		}
		return fmt.Errorf("unexpected frame %q", typ)
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return total, fmt.Errorf("hand-off of partition %d from %s: %w", p, from.Name, unwrapCaller(err))
	}
	return total, nil
}
