package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/agent/internal/buffer"
	"github.com/citysense/citysense/agent/internal/config"
	"github.com/citysense/citysense/agent/internal/process"
	"github.com/citysense/citysense/agent/internal/quarantine"
	"github.com/citysense/citysense/agent/internal/uplink"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/protocols"
)

// StateDirName is where processors keep their state inside the data dir.
const StateDirName = "state"

// refusedWindow is how long a refused write keeps /readyz failing.
const refusedWindow = time.Minute

// Agent reads inputs, processes their points, keeps them in a durable
// buffer and forwards the buffer to its outputs.
type Agent struct {
	log *slog.Logger
	set *metrics.Set

	// life serialises what starts and stops parts: Reload and shutdown.
	life sync.Mutex

	mu      sync.Mutex // guards cfg and the running parts below
	cfg     config.Config
	inputs  []*runningInput
	outputs map[string]*runningOutput
	run     *runState // nil unless Run is running

	global atomic.Pointer[chainHolder] // set while Run runs

	buf        atomic.Pointer[buffer.Buffer]    // set while Run has it open
	quar       atomic.Pointer[quarantine.Store] // set while Run has it open
	ready      atomic.Bool
	inputsDone atomic.Bool
	running    atomic.Int64 // inputs whose Run has not returned
	started    atomic.Int64 // unix ns when Run opened the buffer

	pointsRead      *metrics.Counter
	pointsBuffered  *metrics.Counter
	pointsInvalid   *metrics.Counter
	pointsProcessed *metrics.Counter // left by the processors, before the buffer
	writesRefused   *metrics.Counter
	reloads         *metrics.Counter
	reloadErrors    *metrics.Counter
	lastInvalidLog  atomic.Int64 // unix nanos, to rate-limit that warning
	quarEvicted     *metrics.Counter
	quarErrors      *metrics.Counter
}

// runState is what the goroutines of one Run share.
type runState struct {
	ctx context.Context // ends when Run is asked to stop
	buf *buffer.Buffer
}

// runningInput is one input with its own processor chain.
type runningInput struct {
	cfg    config.Input
	chain  *process.Chain
	cancel context.CancelFunc
	done   chan struct{}
	points *metrics.Counter
	quar   quarantineLimiter

	// flushMu orders the flush timer against the final flush: once
	// retired, the chain is closed (its state saved) and never used again.
	flushMu sync.Mutex
	retired bool
}

// runningOutput is one uplink output.
type runningOutput struct {
	out     *uplink.Output
	key     string // its configuration, to tell a changed block on reload
	cancel  context.CancelFunc
	done    chan struct{}
	started time.Time
}

// chainHolder guards the global chain: writers and the flush timer hold it
// for reading while they use the chain, a reload or the shutdown take it
// for writing to swap or retire it.
type chainHolder struct {
	mu      sync.RWMutex
	chain   *process.Chain
	key     string
	retired bool // closed on shutdown: pass points through untouched
}

