package api

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/protocols"
)

// LiveSource delivers the enriched points as the collector publishes them
// (the collector subscribes to cs.series.> on its bus).
type LiveSource interface {
	// Subscribe calls fn with each batch of enriched points until cancel
	// is called. fn is called from one goroutine at a time, must not block
	// and must not keep pts after it returns.
	Subscribe(fn func(pts []protocols.Point)) (cancel func(), err error)
}

// Live stream limits.
const (
	DefaultMaxLiveClients = 500
	DefaultLiveHeartbeat  = 15 * time.Second
	// liveQueue is how many events a client may be behind before it is
	// dropped as too slow.
	liveQueue = 1024
	// liveWriteWait bounds one write to a client (the server's
	// WriteTimeout would otherwise end every stream after two minutes).
	liveWriteWait = 30 * time.Second
)

var liveParams = map[string]bool{"district": true, "station": true, "field": true, "measurement": true}

// liveFilter selects the points and fields a client wants; an empty list
// selects everything.
type liveFilter struct {
	districts, stations, fields, measurements []string
}

// liveClient is one open stream.
type liveClient struct {
	f    liveFilter
	ch   chan []byte   // encoded events
	gone chan struct{} // closed when the hub dropped the client
}

// liveHub fans the bus's points out to the open streams. It subscribes
// while at least one client is connected.
type liveHub struct {
	src       LiveSource
	max       int
	heartbeat time.Duration

	mu      sync.Mutex
	clients map[*liveClient]struct{}
	cancel  func()
	seq     uint64

	connected *metrics.Counter
	dropped   *metrics.Counter
	refused   *metrics.Counter
	events    *metrics.Counter
}

func newLiveHub(src LiveSource, max int, heartbeat time.Duration, set *metrics.Set) *liveHub {
	h := &liveHub{src: src, max: max, heartbeat: heartbeat, clients: map[*liveClient]struct{}{},
		connected: set.NewCounter("citysense_api_live_connections_total"),
		dropped:   set.NewCounter("citysense_api_live_dropped_total"),
		refused:   set.NewCounter("citysense_api_live_refused_total"),
		events:    set.NewCounter("citysense_api_live_events_total"),
	}
	set.NewGauge("citysense_api_live_clients", func() float64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return float64(len(h.clients))
	})
	return h
}

// errHubFull is returned by join when max clients are connected.
type errHubFull struct{}

func (errHubFull) Error() string { return "too many live clients" }

func (h *liveHub) join(f liveFilter) (*liveClient, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) >= h.max {
		h.refused.Inc()
		return nil, errHubFull{}
	}
	if h.cancel == nil {
		cancel, err := h.src.Subscribe(h.publish)
		if err != nil {
			return nil, err
		}
		h.cancel = cancel
	}
	c := &liveClient{f: f, ch: make(chan []byte, liveQueue), gone: make(chan struct{})}
	h.clients[c] = struct{}{}
	h.connected.Inc()
	return c, nil
}

func (h *liveHub) leave(c *liveClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, c)
	if len(h.clients) == 0 && h.cancel != nil {
		h.cancel()
		h.cancel = nil
	}
}

// publish encodes each point once per interested client and queues it;
// a client whose queue is full is dropped, never waited for.
func (h *liveHub) publish(pts []protocols.Point) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var buf []byte
	for i := range pts {
		p := &pts[i]
		h.seq++
		for c := range h.clients {
			buf = c.f.appendEvent(buf[:0], p, h.seq)
			if buf == nil {
				continue
			}
			select {
			case c.ch <- slices.Clone(buf):
				h.events.Inc()
			default:
				delete(h.clients, c)
				close(c.gone)
				h.dropped.Inc()
			}
		}
	}
	if len(h.clients) == 0 && h.cancel != nil {
		h.cancel()
		h.cancel = nil
	}
}

// appendEvent writes p as one SSE event when the filter selects it, or
// returns nil.
func (f *liveFilter) appendEvent(b []byte, p *protocols.Point, seq uint64) []byte {
	if len(f.measurements) > 0 && !slices.Contains(f.measurements, p.Measurement) {
		return nil
	}
	district, _ := p.Tag("district")
	if len(f.districts) > 0 && !slices.Contains(f.districts, district) {
		return nil
	}
	station, _ := p.Tag("station")
	if len(f.stations) > 0 && !slices.Contains(f.stations, station) {
		return nil
	}
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, "\nevent: reading\ndata: {\"time\":"...)
	b = appendUnixSeconds(b, p.Time)
	b = append(b, `,"measurement":`...)
	b = appendString(b, p.Measurement)
	b = append(b, `,"tags":{`...)
	for i, t := range p.Tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, t.Key)
		b = append(b, ':')
		b = appendString(b, t.Value)
	}
	b = append(b, `},"fields":{`...)
	n := 0
	for _, fl := range p.Fields {
		if len(f.fields) > 0 && !slices.Contains(f.fields, fl.Key) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendString(b, fl.Key)
		b = append(b, ':')
		b = appendValue(b, fl.Value)
	}
	if n == 0 {
		return nil
	}
	return append(b, "}}\n\n"...)
}

// live answers GET /api/v1/live: a Server-Sent Events stream of the
// readings the collector stores from now on, one event per point,
// filtered by district=, station=, measurement= and field= (each a
// comma-separated list). A comment line every heartbeat keeps proxies
// from closing an idle stream.
func (a *API) live(w http.ResponseWriter, r *http.Request) {
	p, err := params(r, liveParams)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var f liveFilter
	for name, dst := range map[string]*[]string{"district": &f.districts, "station": &f.stations, "field": &f.fields, "measurement": &f.measurements} {
		if v, ok := p[name]; ok {
			if *dst, err = list(name, v); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
	}
	if a.hub == nil {
		writeError(w, http.StatusServiceUnavailable, "the live stream is not available on this node")
		return
	}
	c, err := a.hub.join(f)
	if err != nil {
		if _, full := err.(errHubFull); full {
			w.Header().Set("Retry-After", "30")
			writeError(w, http.StatusServiceUnavailable, "too many live clients; retry later")
			return
		}
		a.internalError(w, "live", err)
		return
	}
	defer a.hub.leave(c)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	write := func(b []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(liveWriteWait))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 5000\n: connected\n\n")) {
		return
	}
	tick := time.NewTicker(a.hub.heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-a.liveStop:
			return
		case <-c.gone:
			write([]byte(": dropped: the client read too slowly\n\n"))
			return
		case <-tick.C:
			if !write([]byte(": heartbeat\n\n")) {
				return
			}
		case ev := <-c.ch:
			// Write what else is queued in the same flush.
			buf := ev
			for more := true; more && len(buf) < 64<<10; {
				select {
				case ev := <-c.ch:
					buf = append(buf, ev...)
				default:
					more = false
				}
			}
			if !write(buf) {
				return
			}
		}
	}
}
