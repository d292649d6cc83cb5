package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/agent/internal/quarantine"
)

// Quarantine bounds. An input can produce garbage far faster than an
// fsync'd store takes it, and a few hundred samples tell an installer as
// much as a million: beyond quarantineRate payloads a second per input
// (after a burst of quarantineBurst) payloads are counted as skipped and
// not stored. The store itself keeps the newest quarantine.DefaultMaxEntries
// entries and quarantine.DefaultMaxBytes bytes.
const (
	quarantineRate  = 50
	quarantineBurst = 200
	quarantineLog   = 10 * time.Second // one log line per input per period
)

// ErrNoQuarantine is returned by the accumulator's Quarantine when the
// store could not be opened (the reason was logged at start).
var ErrNoQuarantine = errors.New("the quarantine store is not open")

// openQuarantine opens <dataDir>/quarantine.db. A store that cannot be
// opened does not stop the agent: its readings matter more than samples of
// garbage. Payloads are then counted and logged but not kept.
func (a *Agent) openQuarantine(dataDir string) {
	path := filepath.Join(dataDir, quarantine.FileName)
	q, err := quarantine.Open(path, quarantine.Options{LockTimeout: time.Second})
	if err != nil && !errors.Is(err, quarantine.ErrLocked) {
		// A damaged file is moved aside, for inspection, and a new one
		// started: samples of garbage are not worth stopping for.
		aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr == nil {
			a.log.Error("the quarantine file could not be opened; moved aside, starting a new one", "path", path, "moved_to", aside, "err", err)
			q, err = quarantine.Open(path, quarantine.Options{LockTimeout: time.Second})
		}
	}
	if err != nil {
		a.quarErrors.Inc()
		a.log.Error("cannot open the quarantine; unreadable payloads will be counted but not kept", "path", path, "err", err)
		return
	}
	a.quar.Store(q)
}

func (a *Agent) closeQuarantine() error {
	q := a.quar.Swap(nil)
	if q == nil {
		return nil
	}
	return q.Close()
}

// quarantineLimiter is one input's token bucket and log rate limit.
type quarantineLimiter struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	lastLog    time.Time
	suppressed int // log lines not written since lastLog

	stored  *metrics.Counter
	skipped *metrics.Counter
}

func newQuarantineLimiter(set *metrics.Set, path, typ string) quarantineLimiter {
	l := fmt.Sprintf(`{input=%q,type=%q}`, path, typ)
	return quarantineLimiter{
		tokens:  quarantineBurst,
		stored:  set.GetOrCreateCounter("citysense_agent_quarantined_payloads_total" + l),
		skipped: set.GetOrCreateCounter("citysense_agent_quarantine_skipped_total" + l),
	}
}

// take reports whether a payload may be stored now, and whether a log line
// may be written (with the number suppressed since the last one).
func (q *quarantineLimiter) take(now time.Time) (store, log bool, suppressed int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.last.IsZero() {
		q.tokens = min(quarantineBurst, q.tokens+now.Sub(q.last).Seconds()*quarantineRate)
	}
	q.last = now
	if q.tokens >= 1 {
		q.tokens--
		store = true
	}
	if now.Sub(q.lastLog) >= quarantineLog {
		log, suppressed = true, q.suppressed
		q.lastLog, q.suppressed = now, 0
	} else {
		q.suppressed++
	}
	return store, log, suppressed
}

// Quarantine keeps an unreadable payload in the agent's quarantine store.
// It implements protocols.Quarantiner for every input.
func (acc *accumulator) Quarantine(_ context.Context, source string, raw []byte, reason error) error {
	a, lim := acc.a, &acc.in.quar
	store, logIt, suppressed := lim.take(time.Now())
	msg := ""
	if reason != nil {
		msg = reason.Error()
	}
	q := a.quar.Load()
	var id uint64
	var err error
	switch {
	case !store:
		lim.skipped.Inc()
	case q == nil:
		lim.skipped.Inc()
		err = ErrNoQuarantine
	default:
		var evicted int
		id, evicted, err = q.Add(quarantine.Entry{Input: acc.in.cfg.Path, Source: source, Reason: msg, Size: len(raw), Raw: raw})
		if err != nil {
			a.quarErrors.Inc()
			lim.skipped.Inc()
		} else {
			lim.stored.Inc()
			a.quarEvicted.Add(evicted)
		}
	}
	if logIt {
		args := []any{"input", acc.in.cfg.Path, "source", source, "bytes", len(raw), "reason", msg}
		if id > 0 {
			args = append(args, "quarantine_id", id)
		} else {
			args = append(args, "kept", false)
		}
		if suppressed > 0 {
			args = append(args, "suppressed", suppressed)
		}
		if err != nil {
			args = append(args, "err", err)
		}
		a.log.Warn("unreadable payload quarantined", args...)
	}
	return err
}

// quarantineRoutes serves the quarantine to `citysense-agent quarantine`
// while the agent holds the store's lock. Payloads can hold anything a
// device sent, so the routes answer loopback clients only, whatever
// agent.http listens on.
//
//	GET    /quarantine            the entries, without their bytes
//	GET    /quarantine/{id}       one entry with its bytes (base64 in JSON)
//	DELETE /quarantine[?before=T] purge (T: RFC 3339), answers {"purged":n}
func (a *Agent) quarantineRoutes(mux *http.ServeMux) {
	guard := func(h func(http.ResponseWriter, *http.Request, *quarantine.Store)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				http.Error(w, "the quarantine is served to loopback clients only", http.StatusForbidden)
				return
			}
			q := a.quar.Load()
			if q == nil {
				http.Error(w, ErrNoQuarantine.Error(), http.StatusServiceUnavailable)
				return
			}
			h(w, r, q)
		}
	}
	mux.HandleFunc("GET /quarantine", guard(func(w http.ResponseWriter, _ *http.Request, q *quarantine.Store) {
		list, err := q.List()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		st, _ := q.Stats()
		writeJSON(w, QuarantineList{Path: q.Path(), Stats: st, Entries: list})
	}))
	mux.HandleFunc("GET /quarantine/{id}", guard(func(w http.ResponseWriter, r *http.Request, q *quarantine.Store) {
		id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
		if err != nil {
			http.Error(w, "bad id "+strconv.Quote(r.PathValue("id")), http.StatusBadRequest)
			return
		}
		e, err := q.Get(id)
		if errors.Is(err, quarantine.ErrNotFound) {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, e)
	}))
	mux.HandleFunc("DELETE /quarantine", guard(func(w http.ResponseWriter, r *http.Request, q *quarantine.Store) {
		var before time.Time
		if s := r.URL.Query().Get("before"); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				http.Error(w, "before: "+err.Error(), http.StatusBadRequest)
				return
			}
			before = t
		}
		n, err := q.Purge(before)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]int{"purged": n})
	}))
}

// QuarantineList is the answer of GET /quarantine.
type QuarantineList struct {
	Path    string             `json:"path"`
	Stats   quarantine.Stats   `json:"stats"`
	Entries []quarantine.Entry `json:"entries"`
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