// New builds an agent from cfg, which is validated again here so that a
// configuration built in code gets the same checks as a file. It does no
// I/O; Run opens the buffer and the connections. log may be nil.
func New(cfg config.Config, log *slog.Logger) (*Agent, error) {
	if log == nil {
		log = cli.Discard()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	log = log.With("agent", cfg.Agent.ID)
	a := &Agent{
		cfg:     cfg,
		log:     log,
		set:     metrics.NewSet(),
		outputs: map[string]*runningOutput{},
	}
	// Outputs are built here, without I/O, so that a bad one fails New.
	for _, oc := range cfg.Outputs {
		if _, err := a.newOutput(oc); err != nil {
			return nil, err
		}
	}
	a.pointsRead = a.set.NewCounter("citysense_agent_points_read_total")
	a.pointsBuffered = a.set.NewCounter("citysense_agent_points_buffered_total")
	a.pointsInvalid = a.set.GetOrCreateCounter(`citysense_agent_points_dropped_total{reason="invalid"}`)
	a.pointsProcessed = a.set.NewCounter("citysense_agent_points_processed_total")
	a.writesRefused = a.set.NewCounter("citysense_agent_writes_refused_total")
	a.reloads = a.set.NewCounter("citysense_agent_config_reloads_total")
	a.reloadErrors = a.set.NewCounter("citysense_agent_config_reload_errors_total")
	a.quarEvicted = a.set.NewCounter("citysense_agent_quarantine_evicted_total")
	a.quarErrors = a.set.NewCounter("citysense_agent_quarantine_errors_total")
	quarStat := func(f func(quarantine.Stats) float64) func() float64 {
		return func() float64 {
			if q := a.quar.Load(); q != nil {
				if st, err := q.Stats(); err == nil {
					return f(st)
				}
			}
			return 0
		}
	}
	a.set.NewGauge("citysense_agent_quarantine_entries", quarStat(func(st quarantine.Stats) float64 { return float64(st.Entries) }))
	a.set.NewGauge("citysense_agent_quarantine_bytes", quarStat(func(st quarantine.Stats) float64 { return float64(st.Bytes) }))
	a.set.NewGauge("citysense_agent_inputs_running", func() float64 { return float64(a.running.Load()) })
	a.set.NewGauge("citysense_agent_ready", func() float64 {
		if code, _ := a.readiness(); code == http.StatusOK {
			return 1
		}
		return 0
	})
	return a, nil
}

// newOutput builds (but does not start) the uplink of one output block.
func (a *Agent) newOutput(oc config.Output) (*uplink.Output, error) {
	backfill := oc.Backfill()
	if backfill == 0 {
		backfill = -1 // unlimited
	}
	uc := uplink.Config{
		ID: oc.ID, Type: oc.Type, AgentID: a.cfg.Agent.ID,
		MaxInflight: oc.MaxInflight, BackfillRate: backfill, Timeout: oc.Timeout.D(),
		MaxBackoff: oc.MaxBackoff.D(),
	}
	tls := uplink.TLS{CA: oc.TLS.CA, Cert: oc.TLS.Cert, Key: oc.TLS.Key, ServerName: oc.TLS.ServerName, InsecureSkipVerify: oc.TLS.InsecureSkipVerify}
	switch oc.Type {
	case uplink.TypeNATS:
		uc.NATS = uplink.NATSConfig{URL: oc.URL, Creds: oc.Creds, TLS: tls, ReconnectWait: oc.ReconnectWait.D()}
	case uplink.TypeInflux:
		uc.Influx = uplink.InfluxConfig{
			URL: oc.URL, API: oc.API, Database: oc.Database, RetentionPolicy: oc.RetentionPolicy,
			Org: oc.Org, Bucket: oc.Bucket, Token: oc.Token, Username: oc.Username, Password: oc.Password,
			Gzip: oc.GzipOn(), TLS: tls,
		}
	}
	return uplink.New(uc, a.set, a.log)
}

func outputKey(oc config.Output) string {
	b, _ := json.Marshal(oc)
	return string(b)
}

func outputIDs(outs []config.Output) []string {
	ids := make([]string, len(outs))
	for i, o := range outs {
		ids[i] = o.ID
	}
	return ids
}

func (a *Agent) bufferOptions(cfg config.Config) buffer.Options {
	policy, _ := buffer.ParsePolicy(cfg.Buffer.Policy) // validated
	codec, _ := buffer.ParseCodec(cfg.Buffer.Compression)
	return buffer.Options{
		Outputs:       outputIDs(cfg.Outputs),
		MaxBytes:      int64(cfg.Buffer.MaxBytes),
		MaxAge:        cfg.Buffer.MaxAge.D(),
		Policy:        policy,
		SegmentSize:   int64(cfg.Buffer.SegmentSize),
		BatchPoints:   cfg.Buffer.BatchPoints,
		FlushInterval: cfg.Buffer.FlushInterval.D(),
		FlushPoints:   cfg.Buffer.FlushPoints,
		Codec:         codec,
		Log:           a.log,
		Metrics:       a.set,
	}
}

func (a *Agent) processEnv(cfg config.Config) process.Env {
	return process.Env{StateDir: filepath.Join(cfg.Agent.DataDir, StateDirName), Log: a.log, Metrics: a.set}
}

// Run runs the agent until ctx is done, then shuts down in order — inputs
// stopped, processors flushed into the buffer, outputs given their timeout
// to finish what is in flight, buffer closed — and returns nil. It returns
// an error when it cannot start (buffer, listener, an output that can never
// work) or when the HTTP server fails.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	cfg := a.cfg
	a.mu.Unlock()
	buf, err := buffer.Open(cfg.Agent.DataDir, a.bufferOptions(cfg))
	if err != nil {
		return err
	}
	a.buf.Store(buf)
	a.openQuarantine(cfg.Agent.DataDir)
	a.started.Store(time.Now().UnixNano())
	st := buf.Stats()
	a.log.Info("agent starting", "data_dir", cfg.Agent.DataDir, "http", cfg.Agent.HTTP,
		"pending_batches", st.Batches, "pending_points", st.Points, "buffer_bytes", st.Bytes,
		"inputs", len(cfg.Inputs), "outputs", len(cfg.Outputs))

	var srv *http.Server
	httpErr := make(chan error, 1)
	if cfg.Agent.HTTP != "" {
		ln, err := net.Listen("tcp", cfg.Agent.HTTP)
		if err != nil {
			return errors.Join(fmt.Errorf("listen on %q: %w", cfg.Agent.HTTP, err), a.closeBuffer(), a.closeQuarantine())
		}
		srv = &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				httpErr <- err
			}
		}()
		a.log.Info("http listening", "addr", ln.Addr().String())
	}

	rs := &runState{ctx: ctx, buf: buf}
	a.life.Lock()
	global, err := process.Build(cfg.Doc(), cfg.Processors, "processors", a.processEnv(cfg))
	if err == nil {
		a.global.Store(&chainHolder{chain: global, key: nodesKey(cfg)})
		a.mu.Lock()
		a.run = rs
		a.mu.Unlock()
		err = a.startOutputs(rs, cfg.Outputs)
		if err == nil {
			err = a.startInputs(rs, cfg)
		}
	}
	a.life.Unlock()
	if err != nil {
		a.shutdown(rs, srv)
		return errors.Join(err, a.closeQuarantine())
	}
	flusherDone := make(chan struct{})
	flushCtx, stopFlusher := context.WithCancel(context.WithoutCancel(ctx))
	go func() { defer close(flusherDone); a.flushLoop(flushCtx, rs) }()
	a.ready.Store(true)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-httpErr:
		runErr = fmt.Errorf("http server on %q: %w", cfg.Agent.HTTP, err)
	}
	a.log.Info("agent stopping")
	a.ready.Store(false)
	stopFlusher()
	<-flusherDone
	a.shutdown(rs, srv)
	st = buf.Stats()
	runErr = errors.Join(runErr, a.closeBuffer(), a.closeQuarantine())
	s := a.Status()
	a.log.Info("agent stopped", "points_read", s.PointsRead, "points_sent", s.PointsSent,
		"pending_batches", st.Batches, "pending_points", st.Points)
	return runErr
}

