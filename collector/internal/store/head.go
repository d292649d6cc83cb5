package store

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The head holds, per open window, each series' points in memory: nothing
// of it is on disk, and the stream it came from (JetStream CS_SERIES) is
// its write-ahead log. A window is written as a whole when it is due, and
// only then are the tickets of the Append calls that wrote into it
// released, so a message is acknowledged to the stream only once every
// point it carried is on disk.

// ticket tracks one Append call: the windows it wrote into that are not
// yet written.
type ticket struct {
	pending atomic.Int32
	fired   atomic.Bool
	done    func(error)
	wins    []*headWindow // windows counted in pending, during Append only (under head.mu)
}

func (tk *ticket) fire(err error) {
	if tk.done != nil && !tk.fired.Swap(true) {
		tk.done(err)
	}
}

type headSeries struct {
	gid uint32
	col headCol
}

type headWindow struct {
	start      int64
	seq        uint64 // unique per window object, never 0
	bySeries   map[uint32]*headSeries
	gids       map[uint32]struct{}
	tickets    []*ticket
	lastTicket *ticket
	first      time.Time // wall time of the first append, for MaxHold
	last       time.Time // of the latest append, for IdleFlush
	points     int
}

func (w *headWindow) addTicket(tk *ticket) {
	if tk == nil || tk.done == nil || w.lastTicket == tk {
		return
	}
	// An Append visits windows in point order and may come back to one;
	// a ticket must count each window once.
	if slices.Contains(tk.wins, w) {
		return
	}
	tk.wins = append(tk.wins, w)
	w.lastTicket = tk
	w.tickets = append(w.tickets, tk)
	tk.pending.Add(1)
}

// series returns the window's column of series id, creating it.
func (w *headWindow) series(h *head, id, gid uint32) *headSeries {
	hs := w.bySeries[id]
	if hs == nil {
		hs = &headSeries{gid: gid}
		// Sized like this series' last window: growing a column by
		// doubling cost more than everything else an append does.
		if n := h.hint[id]; n > 0 {
			hs.col.b = make([]byte, 0, n)
		}
		w.bySeries[id] = hs
		w.gids[gid] = struct{}{}
	}
	return hs
}

type head struct {
	mu       sync.Mutex
	windows  map[int64]*headWindow // open, by start
	flushing map[int64]*headWindow // being written; still visible to reads
	points   int                   // values in windows and flushing
	hwm      int64                 // newest point time seen
	seq      uint64                // of the last window made
	hint     map[uint32]int32      // packed bytes per series in its last written window
	oldest   int64                 // start of the oldest open window; maxTime when none
}

func (h *head) init() {
	h.windows = map[int64]*headWindow{}
	h.flushing = map[int64]*headWindow{}
	h.hint = map[uint32]int32{}
	h.hwm = minTime
	h.oldest = maxTime
}

// setOldest recomputes oldest after windows left. h.mu held.
func (h *head) setOldest() {
	h.oldest = maxTime
	for start := range h.windows {
		h.oldest = min(h.oldest, start)
	}
}

// window returns the open window starting at start, creating it. h.mu held.
func (h *head) window(start int64, now time.Time) *headWindow {
	w := h.windows[start]
	if w == nil {
		h.seq++
		w = &headWindow{start: start, seq: h.seq, bySeries: map[uint32]*headSeries{}, gids: map[uint32]struct{}{}, first: now, last: now}
		h.windows[start] = w
		h.oldest = min(h.oldest, start)
	}
	return w
}

