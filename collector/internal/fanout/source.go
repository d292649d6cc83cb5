package fanout

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/collector/internal/query"
	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/protocols"
)

// Node is a cluster member as the fan-out reaches it.
type Node struct {
	Name string
	API  string // base URL of its HTTP server, such as http://127.0.0.2:8080
}

// View is the cluster as one request sees it. It must be safe for
// concurrent use; the fan-out asks it afresh for every request.
type View interface {
	// Self is this node's name.
	Self() string
	// Partitions is the number of partitions, P.
	Partitions() int
	// Candidates lists the nodes to ask for partition p, best first
	// (owners that are ready before owners still rebuilding); empty when
	// none is alive.
	Candidates(p int) []Node
}

// Local is the node's own store (*store.Store). When it also has
// Resolve(keys []store.SeriesKey) []store.SeriesRef, as *store.Store does,
// series learnt from other nodes are found by one map lookup each.
type Local interface {
	query.Source
	Stations() ([]store.Station, error)
	Groups() ([]store.Group, error)
}

// Options configure a Source and a Handler; both sides of a cluster use
// the same.
type Options struct {
	// Local is the node's own store; required.
	Local Local
	// View is the cluster membership and partition ownership; required.
	View View
	// PartitionOf is the ring's partition function over a series'
	// measurement and tags; required.
	PartitionOf func(measurement string, tags []protocols.Tag) int
	// Secret is the cluster secret; the bearer token between nodes is
	// derived from it. A handler with an empty secret refuses everything.
	Secret []byte
	// Client makes the calls to other nodes; nil means one with a 2 s
	// dial and a 5 s response header timeout. Answers are streamed, so it
	// should have no overall timeout: the request's context bounds it.
	Client *http.Client
	// Log receives the messages; nil discards them.
	Log *slog.Logger
}

func (o *Options) partitions() int { return o.View.Partitions() }

// IdleTimeout is how long a call to another node may go without a byte of
// its answer before the node counts as failed.
const IdleTimeout = 30 * time.Second

// statTimeout bounds Stations and Groups, which take no context.
const statTimeout = 30 * time.Second

// Source answers the query engine and the public API over the cluster:
// each partition from one of its owners, the node itself from Local. It
// is safe for concurrent use.
type Source struct {
	o      Options
	client *http.Client
	token  string
	log    *slog.Logger

	set      *metrics.Set
	local    *metrics.Counter
	retries  *metrics.Counter
	partial  *metrics.Counter
	statFail *metrics.Counter
}

// NewSource returns a Source. It panics when Local, View or PartitionOf is
// missing: that is a programming error, not a configuration one.
func NewSource(o Options) *Source {
	if o.Local == nil || o.View == nil || o.PartitionOf == nil {
		panic("fanout: NewSource needs Local, View and PartitionOf")
	}
	s := &Source{o: o, client: o.Client, token: token(o.Secret), log: o.Log}
	if s.log == nil {
		s.log = cli.Discard()
	}
	if s.client == nil {
		s.client = DefaultClient()
	}
	s.set = metrics.NewSet()
	s.local = s.set.NewCounter("citysense_fanout_local_reads_total")
	s.retries = s.set.NewCounter("citysense_fanout_partition_retries_total")
	s.partial = s.set.NewCounter("citysense_fanout_partial_answers_total")
	s.statFail = s.set.NewCounter("citysense_fanout_station_list_failures_total")
	return s
}

// DefaultClient is the client a Source uses when Options.Client is nil:
// 2 s to connect, 5 s to the response header, no overall timeout.
func DefaultClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: 5 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}}
}

// Metrics is the fan-out's metrics set, for /metrics:
//
//   - citysense_fanout_remote_requests_total{node,outcome}: calls to other nodes: "ok", "failed" (retried on another replica), "refused" (a bad request, not retried) or "canceled" (the request ended first)
//   - citysense_fanout_received_bytes_total{node}: answer bytes read from other nodes
//   - citysense_fanout_local_reads_total: reads served by the node's own store
//   - citysense_fanout_partition_retries_total: partitions asked again of another replica after a node failed
//   - citysense_fanout_partial_answers_total: requests that found no live node for some partition
//   - citysense_fanout_station_list_failures_total: nodes left out of a Stations or Groups answer
func (s *Source) Metrics() *metrics.Set { return s.set }