// shutdown stops inputs (flushing their chains), the global chain and the
// outputs, in that order, and the HTTP server.
func (a *Agent) shutdown(rs *runState, srv *http.Server) {
	a.life.Lock()
	defer a.life.Unlock()
	a.mu.Lock()
	inputs := a.inputs
	a.inputs = nil
	a.run = nil
	a.mu.Unlock()
	for _, in := range inputs {
		a.stopInput(rs, in)
	}
	if g := a.global.Load(); g != nil {
		g.mu.Lock()
		a.retireChain(rs, g.chain, "processors", false)
		g.retired = true
		g.mu.Unlock()
	}
	a.mu.Lock()
	outputs := a.outputs
	a.outputs = map[string]*runningOutput{}
	a.mu.Unlock()
	for _, o := range outputs {
		o.cancel()
	}
	for _, o := range outputs {
		<-o.done
	}
	if srv != nil {
		shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(shCtx)
		cancel()
	}
}

// startOutputs starts the given outputs.
func (a *Agent) startOutputs(rs *runState, outs []config.Output) error {
	for _, oc := range outs {
		out, err := a.newOutput(oc)
		if err != nil {
			return err
		}
		// Not rs.ctx: outputs are stopped after the inputs, by shutdown.
		ctx, cancel := context.WithCancel(context.WithoutCancel(rs.ctx))
		ro := &runningOutput{out: out, key: outputKey(oc), cancel: cancel, done: make(chan struct{}), started: time.Now()}
		a.mu.Lock()
		a.outputs[oc.ID] = ro
		a.mu.Unlock()
		a.registerOutputGauges(oc.ID)
		go func() {
			defer close(ro.done)
			if err := out.Run(ctx, rs.buf); err != nil {
				// A configuration that can never work (an unreadable
				// credentials file): the data waits in the buffer.
				a.log.Error("output cannot run; its data stays buffered", "output", oc.ID, "err", err)
			}
		}()
	}
	return nil
}

// registerOutputGauges adds the per-output gauges, once per id.
func (a *Agent) registerOutputGauges(id string) {
	pend := func(f func(buffer.OutputStats) int64) func() float64 {
		return func() float64 {
			if b := a.buf.Load(); b != nil {
				return float64(f(b.Stats().Outputs[id]))
			}
			return 0
		}
	}
	a.set.GetOrCreateGauge(fmt.Sprintf(`citysense_agent_output_pending_points{output=%q}`, id), pend(func(s buffer.OutputStats) int64 { return s.PendingPoints }))
	a.set.GetOrCreateGauge(fmt.Sprintf(`citysense_agent_output_pending_batches{output=%q}`, id), pend(func(s buffer.OutputStats) int64 { return s.PendingBatches }))
	a.set.GetOrCreateGauge(fmt.Sprintf(`citysense_agent_output_oldest_unsent_age_seconds{output=%q}`, id), func() float64 {
		if b := a.buf.Load(); b != nil {
			if bt, ok := b.Oldest(id); ok {
				return time.Since(time.Unix(0, bt.MinTime)).Seconds()
			}
		}
		return 0
	})
	a.set.GetOrCreateGauge(fmt.Sprintf(`citysense_agent_output_connected{output=%q}`, id), func() float64 {
		a.mu.Lock()
		o := a.outputs[id]
		a.mu.Unlock()
		if o != nil && o.out.Connected() {
			return 1
		}
		return 0
	})
}

