package api

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimit bounds how fast one client address may call the public API:
// a token bucket of Burst requests refilled at PerSecond.
type RateLimit struct {
	PerSecond float64
	Burst     int
	// MaxClients bounds the addresses tracked at once; when full, the
	// least recently seen are forgotten (they start again with a full
	// bucket, which errs on the side of serving).
	MaxClients int
}

// DefaultRateLimit lets a portal page load (a dozen requests at once) and
// a script poll every few seconds, and slows a scraper down.
func DefaultRateLimit() RateLimit { return RateLimit{PerSecond: 20, Burst: 60, MaxClients: 100_000} }

// publicTimeout bounds the work of one public request other than the live
// stream; the series queries have their own (queryTimeout) inside it.
const publicTimeout = 45 * time.Second

// public reports whether path is part of the public read API, which gets
// CORS, rate limiting and the request time limit. The write endpoint under
// /api/v2/ and the portal's pages are not.
func public(path string) bool {
	return (strings.HasPrefix(path, "/api/") && !strings.HasPrefix(path, "/api/v2/")) || strings.HasPrefix(path, "/sta/")
}

// limiter is a per-address token bucket table.
type limiter struct {
	lim RateLimit

	mu      sync.Mutex
	clients map[string]*client
	now     func() time.Time
}

type client struct {
	l    *rate.Limiter
	seen time.Time
}

func newLimiter(l RateLimit) *limiter {
	if l.MaxClients <= 0 {
		l.MaxClients = DefaultRateLimit().MaxClients
	}
	return &limiter{lim: l, clients: map[string]*client{}, now: time.Now}
}

// allow takes a token for addr; when none is left it returns how long
// until one is.
func (lm *limiter) allow(addr string) (bool, time.Duration) {
	now := lm.now()
	lm.mu.Lock()
	defer lm.mu.Unlock()
	c, ok := lm.clients[addr]
	if !ok {
		if len(lm.clients) >= lm.lim.MaxClients {
			lm.evict(now)
		}
		c = &client{l: rate.NewLimiter(rate.Limit(lm.lim.PerSecond), lm.lim.Burst)}
		lm.clients[addr] = c
	}
	c.seen = now
	r := c.l.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // the request is refused, so it takes no token
		return false, d
	}
	return true, 0
}

// evict forgets the clients whose buckets are full again (idle long
// enough) and, if the table is still full, an arbitrary tenth (map order):
// they merely start again with a full bucket. mu is held.
func (lm *limiter) evict(now time.Time) {
	full := time.Duration(float64(lm.lim.Burst) / lm.lim.PerSecond * float64(time.Second))
	for k, c := range lm.clients {
		if now.Sub(c.seen) > full {
			delete(lm.clients, k)
		}
	}
	n := len(lm.clients) - lm.lim.MaxClients*9/10
	for k := range lm.clients {
		if n <= 0 {
			break
		}
		delete(lm.clients, k)
		n--
	}
}

// clientAddr is the address a request is limited by: the peer's IP (its
// port left out, so one client's connections share a bucket). A request
// from loopback is a local tool (exempt, "") or comes through a reverse
// proxy on the same host, which names the real client last in
// X-Forwarded-For.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		xff := r.Header.Values("X-Forwarded-For")
		if len(xff) == 0 {
			return ""
		}
		last := xff[len(xff)-1]
		if i := strings.LastIndexByte(last, ','); i >= 0 {
			last = last[i+1:]
		}
		return strings.TrimSpace(last)
	}
	return host
}

// servePublic applies CORS, the rate limit and the time limit to a public
// request; it returns false when it answered the request itself.
func (a *API) servePublic(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	// Anyone may read the public API from a page on any origin; it carries
	// no credentials, so the wildcard is safe.
	h["Access-Control-Allow-Origin"] = hdrAnyOrigin
	h["Access-Control-Expose-Headers"] = hdrExposed
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "If-None-Match, Accept, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "86400")
		h.Set("Cache-Control", "public, max-age=86400")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	if addr := clientAddr(r); a.limiter != nil && addr != "" {
		if ok, wait := a.limiter.allow(addr); !ok {
			secs := int(math.Ceil(wait.Seconds()))
			h.Set("Retry-After", strconv.Itoa(max(secs, 1)))
			a.rateLimited.Inc()
			writeError(w, http.StatusTooManyRequests, "too many requests; retry after "+strconv.Itoa(max(secs, 1))+" s")
			return false
		}
	}
	return true
}