// nodeError is a node that could not answer: the request goes to the next
// candidate.
type nodeError struct {
	node string
	err  error
}

func (e *nodeError) Error() string { return "node " + e.node + ": " + e.err.Error() }
func (e *nodeError) Unwrap() error { return e.err }

// callerError is an error of the caller's callback: it ends the request
// as it is, whichever node was answering.
type callerError struct{ err error }

func (e *callerError) Error() string { return e.err.Error() }
func (e *callerError) Unwrap() error { return e.err }

// unwrapCaller returns the callback's own error when err is one, so that
// the caller sees exactly what it returned.
func unwrapCaller(err error) error {
	var ce *callerError
	if errors.As(err, &ce) {
		return ce.err
	}
	return err
}

// fanOut runs do for parts, each partition on its first live candidate,
// one call per node, the nodes in parallel. The partitions of a node whose
// call fails with a *nodeError go to their next candidate; a partition with
// none left marks the answer partial. Any other error ends the request.
func (s *Source) fanOut(ctx context.Context, parts []int, do func(ctx context.Context, n Node, parts []int) error) error {
	next := make(map[int]int, len(parts))
	failed := map[string]bool{}
	pending := parts
	partial := false
	for round := 0; len(pending) > 0; round++ {
		type job struct {
			node  Node
			parts []int
		}
		var jobs []*job
		byNode := map[string]*job{}
		for _, p := range pending {
			cands := s.o.View.Candidates(p)
			i := next[p]
			for i < len(cands) && failed[cands[i].Name] {
				i++
			}
			next[p] = i
			if i >= len(cands) {
				partial = true
				continue
			}
			if round > 0 {
				s.retries.Inc()
			}
			j := byNode[cands[i].Name]
			if j == nil {
				j = &job{node: cands[i]}
				byNode[j.node.Name] = j
				jobs = append(jobs, j)
			}
			j.parts = append(j.parts, p)
		}
		errs := make([]error, len(jobs))
		cctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for k, j := range jobs {
			wg.Go(func() {
				var ne *nodeError
				if errs[k] = do(cctx, j.node, j.parts); errs[k] != nil && !errors.As(errs[k], &ne) {
					cancel() // the request is over: stop the other nodes
				}
			})
		}
		wg.Wait()
		cancel()
		pending = nil
		var final error
		for k, err := range errs {
			if err == nil {
				continue
			}
			var ne *nodeError
			if errors.As(err, &ne) && ctx.Err() == nil {
				failed[jobs[k].node.Name] = true
				s.log.Warn("fanout: node failed; asking the next replica", "node", jobs[k].node.Name, "partitions", len(jobs[k].parts), "err", ne.err)
				pending = append(pending, jobs[k].parts...)
				continue
			}
			// Prefer the error that ended the request over the
			// cancellations it caused.
			if final == nil || (errors.Is(final, context.Canceled) && !errors.Is(err, context.Canceled)) {
				final = err
			}
		}
		if final != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return unwrapCaller(final)
		}
	}
	if partial {
		query.MarkPartial(ctx)
		s.partial.Inc()
	}
	return nil
}

// localErr classifies an error of the node's own store: the caller's and
// the request's own errors end the request, anything else makes the node
// count as failed, as a remote one would.
func (s *Source) localErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ce *callerError
	if errors.As(err, &ce) || ctx.Err() != nil {
		return err
	}
	if errors.Is(err, store.ErrTooManySeries) || errors.Is(err, store.ErrAmbiguousField) {
		return err
	}
	return &nodeError{node: s.o.View.Self(), err: err}
}

// idleReader cancels its request when one Read waits longer than idle.
type idleReader struct {
	r    io.Reader
	t    *time.Timer
	idle time.Duration
	n    int64
}

func (ir *idleReader) Read(p []byte) (int, error) {
	ir.t.Reset(ir.idle)
	n, err := ir.r.Read(p)
	ir.t.Stop()
	ir.n += int64(n)
	return n, err
}