// startInputs builds the inputs of cfg with their chains and starts them.
func (a *Agent) startInputs(rs *runState, cfg config.Config) error {
	ins, err := cfg.BuildInputs(a.log)
	if err != nil {
		return err
	}
	for _, ic := range ins {
		if err := a.startInput(rs, cfg, ic); err != nil {
			return err
		}
	}
	return nil
}

// startInput starts one input.
func (a *Agent) startInput(rs *runState, cfg config.Config, ic config.Input) error {
	// Inputs that count what they read (and what they refused) register in
	// the agent's set, so their figures are on /metrics.
	if m, ok := ic.Input.(interface{ SetMetrics(*metrics.Set) }); ok {
		m.SetMetrics(a.set)
	}
	chain, err := process.Build(cfg.Doc(), ic.Processors, ic.Path+".processors", a.processEnv(cfg))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(rs.ctx)
	in := &runningInput{
		cfg: ic, chain: chain, cancel: cancel, done: make(chan struct{}),
		points: a.set.GetOrCreateCounter(fmt.Sprintf(`citysense_agent_input_points_total{input=%q,type=%q}`, ic.Path, ic.Type)),
		quar:   newQuarantineLimiter(a.set, ic.Path, ic.Type),
	}
	a.mu.Lock()
	a.inputs = append(a.inputs, in)
	a.mu.Unlock()
	a.running.Add(1)
	a.inputsDone.Store(false)
	go func() {
		defer close(in.done)
		defer func() {
			if a.running.Add(-1) == 0 {
				a.inputsDone.Store(true)
			}
		}()
		if err := ic.Input.Run(ctx, &accumulator{a: a, in: in, buf: rs.buf}); err != nil {
			a.log.Error("input stopped", "input", ic.Type, "path", ic.Path, "err", err)
		}
	}()
	return nil
}

// stopInput stops an input and passes what its chain still holds on.
func (a *Agent) stopInput(rs *runState, in *runningInput) {
	in.cancel()
	<-in.done
	in.flushMu.Lock()
	defer in.flushMu.Unlock()
	in.retired = true
	a.retireChain(rs, in.chain, in.cfg.Path+".processors", true)
}

// retireChain flushes a chain for good into the buffer (through the global
// chain, for an input's) and closes it, which saves its state.
func (a *Agent) retireChain(rs *runState, c *process.Chain, path string, throughGlobal bool) {
	if c == nil {
		return
	}
	pts := c.Flush(true)
	if throughGlobal {
		pts = a.throughGlobal(pts)
	}
	a.appendFlushed(rs, pts, path)
	if err := c.Close(); err != nil {
		a.log.Error("cannot save processor state", "processors", path, "err", err)
	}
}

// throughGlobal passes points through the global chain.
func (a *Agent) throughGlobal(pts []protocols.Point) []protocols.Point {
	g := a.global.Load()
	if g == nil || len(pts) == 0 {
		return pts
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.retired {
		return pts
	}
	return g.chain.Process(pts)
}

// appendFlushed stores what a chain flushed. No input waits for it, so a
// refusal can only be logged and counted.
func (a *Agent) appendFlushed(rs *runState, pts []protocols.Point, path string) {
	if len(pts) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(rs.ctx), 30*time.Second)
	defer cancel()
	err := rs.buf.Append(ctx, pts)
	var invalid *buffer.InvalidPointsError
	switch {
	case errors.As(err, &invalid):
		a.pointsInvalid.Add(invalid.Dropped)
		a.pointsBuffered.Add(len(pts) - invalid.Dropped)
	case err != nil:
		a.log.Error("cannot buffer what the processors flushed; it is lost", "processors", path, "points", len(pts), "err", err)
		a.set.GetOrCreateCounter(`citysense_agent_points_dropped_total{reason="flush_failed"}`).Add(len(pts))
	default:
		a.pointsBuffered.Add(len(pts))
	}
}