// takeDue moves the windows to write from open to flushing: those due says
// are due, all of them when force, and the oldest ones beyond maxPoints.
func (h *head) takeDue(now time.Time, force bool, due func(w *headWindow, hwm int64) bool, maxPoints int) []*headWindow {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*headWindow
	remaining := h.points
	for _, w := range h.flushing {
		remaining -= w.points
	}
	for start, w := range h.windows {
		if force || due(w, h.hwm) {
			out = append(out, w)
			delete(h.windows, start)
			remaining -= w.points
		}
	}
	if remaining > maxPoints {
		starts := make([]int64, 0, len(h.windows))
		for start := range h.windows {
			starts = append(starts, start)
		}
		slices.Sort(starts)
		for _, start := range starts {
			if remaining <= maxPoints/2 {
				break
			}
			w := h.windows[start]
			out = append(out, w)
			delete(h.windows, start)
			remaining -= w.points
		}
	}
	h.setOldest()
	for _, w := range out {
		h.flushing[w.start] = w
		// A flushing window is never appended to: the writer and readers
		// unpack its columns, each into its own memory.
		for id, hs := range w.bySeries {
			if hs.col.plain == nil {
				h.hint[id] = int32(min(len(hs.col.b)+len(hs.col.b)/8+1, 1<<20))
			}
		}
	}
	slices.SortFunc(out, func(a, b *headWindow) int { return cmpInt(a.start, b.start) })
	return out
}

// giveBack returns a window that could not be written to the open ones,
// before any points that arrived for it meanwhile (they are newer).
func (h *head) giveBack(w *headWindow) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.flushing, w.start)
	if nw := h.windows[w.start]; nw != nil {
		for id, hs := range nw.bySeries {
			old := w.bySeries[id]
			if old == nil {
				w.bySeries[id] = hs
				w.gids[hs.gid] = struct{}{}
				continue
			}
			old.col.appendAll(&hs.col)
		}
		for _, tk := range nw.tickets {
			if !slices.Contains(w.tickets, tk) {
				w.tickets = append(w.tickets, tk)
			} else {
				tk.pending.Add(-1) // counted in both; now one window
			}
		}
		w.points += nw.points
		w.last = nw.last
	}
	w.lastTicket = nil
	h.windows[w.start] = w
	h.oldest = min(h.oldest, w.start)
}

// done forgets a written window and releases its tickets.
func (h *head) done(w *headWindow) {
	h.mu.Lock()
	delete(h.flushing, w.start)
	h.points -= w.points
	// The index's fieldRefs may still point at these series until their
	// next point: let them keep an empty column, not the window's data.
	for _, hs := range w.bySeries {
		hs.col = headCol{}
	}
	h.mu.Unlock()
	for _, tk := range w.tickets {
		if tk.pending.Add(-1) == 0 {
			tk.fire(nil)
		}
	}
}

// failAll fires every ticket still held with err; the store is closing.
func (h *head) failAll(err error) {
	h.mu.Lock()
	var tks []*ticket
	for _, m := range []map[int64]*headWindow{h.windows, h.flushing} {
		for _, w := range m {
			tks = append(tks, w.tickets...)
		}
	}
	h.mu.Unlock()
	for _, tk := range tks {
		tk.fire(err)
	}
}

// starts returns the starts of the windows in memory that hold series of
// group gid and overlap [from, to], ascending.
func (h *head) starts(gid uint32, win, from, to int64) []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []int64
	for _, m := range []map[int64]*headWindow{h.flushing, h.windows} {
		for start, w := range m {
			if start+win <= from || start > to {
				continue
			}
			if _, ok := w.gids[gid]; ok && !slices.Contains(out, start) {
				out = append(out, start)
			}
		}
	}
	slices.Sort(out)
	return out
}

// columns returns normalized copies of the points the head holds for ids
// in the window at start; the flushing copy is older than the open one.
func (h *head) columns(start int64, ids []uint32) map[uint32]*column {
	h.mu.Lock()
	fw, ow := h.flushing[start], h.windows[start]
	var out map[uint32]*column
	for _, w := range []*headWindow{fw, ow} {
		if w == nil {
			continue
		}
		for _, id := range ids {
			hs := w.bySeries[id]
			if hs == nil {
				continue
			}
			if out == nil {
				out = map[uint32]*column{}
			}
			c := &column{}
			hs.col.column(c)
			if prev := out[id]; prev != nil {
				prev.appendAll(c)
			} else {
				out[id] = c
			}
		}
	}
	h.mu.Unlock()
	for _, c := range out {
		c.normalize()
	}
	return out
}