var errIdle = errors.New("no answer bytes for " + IdleTimeout.String())

// call sends one request to node n and hands each frame of the answer to
// each. Connection errors, 5xx and auth refusals, truncated or garbled
// answers and error frames of code internal come back as *nodeError.
func (s *Source) call(ctx context.Context, n Node, method, route string, body any, each func(typ byte, payload []byte) error) (err error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("fanout: encoding a %s request: %w", route, err)
		}
		rd = bytes.NewReader(b)
	}
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(rctx, method, strings.TrimSuffix(n.API, "/")+Prefix+route, rd)
	if err != nil {
		return fmt.Errorf("fanout: node %s: %w", n.Name, err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	outcome := "failed"
	ir := &idleReader{idle: IdleTimeout, t: time.AfterFunc(time.Hour, func() { cancel(errIdle) })}
	ir.t.Stop()
	defer func() {
		ir.t.Stop()
		if s.set == nil {
			return // HandOff's
		}
		s.set.GetOrCreateCounter(fmt.Sprintf(`citysense_fanout_remote_requests_total{node=%q,outcome=%q}`, n.Name, outcome)).Inc()
		s.set.GetOrCreateCounter(fmt.Sprintf(`citysense_fanout_received_bytes_total{node=%q}`, n.Name)).Add(int(ir.n))
	}()
	fail := func(err error) error {
		if ctx.Err() != nil {
			outcome = "canceled"
			return ctx.Err()
		}
		if c := context.Cause(rctx); c != nil && errors.Is(c, errIdle) {
			err = errIdle
		}
		return &nodeError{node: n.Name, err: err}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		err := fmt.Errorf("%s %s: %s: %s", method, route, resp.Status, bytes.TrimSpace(msg))
		switch resp.StatusCode {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			outcome = "refused"
			return fmt.Errorf("fanout: node %s refused the request: %w", n.Name, err)
		}
		return fail(err)
	}
	ir.r = resp.Body
	fr := newFrameReader(ir)
	for {
		typ, payload, err := fr.next()
		if err == io.EOF {
			outcome = "ok"
			return nil
		}
		if err != nil {
			var re *remoteError
			if errors.As(err, &re) {
				switch re.code {
				case codeTooManySeries:
					outcome = "ok"
					return fmt.Errorf("node %s: %s: %w", n.Name, re.msg, store.ErrTooManySeries)
				case codeAmbiguous:
					outcome = "ok"
					parts := strings.Split(re.msg, "\x00")
					return &store.AmbiguousFieldError{Field: parts[0], Measurements: parts[1:]}
				case codeBadRequest:
					outcome = "refused"
					return fmt.Errorf("fanout: node %s refused the request: %s", n.Name, re.msg)
				}
			}
			return fail(err)
		}
		if err := each(typ, payload); err != nil {
			var ce *callerError
			if errors.As(err, &ce) {
				outcome = "ok"
				return err
			}
			return fail(fmt.Errorf("%s answer: %w", route, err))
		}
	}
}

// Lookup is LookupContext without a request context.
func (s *Source) Lookup(sel store.Selector) ([]store.SeriesRef, error) {
	return s.LookupContext(context.Background(), sel)
}

// LookupContext returns the series sel selects across the cluster, sorted
// by series key; a partition no live node holds is left out and the answer
// marked partial. sel.MaxSeries bounds the merged answer. The refs carry
// measurement, field and tags; the read methods find them again by key.
func (s *Source) LookupContext(ctx context.Context, sel store.Selector) ([]store.SeriesRef, error) {
	if sel.Field == "" {
		return nil, errors.New("select: no field")
	}
	req := lookupRequest{Measurement: sel.Measurement, Field: sel.Field, MaxSeries: sel.MaxSeries}
	for k, v := range sel.Tags {
		req.Matchers = append(req.Matchers, matcherJSON{Name: k, Op: "=", Value: v})
	}
	for _, m := range sel.Matchers {
		req.Matchers = append(req.Matchers, matcherJSON{Name: m.Name, Op: m.Op.String(), Value: m.Value})
	}
	var (
		mu   sync.Mutex
		ms   []string
		refs []store.SeriesRef
	)
	self := s.o.View.Self()
	err := s.fanOut(ctx, s.allPartitions(), func(ctx context.Context, n Node, parts []int) error {
		if n.Name == self {
			s.local.Inc()
			m, r, err := localLookup(s.o, sel, partSetOf(parts, s.o.partitions()), sel.MaxSeries)
			if err != nil {
				return s.localErr(ctx, err)
			}
			mu.Lock()
			ms, refs = append(ms, m...), append(refs, r...)
			mu.Unlock()
			return nil
		}
		// Collected per call and merged only when it completed: a node
		// that fails halfway must not leave half its series behind.
		var myMs []string
		var myRefs []store.SeriesRef
		r := req
		r.Partitions = parts
		err := s.call(ctx, n, http.MethodPost, "lookup", &r, func(typ byte, p []byte) error {
			switch typ {
			case frameMeasurements:
				m, err := decodeMeasurements(p)
				myMs = append(myMs, m...)
				return err
			case frameRef:
				k, err := decodeRef(p)
				myRefs = append(myRefs, store.SeriesRef{Measurement: k.Measurement, Field: k.Field, Tags: k.Tags})
				return err
			}
			return fmt.Errorf("unexpected frame %q", typ)
		})
		if err != nil {
			return err
		}
		mu.Lock()
		ms, refs = append(ms, myMs...), append(refs, myRefs...)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if sel.Measurement == "" {
		slices.Sort(ms)
		if ms = slices.Compact(ms); len(ms) > 1 {
			return nil, &store.AmbiguousFieldError{Field: sel.Field, Measurements: ms}
		}
	}
	// Key order: the order answers and RawPage cursors use, whichever
	// node answered which partition.
	keys := make([]string, len(refs))
	order := make([]int, len(refs))
	for i := range refs {
		keys[i], order[i] = refs[i].Key(), i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	out := make([]store.SeriesRef, 0, len(refs))
	for k, i := range order {
		if k > 0 && keys[i] == keys[order[k-1]] {
			continue
		}
		out = append(out, refs[i])
	}
	if sel.MaxSeries > 0 && len(out) > sel.MaxSeries {
		return nil, fmt.Errorf("%w: more than %d", store.ErrTooManySeries, sel.MaxSeries)
	}
	return out, nil
}

func (s *Source) allPartitions() []int {
	out := make([]int, s.o.partitions())
	for i := range out {
		out[i] = i
	}
	return out
}

func partSetOf(parts []int, n int) []bool {
	set := make([]bool, n)
	for _, p := range parts {
		if p >= 0 && p < n {
			set[p] = true
		}
	}
	return set
}

// readPlan splits the caller's refs by partition.
type readPlan struct {
	refs   []store.SeriesRef
	byPart map[int][]int
	parts  []int
}

func (s *Source) plan(refs []store.SeriesRef) *readPlan {
	rp := &readPlan{refs: refs, byPart: map[int][]int{}}
	for i := range refs {
		p := s.o.PartitionOf(refs[i].Measurement, refs[i].Tags)
		if _, ok := rp.byPart[p]; !ok {
			rp.parts = append(rp.parts, p)
		}
		rp.byPart[p] = append(rp.byPart[p], i)
	}
	slices.Sort(rp.parts)
	return rp
}

// indexes lists the caller's positions of the refs of parts.
func (rp *readPlan) indexes(parts []int) []int {
	var idx []int
	for _, p := range parts {
		idx = append(idx, rp.byPart[p]...)
	}
	return idx
}

// request builds the body of a read of idx.
func (rp *readPlan) request(parts, idx []int, from, to int64, res time.Duration) *readRequest {
	req := &readRequest{Partitions: parts, Series: make([]seriesJSON, len(idx)), From: from, To: to, Res: int64(res)}
	for k, i := range idx {
		req.Series[k] = toJSON(&rp.refs[i])
	}
	return req
}

// local resolves idx to the local store's refs, with the caller's position
// of each.
func (s *Source) localRefs(rp *readPlan, idx []int) ([]store.SeriesRef, []int, error) {
	keys := make([]store.SeriesKey, len(idx))
	for k, i := range idx {
		r := &rp.refs[i]
		keys[k] = store.SeriesKey{Measurement: r.Measurement, Field: r.Field, Tags: r.Tags}
	}
	refs, err := resolve(s.o.Local, keys)
	if err != nil {
		return nil, nil, err
	}
	out, pos := refs[:0], make([]int, 0, len(refs))
	for k, r := range refs {
		if r.Measurement != "" {
			out = append(out, r)
			pos = append(pos, idx[k])
		}
	}
	return out, pos, nil
}

// marks remembers, per caller position, how far its data was delivered,
// so that a replica asked after a node failed mid-answer does not deliver
// again what the failed one did: each series' samples and buckets come in
// time order from every node. It also serialises the calls of the
// caller's callback.
type marks struct {
	mu   sync.Mutex
	has  []bool
	last []int64
}

func newMarks(n int) *marks { return &marks{has: make([]bool, n), last: make([]int64, n)} }

// fresh returns the part of ts (ascending times, through at) after the
// mark of i, and moves the mark. mu must be held.
func (m *marks) fresh(i int, n int, at func(k int) int64) int {
	if n == 0 {
		return n
	}
	k := 0
	if m.has[i] {
		for k < n && at(k) <= m.last[i] {
			k++
		}
	}
	if k < n {
		m.has[i], m.last[i] = true, at(n-1)
	}
	return k
}

// ReadRaw calls fn with the samples of refs[i], from each series'
// partition on one of its owners. fn is never called concurrently; a
// series' samples come in time order, in several calls. A partition no
// live node holds is left out and the answer marked partial.
func (s *Source) ReadRaw(ctx context.Context, refs []store.SeriesRef, from, to int64, fn func(i int, samples []store.Sample) error) error {
	if len(refs) == 0 || from > to {
		return nil
	}
	return readRuns(s, ctx, refs, runRead[store.Sample]{
		path: "raw", frame: frameSamples, decode: decodeSamples,
		time: func(x store.Sample) int64 { return x.Time },
		local: func(ctx context.Context, lrefs []store.SeriesRef, f func(int, []store.Sample) error) error {
			return s.o.Local.ReadRaw(ctx, lrefs, from, to, f)
		},
	}, from, to, 0, fn)
}

// ReadRollups calls fn with the buckets of resolution res of refs[i],
// as ReadRaw does with samples.
func (s *Source) ReadRollups(ctx context.Context, refs []store.SeriesRef, res time.Duration, from, to int64, fn func(i int, bs []store.Bucket) error) error {
	if res != time.Minute && res != time.Hour {
		return fmt.Errorf("read rollups: resolution %s, want 1m or 1h", res)
	}
	if len(refs) == 0 || from > to {
		return nil
	}
	return readRuns(s, ctx, refs, runRead[store.Bucket]{
		path: "rollups", frame: frameBuckets, decode: decodeBuckets,
		time: func(x store.Bucket) int64 { return x.Start },
		local: func(ctx context.Context, lrefs []store.SeriesRef, f func(int, []store.Bucket) error) error {
			return s.o.Local.ReadRollups(ctx, lrefs, res, from, to, f)
		},
	}, from, to, res, fn)
}

// runRead is what ReadRaw and ReadRollups differ in: the items read (time
// ordered per series), the endpoint and frame type, and the local read.
type runRead[T any] struct {
	path   string
	frame  byte
	decode func(p []byte, buf []T) (int, []T, error)
	time   func(T) int64
	local  func(ctx context.Context, lrefs []store.SeriesRef, fn func(int, []T) error) error
}

// readRuns reads time-ordered runs of items of refs from each partition's
// chosen owner, dropping what a failed owner had already delivered when
// its partitions are asked again of the next.
func readRuns[T any](s *Source, ctx context.Context, refs []store.SeriesRef, rr runRead[T], from, to int64, res time.Duration, fn func(i int, xs []T) error) error {
	rp := s.plan(refs)
	mk := newMarks(len(refs))
	deliver := func(i int, xs []T) error {
		mk.mu.Lock()
		defer mk.mu.Unlock()
		k := mk.fresh(i, len(xs), func(k int) int64 { return rr.time(xs[k]) })
		if k == len(xs) {
			return nil
		}
		if err := fn(i, xs[k:]); err != nil {
			return &callerError{err}
		}
		return nil
	}
	return s.readEach(ctx, rp, rr.path, rr.frame, from, to, res,
		func(ctx context.Context, lrefs []store.SeriesRef, pos []int) error {
			return rr.local(ctx, lrefs, func(k int, xs []T) error { return deliver(pos[k], xs) })
		},
		func() func(p []byte, idx []int) error {
			var buf []T // per call: the nodes are read concurrently
			return func(p []byte, idx []int) error {
				k, xs, err := rr.decode(p, buf)
				buf = xs
				if err != nil {
					return err
				}
				if k >= len(idx) {
					return fmt.Errorf("series %d of %d", k, len(idx))
				}
				return deliver(idx[k], xs)
			}
		})
}

// readEach reads rp's series from each partition's chosen node: the node
// itself through local (with the local refs and the positions of their
// series), others by a POST to path whose frames of type frame go, with the
// request's series indexes, to a handler that remote makes per call.
func (s *Source) readEach(ctx context.Context, rp *readPlan, path string, frame byte, from, to int64, res time.Duration,
	local func(ctx context.Context, lrefs []store.SeriesRef, pos []int) error,
	remote func() func(p []byte, idx []int) error) error {
	self := s.o.View.Self()
	return s.fanOut(ctx, rp.parts, func(ctx context.Context, n Node, parts []int) error {
		idx := rp.indexes(parts)
		if n.Name == self {
			s.local.Inc()
			lrefs, pos, err := s.localRefs(rp, idx)
			if err == nil {
				err = local(ctx, lrefs, pos)
			}
			return s.localErr(ctx, err)
		}
		handle := remote()
		return s.call(ctx, n, http.MethodPost, path, rp.request(parts, idx, from, to, res), func(typ byte, p []byte) error {
			if typ != frame {
				return fmt.Errorf("unexpected frame %q", typ)
			}
			return handle(p, idx)
		})
	})
}

// Latest calls fn once for each series of refs that has a sample with
// from <= time <= at, with the newest such sample.
func (s *Source) Latest(ctx context.Context, refs []store.SeriesRef, from, at int64, fn func(i int, smp store.Sample) error) error {
	if len(refs) == 0 || from > at {
		return nil
	}
	rp := s.plan(refs)
	mk := newMarks(len(refs))
	deliver := func(i int, smp store.Sample) error {
		mk.mu.Lock()
		defer mk.mu.Unlock()
		if mk.has[i] {
			return nil
		}
		mk.has[i] = true
		if err := fn(i, smp); err != nil {
			return &callerError{err}
		}
		return nil
	}
	return s.readEach(ctx, rp, "latest", frameLatest, from, at, 0,
		func(ctx context.Context, lrefs []store.SeriesRef, pos []int) error {
			return s.o.Local.Latest(ctx, lrefs, from, at, func(k int, smp store.Sample) error { return deliver(pos[k], smp) })
		},
		func() func(p []byte, idx []int) error {
			return func(p []byte, idx []int) error {
				k, smp, err := decodeLatest(p)
				if err != nil {
					return err
				}
				if k >= len(idx) {
					return fmt.Errorf("series %d of %d", k, len(idx))
				}
				return deliver(idx[k], smp)
			}
		})
}

// RawHorizon is the node's own: every node runs the same retention.
func (s *Source) RawHorizon() int64 { return s.o.Local.RawHorizon() }

// members lists the distinct live owners of any partition, the node
// itself first when it is one; just the node itself when none is alive.
func (s *Source) members() []Node {
	self := s.o.View.Self()
	seen := map[string]bool{}
	var out []Node
	for p := range s.o.partitions() {
		for _, n := range s.o.View.Candidates(p) {
			if !seen[n.Name] {
				seen[n.Name] = true
				out = append(out, n)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Node) int {
		return cmp.Compare(boolInt(a.Name != self), boolInt(b.Name != self))
	})
	if len(out) == 0 {
		out = []Node{{Name: self}}
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fromMembers asks every live owner, in parallel, with local for the node
// itself and remote for the others; a node that fails is left out, and
// only when all fail is the answer an error.
func fromMembers[T any](s *Source, what string, local func() ([]T, error), remote func(ctx context.Context, n Node) ([]T, error)) ([][]T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), statTimeout)
	defer cancel()
	nodes := s.members()
	res := make([][]T, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for k, n := range nodes {
		wg.Go(func() {
			if n.Name == s.o.View.Self() {
				res[k], errs[k] = local()
			} else {
				res[k], errs[k] = remote(ctx, n)
			}
		})
	}
	wg.Wait()
	var out [][]T
	for k, err := range errs {
		if err != nil {
			s.statFail.Inc()
			s.log.Warn("fanout: leaving a node out of the "+what, "node", nodes[k].Name, "err", err)
			continue
		}
		out = append(out, res[k])
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("fanout: %s: no node answered: %w", what, errors.Join(errs...))
	}
	return out, nil
}

// remoteList asks a node for a list whose items come one per frame of
// type typ.
func remoteList[T any](s *Source, path string, typ byte, decode func([]byte) (T, error)) func(ctx context.Context, n Node) ([]T, error) {
	return func(ctx context.Context, n Node) ([]T, error) {
		var out []T
		err := s.call(ctx, n, http.MethodGet, path, nil, func(t byte, p []byte) error {
			if t != typ {
				return fmt.Errorf("unexpected frame %q", t)
			}
			x, err := decode(p)
			out = append(out, x)
			return err
		})
		return out, err
	}
}

// Stations merges every live node's stations by id: the union of their
// measurements, the newest last-seen time, and district and position as
// the node that saw the station last (with one) has them. Sorted by id.
func (s *Source) Stations() ([]store.Station, error) {
	lists, err := fromMembers(s, "station list", s.o.Local.Stations, remoteList(s, "stations", frameStation, decodeStation))
	if err != nil {
		return nil, err
	}
	type merged struct {
		st              store.Station
		distAt, posAt   int64
		hasDist, hasPos bool
	}
	byID := map[string]*merged{}
	for _, list := range lists {
		for _, st := range list {
			m := byID[st.ID]
			if m == nil {
				m = &merged{st: store.Station{ID: st.ID, LastSeen: math.MinInt64}}
				byID[st.ID] = m
			}
			m.st.Measurements = append(m.st.Measurements, st.Measurements...)
			m.st.LastSeen = max(m.st.LastSeen, st.LastSeen)
			if st.District != "" && (!m.hasDist || st.LastSeen > m.distAt) {
				m.st.District, m.distAt, m.hasDist = st.District, st.LastSeen, true
			}
			if st.HasPosition && (!m.hasPos || st.LastSeen > m.posAt) {
				m.st.HasPosition, m.st.Lat, m.st.Lon, m.posAt, m.hasPos = true, st.Lat, st.Lon, st.LastSeen, true
			}
		}
	}
	out := make([]store.Station, 0, len(byID))
	for _, m := range byID {
		slices.Sort(m.st.Measurements)
		m.st.Measurements = slices.Compact(m.st.Measurements)
		out = append(out, m.st)
	}
	slices.SortFunc(out, func(a, b store.Station) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Groups is the sorted union of every live node's measurement+field
// groups.
func (s *Source) Groups() ([]store.Group, error) {
	lists, err := fromMembers(s, "group list", s.o.Local.Groups, remoteList(s, "groups", frameGroup, decodeGroup))
	if err != nil {
		return nil, err
	}
	var out []store.Group
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.SortFunc(out, func(a, b store.Group) int {
		return cmp.Or(cmp.Compare(a.Measurement, b.Measurement), cmp.Compare(a.Field, b.Field))
	})
	return slices.Compact(out), nil
}

// Interface guards.
var (
	_ query.Source          = (*Source)(nil)
	_ query.ContextLookuper = (*Source)(nil)
	_ Local                 = (*Source)(nil)
	_ Local                 = (*store.Store)(nil)
	_ resolver              = (*store.Store)(nil)
	_ http.Handler          = (*handler)(nil)
)