// flushLoop calls Flush on the chains when they have something due.
func (a *Agent) flushLoop(ctx context.Context, rs *runState) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		a.mu.Lock()
		inputs := slices.Clone(a.inputs)
		a.mu.Unlock()
		g := a.global.Load()
		now := time.Now()
		// NextFlush changes with every Process: look again within a second.
		next := now.Add(time.Second)
		for _, in := range inputs {
			in.flushMu.Lock()
			if t := in.chain.NextFlush(); !in.retired && !t.IsZero() {
				if !t.After(now) {
					a.appendFlushed(rs, a.throughGlobal(in.chain.Flush(false)), in.cfg.Path+".processors")
					t = in.chain.NextFlush()
				}
				if !t.IsZero() && t.Before(next) {
					next = t
				}
			}
			in.flushMu.Unlock()
		}
		if g != nil {
			g.mu.RLock()
			var pts []protocols.Point
			var t time.Time
			if !g.retired {
				t = g.chain.NextFlush()
				if !t.IsZero() && !t.After(now) {
					pts = g.chain.Flush(false)
					t = g.chain.NextFlush()
				}
			}
			g.mu.RUnlock()
			a.appendFlushed(rs, pts, "processors")
			if !t.IsZero() && t.Before(next) {
				next = t
			}
		}
		timer.Reset(max(time.Until(next), 10*time.Millisecond))
	}
}

func nodesKey(cfg config.Config) string {
	b, _ := json.Marshal(func() []string {
		keys := make([]string, len(cfg.Processors))
		for i := range cfg.Processors {
			keys[i] = config.NodeKey(&cfg.Processors[i])
		}
		return keys
	}())
	return string(b)
}

func (a *Agent) closeBuffer() error {
	b := a.buf.Swap(nil)
	if b == nil {
		return nil
	}
	return b.Close()
}

// accumulator is what one input writes to: its chain, the global chain,
// then the buffer, returning once the points are fsync'd. Points count as
// read when the buffer took what the processors left of them
// (points_read = points the inputs handed over, whether the processors kept,
// folded or dropped them); a refused write is counted apart, since the
// input offers it again.
type accumulator struct {
	a   *Agent
	in  *runningInput
	buf *buffer.Buffer
}

func (acc *accumulator) Write(ctx context.Context, pts []protocols.Point) error {
	a := acc.a
	n := len(pts)
	out := a.throughGlobal(acc.in.chain.Process(pts))
	err := acc.buf.Append(ctx, out)
	var invalid *buffer.InvalidPointsError
	switch {
	case errors.As(err, &invalid):
		// The valid points are stored. Refusing the write would make the
		// input resend the same bad points forever.
		a.pointsInvalid.Add(invalid.Dropped)
		a.pointsBuffered.Add(len(out) - invalid.Dropped)
		if now, last := time.Now().UnixNano(), a.lastInvalidLog.Load(); now-last > int64(10*time.Second) && a.lastInvalidLog.CompareAndSwap(last, now) {
			a.log.Warn("invalid points dropped", "input", acc.in.cfg.Path, "dropped", invalid.Dropped, "err", invalid.First)
		}
	case err != nil:
		// Not counted as read: the input offers the same points again.
		a.writesRefused.Inc()
		return err
	default:
		a.pointsBuffered.Add(len(out))
	}
	a.pointsRead.Add(n)
	a.pointsProcessed.Add(len(out))
	acc.in.points.Add(n)
	if len(out) > 0 && a.log.Enabled(ctx, slog.LevelDebug) {
		// One line per acknowledged write: with it an operator (and the
		// crash test) can tell exactly which readings were promised.
		lo, hi := out[0].Time, out[0].Time
		for _, p := range out[1:] {
			lo, hi = min(lo, p.Time), max(hi, p.Time)
		}
		a.log.Debug("points buffered", "input", acc.in.cfg.Path, "points", n, "stored", len(out), "min_time", lo, "max_time", hi)
	}
	return nil
}

// Status is the JSON document served at /status. The first keys are the
// walking skeleton's contract and keep their meaning; with several outputs
// points_sent and batches_sent add up what each confirmed.
type Status struct {
	AgentID              string `json:"agent_id"`
	PointsRead           uint64 `json:"points_read"`
	PointsBuffered       uint64 `json:"points_buffered"`
	PointsSent           uint64 `json:"points_sent"`
	BatchesSent          uint64 `json:"batches_sent"`
	BufferPendingBatches int64  `json:"buffer_pending_batches"` // kept for at least one output
	BufferPendingPoints  int64  `json:"buffer_pending_points"`
	InputsDone           bool   `json:"inputs_done"` // every input's Run has returned

	Ready         string            `json:"ready"` // the /readyz answer
	Started       time.Time         `json:"started,omitzero"`
	PointsDropped map[string]uint64 `json:"points_dropped"` // by reason
	WritesRefused uint64            `json:"writes_refused"`
	Reloads       uint64            `json:"config_reloads"`
	Buffer        *BufferStatus     `json:"buffer,omitempty"`
	Quarantine    *quarantine.Stats `json:"quarantine,omitempty"` // unreadable payloads kept (see `quarantine list`)
	Inputs        []InputStatus     `json:"inputs"`
	Outputs       []OutputStatus    `json:"outputs"`
}

// BufferStatus summarises the buffer.
type BufferStatus struct {
	Dir             string    `json:"dir"`
	Segments        int       `json:"segments"`
	Bytes           int64     `json:"bytes"`
	NextSeq         uint64    `json:"next_seq"`
	Oldest          time.Time `json:"oldest,omitzero"` // when the oldest batch kept was buffered
	SegmentsQuarant uint64    `json:"segments_quarantined"`
}

// InputStatus is one running input.
type InputStatus struct {
	Path   string `json:"path"`
	Type   string `json:"type"`
	Points uint64 `json:"points_read"`
}

// OutputStatus is one output: its counters and what it has pending.
type OutputStatus struct {
	uplink.Stats
	PendingBatches int64     `json:"pending_batches"`
	PendingPoints  int64     `json:"pending_points"`
	OldestUnsent   time.Time `json:"oldest_unsent,omitzero"` // time of the oldest point not yet delivered
}

var dropReasons = []string{"max_bytes", "max_age", "buffer_full", "corrupt", "rejected", "invalid", "flush_failed"}

// Status returns the agent's counters.
func (a *Agent) Status() Status {
	_, ready := a.readiness()
	st := Status{
		PointsRead:     a.pointsRead.Get(),
		PointsBuffered: a.pointsBuffered.Get(),
		InputsDone:     a.inputsDone.Load(),
		Ready:          ready,
		PointsDropped:  map[string]uint64{},
		WritesRefused:  a.writesRefused.Get(),
		Reloads:        a.reloads.Get(),
		Inputs:         []InputStatus{},
		Outputs:        []OutputStatus{},
	}
	if t := a.started.Load(); t > 0 {
		st.Started = time.Unix(0, t).UTC()
	}
	for _, r := range dropReasons {
		st.PointsDropped[r] = a.set.GetOrCreateCounter(`citysense_agent_points_dropped_total{reason="` + r + `"}`).Get()
	}
	a.mu.Lock()
	st.AgentID = a.cfg.Agent.ID
	for _, in := range a.inputs {
		st.Inputs = append(st.Inputs, InputStatus{Path: in.cfg.Path, Type: in.cfg.Type, Points: in.points.Get()})
	}
	outs := make([]*uplink.Output, 0, len(a.outputs))
	for _, o := range a.outputs {
		outs = append(outs, o.out)
	}
	a.mu.Unlock()
	slices.SortFunc(outs, func(x, y *uplink.Output) int { return strings.Compare(x.ID(), y.ID()) })

	var bst buffer.Stats
	buf := a.buf.Load()
	if buf != nil {
		bst = buf.Stats()
		st.BufferPendingBatches, st.BufferPendingPoints = bst.Batches, bst.Points
		st.Buffer = &BufferStatus{
			Dir: bst.Dir, Segments: len(bst.Segments), Bytes: bst.Bytes, NextSeq: bst.NextSeq, Oldest: bst.Oldest,
			SegmentsQuarant: a.set.GetOrCreateCounter("citysense_agent_buffer_segments_quarantined_total").Get(),
		}
	}
	if q := a.quar.Load(); q != nil {
		if qs, err := q.Stats(); err == nil {
			st.Quarantine = &qs
		}
	}
	for _, o := range outs {
		os := OutputStatus{Stats: o.Stats()}
		st.PointsSent += os.PointsSent
		st.BatchesSent += os.BatchesSent
		if buf != nil {
			p := bst.Outputs[o.ID()]
			os.PendingBatches, os.PendingPoints = p.PendingBatches, p.PendingPoints
			if p.PendingBatches > 0 {
				if bt, ok := buf.Oldest(o.ID()); ok {
					os.OldestUnsent = time.Unix(0, bt.MinTime).UTC()
				}
			}
		}
		st.Outputs = append(st.Outputs, os)
	}
	return st
}

// readiness is the /readyz answer. Buffering through a collector's absence
// is the agent's job, so a disconnected output makes the agent degraded,
// not unready. It is unready when data stops flowing for a reason that
// waiting will not fix: the buffer refuses writes, or an output is
// connected, has data and has delivered none of it for stuck_after. Age
// alone is no sign: after a long outage the backlog is old and drains
// slowly on purpose (backfill_rate), which is progress.
func (a *Agent) readiness() (int, string) {
	if !a.ready.Load() {
		return http.StatusServiceUnavailable, "not ready"
	}
	buf := a.buf.Load()
	if buf == nil {
		return http.StatusServiceUnavailable, "not ready"
	}
	now := time.Now()
	if buf.RefusedSince(now.Add(-refusedWindow)) {
		return http.StatusServiceUnavailable, "failing: the buffer refused writes (full; see buffer.max_bytes and buffer.policy)"
	}
	a.mu.Lock()
	stuckAfter := a.cfg.Agent.StuckAfter.D()
	outs := make([]*runningOutput, 0, len(a.outputs))
	for _, o := range a.outputs {
		outs = append(outs, o)
	}
	a.mu.Unlock()
	slices.SortFunc(outs, func(x, y *runningOutput) int { return strings.Compare(x.out.ID(), y.out.ID()) })
	stats := buf.Stats()
	var down []string
	for _, o := range outs {
		id := o.out.ID()
		if !o.out.Connected() {
			down = append(down, id)
			continue
		}
		if stats.Outputs[id].PendingBatches == 0 {
			continue
		}
		since := o.started
		if t := o.out.Stats().LastConfirmed; t.After(since) {
			since = t
		}
		if bt, ok := buf.Oldest(id); ok && bt.Appended.After(since) {
			since = bt.Appended
		}
		if now.Sub(since) > stuckAfter {
			return http.StatusServiceUnavailable, fmt.Sprintf("failing: output %s is connected but has delivered nothing for %s", id, now.Sub(since).Round(time.Second))
		}
	}
	if len(down) > 0 {
		return http.StatusOK, "degraded: buffering (disconnected: " + strings.Join(down, ", ") + ")"
	}
	return http.StatusOK, "ok"
}

// Handler serves /healthz, /readyz, /status and /metrics.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		code, msg := a.readiness()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprintln(w, msg)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.Status())
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		a.set.WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
	})
	a.quarantineRoutes(mux)
	return mux
}

// ErrNotRunning is returned by Reload outside Run.
var ErrNotRunning = errors.New("agent is not running")

// Reload switches a running agent to cfg without losing buffered or
// in-flight data: the buffer stays open, inputs, processor chains and
// outputs whose blocks did not change keep running, changed ones are
// stopped (an input's chain flushed into the buffer, an output's batches in
// flight finished) and started anew. A cfg that fails validation changes
// nothing. Keys that only a restart can change (agent id, data_dir, http,
// the buffer's layout) are reported in the returned error and keep their
// running values; everything else is applied.
func (a *Agent) Reload(cfg config.Config) error {
	if err := cfg.Validate(); err != nil {
		a.reloadErrors.Inc()
		return fmt.Errorf("invalid configuration, keeping the running one:\n%w", err)
	}
	for _, oc := range cfg.Outputs {
		if _, err := a.newOutput(oc); err != nil {
			a.reloadErrors.Inc()
			return fmt.Errorf("keeping the running configuration: %w", err)
		}
	}
	a.life.Lock()
	defer a.life.Unlock()
	a.mu.Lock()
	rs, old := a.run, a.cfg
	running := slices.Clone(a.inputs)
	a.mu.Unlock()
	if rs == nil {
		return ErrNotRunning
	}

	// What cannot change while running stays as it is.
	var restart []string
	keep := func(name string, changed bool) {
		if changed {
			restart = append(restart, name)
		}
	}
	keep("agent.id", cfg.Agent.ID != old.Agent.ID)
	keep("agent.data_dir", cfg.Agent.DataDir != old.Agent.DataDir)
	keep("agent.http", cfg.Agent.HTTP != old.Agent.HTTP)
	keep("buffer.segment_size", cfg.Buffer.SegmentSize != old.Buffer.SegmentSize)
	keep("buffer.batch_points", cfg.Buffer.BatchPoints != old.Buffer.BatchPoints)
	keep("buffer.flush_interval", cfg.Buffer.FlushInterval != old.Buffer.FlushInterval)
	keep("buffer.flush_points", cfg.Buffer.FlushPoints != old.Buffer.FlushPoints)
	keep("buffer.compression", cfg.Buffer.Compression != old.Buffer.Compression)
	cfg.Agent.ID, cfg.Agent.DataDir, cfg.Agent.HTTP = old.Agent.ID, old.Agent.DataDir, old.Agent.HTTP
	cfg.Buffer.SegmentSize, cfg.Buffer.BatchPoints = old.Buffer.SegmentSize, old.Buffer.BatchPoints
	cfg.Buffer.FlushInterval, cfg.Buffer.FlushPoints, cfg.Buffer.Compression = old.Buffer.FlushInterval, old.Buffer.FlushPoints, old.Buffer.Compression

	newIns, err := cfg.BuildInputs(a.log)
	if err != nil {
		a.reloadErrors.Inc()
		return fmt.Errorf("keeping the running configuration: %w", err)
	}

	// Inputs: keep those whose block (processors included) is unchanged.
	var keepIns, stopIns []*runningInput
	var startIns []config.Input
	pool := running
	for _, ic := range newIns {
		i := slices.IndexFunc(pool, func(r *runningInput) bool { return r.cfg.Key == ic.Key })
		if i < 0 {
			startIns = append(startIns, ic)
			continue
		}
		keepIns = append(keepIns, pool[i])
		pool = slices.Delete(pool, i, i+1)
	}
	stopIns = pool
	a.mu.Lock()
	a.inputs = keepIns
	a.mu.Unlock()
	for _, in := range stopIns {
		a.stopInput(rs, in)
	}

	// The global chain: replaced if its list changed. Writers pass points
	// through under its read lock, so once it is held for writing nothing
	// reaches the old chain: its flush is complete, and closing it before
	// building the new one hands its saved state (deadband values, open
	// windows) to stages of the same name.
	if g := a.global.Load(); g != nil && nodesKey(cfg) != g.key {
		g.mu.Lock()
		pts := g.chain.Flush(true)
		if err := g.chain.Close(); err != nil {
			a.log.Error("cannot save processor state", "processors", "processors", "err", err)
		}
		chain, err := process.Build(cfg.Doc(), cfg.Processors, "processors", a.processEnv(cfg))
		if err != nil {
			// Validated above, so only unreadable state gets here.
			a.log.Error("reload: cannot build the new processors; points pass unprocessed until the next reload", "err", err)
		}
		g.chain, g.key = chain, nodesKey(cfg)
		g.mu.Unlock()
		a.appendFlushed(rs, pts, "processors")
	}
	for _, ic := range startIns {
		if err := a.startInput(rs, cfg, ic); err != nil {
			a.log.Error("reload: cannot start input", "input", ic.Path, "err", err)
		}
	}

	// Outputs, by id: unchanged blocks keep running (and their batches in
	// flight); changed ones finish what is in flight and start again from
	// the buffer's record of what they delivered.
	wantKeys := map[string]string{}
	for _, oc := range cfg.Outputs {
		wantKeys[oc.ID] = outputKey(oc)
	}
	var stopOuts []*runningOutput
	a.mu.Lock()
	for id, ro := range a.outputs {
		if wantKeys[id] != ro.key {
			stopOuts = append(stopOuts, ro)
			delete(a.outputs, id)
		}
	}
	a.mu.Unlock()
	for _, ro := range stopOuts {
		ro.cancel()
	}
	for _, ro := range stopOuts {
		<-ro.done
	}
	if err := rs.buf.SetOutputs(outputIDs(cfg.Outputs)); err != nil {
		a.log.Error("reload: cannot change the buffer's outputs", "err", err)
	}
	var startOuts []config.Output
	a.mu.Lock()
	for _, oc := range cfg.Outputs {
		if _, running := a.outputs[oc.ID]; !running {
			startOuts = append(startOuts, oc)
		}
	}
	a.mu.Unlock()
	if err := a.startOutputs(rs, startOuts); err != nil {
		a.log.Error("reload: cannot start output", "err", err)
	}

	policy, _ := buffer.ParsePolicy(cfg.Buffer.Policy)
	rs.buf.SetLimits(int64(cfg.Buffer.MaxBytes), cfg.Buffer.MaxAge.D(), policy)
	a.mu.Lock()
	a.cfg = cfg
	a.mu.Unlock()
	a.reloads.Inc()
	a.log.Info("configuration reloaded",
		"inputs_kept", len(keepIns), "inputs_restarted_or_added", len(startIns), "inputs_stopped", len(stopIns),
		"outputs_restarted_or_added", len(startOuts), "outputs_stopped", len(stopOuts))
	if len(restart) > 0 {
		return fmt.Errorf("%w: %v keep their running values until the agent restarts", ErrNeedsRestart, restart)
	}
	return nil
}

// ErrNeedsRestart reports keys a reload could not apply.
var ErrNeedsRestart = errors.New("some changes need a restart")

// Interface guards.
var (
	_ protocols.Accumulator = (*accumulator)(nil)
	_ protocols.Quarantiner = (*accumulator)(nil)
)
