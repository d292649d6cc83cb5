package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/agent/internal/buffer"
	"github.com/citysense/citysense/agent/internal/config"
	"github.com/citysense/citysense/agent/internal/uplink"
	"github.com/citysense/citysense/internal/cli"
	"github.com/citysense/citysense/protocols"
)

// Agent reads inputs into a durable buffer and forwards it to a collector.
type Agent struct {
	cfg    config.Config
	log    *slog.Logger
	inputs []config.Input
	up     *uplink.NATS
	set    *metrics.Set

	buf        atomic.Pointer[buffer.Buffer] // set while Run has it open
	ready      atomic.Bool
	inputsDone atomic.Bool
	running    atomic.Int64 // inputs whose Run has not returned

	pointsRead     *metrics.Counter
	pointsBuffered *metrics.Counter
	pointsInvalid  *metrics.Counter
	writesRefused  *metrics.Counter
	lastInvalidLog atomic.Int64 // unix nanos, to rate-limit that warning
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
	inputs, err := cfg.BuildInputs(log)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:    cfg,
		log:    log,
		inputs: inputs,
		set:    metrics.NewSet(),
	}
	out := cfg.Outputs[0]
	a.up, err = uplink.New(uplink.Config{
		AgentID:        cfg.Agent.ID,
		URL:            out.URL,
		Creds:          out.Creds,
		PublishTimeout: out.Timeout.D(),
	}, a.set, a.log)
	if err != nil {
		return nil, err
	}
	a.pointsRead = a.set.NewCounter("citysense_agent_points_read_total")
	a.pointsBuffered = a.set.NewCounter("citysense_agent_points_buffered_total")
	a.pointsInvalid = a.set.NewCounter("citysense_agent_points_invalid_total")
	a.writesRefused = a.set.NewCounter("citysense_agent_writes_refused_total")
	a.set.NewGauge("citysense_agent_buffer_pending_batches", func() float64 { n, _ := a.pending(); return float64(n) })
	a.set.NewGauge("citysense_agent_buffer_pending_points", func() float64 { _, n := a.pending(); return float64(n) })
	a.set.NewGauge("citysense_agent_buffer_pending_bytes", func() float64 {
		if b := a.buf.Load(); b != nil {
			return float64(b.PendingBytes())
		}
		return 0
	})
	a.set.NewGauge("citysense_agent_inputs_running", func() float64 { return float64(a.running.Load()) })
	return a, nil
}

func (a *Agent) pending() (batches, points int64) {
	if b := a.buf.Load(); b != nil {
		return b.Pending()
	}
	return 0, 0
}

// Status is the JSON document served at /status.
type Status struct {
	AgentID              string `json:"agent_id"`
	PointsRead           uint64 `json:"points_read"`
	PointsBuffered       uint64 `json:"points_buffered"`
	PointsSent           uint64 `json:"points_sent"`
	BatchesSent          uint64 `json:"batches_sent"`
	BufferPendingBatches int64  `json:"buffer_pending_batches"`
	BufferPendingPoints  int64  `json:"buffer_pending_points"`
	InputsDone           bool   `json:"inputs_done"` // every input's Run has returned
}

// Status returns the agent's counters.
func (a *Agent) Status() Status {
	st := a.up.Stats()
	batches, points := a.pending()
	return Status{
		AgentID:              a.cfg.Agent.ID,
		PointsRead:           a.pointsRead.Get(),
		PointsBuffered:       a.pointsBuffered.Get(),
		PointsSent:           st.PointsSent,
		BatchesSent:          st.BatchesSent,
		BufferPendingBatches: batches,
		BufferPendingPoints:  points,
		InputsDone:           a.inputsDone.Load(),
	}
}

// Handler serves /healthz, /readyz, /status and /metrics.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	// Ready means readings are accepted and kept: the buffer is open and the
	// inputs run. A missing collector does not make the agent unready;
	// buffering through its absence is the agent's job.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !a.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a.Status())
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		a.set.WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
	})
	return mux
}

// Run runs the agent until ctx is done, then shuts down in order and
// returns nil. It returns an error when it cannot start (buffer, listener)
// or when the HTTP server or the uplink fail for good.
func (a *Agent) Run(ctx context.Context) error {
	out := a.cfg.Outputs[0]
	buf, err := buffer.Open(a.cfg.Agent.DataDir, buffer.Options{
		MaxBytes:       int64(a.cfg.Buffer.MaxBytes),
		MaxEntryPoints: out.BatchPoints,
		CommitDelay:    a.cfg.Buffer.FlushInterval.D(),
	})
	if err != nil {
		return err
	}
	a.buf.Store(buf)
	batches, points := buf.Pending()
	a.log.Info("agent starting", "data_dir", a.cfg.Agent.DataDir, "http", a.cfg.Agent.HTTP,
		"pending_batches", batches, "pending_points", points, "inputs", len(a.inputs))

	var srv *http.Server
	httpErr := make(chan error, 1)
	if a.cfg.Agent.HTTP != "" {
		ln, err := net.Listen("tcp", a.cfg.Agent.HTTP)
		if err != nil {
			return errors.Join(fmt.Errorf("listen on %q: %w", a.cfg.Agent.HTTP, err), a.closeBuffer())
		}
		srv = &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				httpErr <- err
			}
		}()
		a.log.Info("http listening", "addr", ln.Addr().String())
	}

	// The uplink outlives the inputs: it is stopped only after they are, so
	// that its in-flight publish is the last thing to finish.
	upCtx, stopUplink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUplink()
	upDone := make(chan error, 1)
	go func() { upDone <- a.up.Run(upCtx, buf) }()

	inCtx, stopInputs := context.WithCancel(ctx)
	defer stopInputs()
	acc := &accumulator{a: a, buf: buf}
	var inputs sync.WaitGroup
	a.running.Store(int64(len(a.inputs)))
	for _, in := range a.inputs {
		inputs.Go(func() {
			defer a.running.Add(-1)
			if err := in.Input.Run(inCtx, acc); err != nil {
				a.log.Error("input stopped", "input", in.Type, "path", in.Path, "err", err)
			}
		})
	}
	allInputsDone := make(chan struct{})
	go func() {
		inputs.Wait()
		a.inputsDone.Store(true)
		close(allInputsDone)
	}()
	a.ready.Store(true)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-httpErr:
		runErr = fmt.Errorf("http server on %q: %w", a.cfg.Agent.HTTP, err)
	case err := <-upDone:
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		runErr = fmt.Errorf("uplink: %w", err)
		upDone <- nil // so the shutdown below does not wait for it again
	}

	a.log.Info("agent stopping")
	a.ready.Store(false)
	stopInputs()
	<-allInputsDone
	stopUplink()
	if err := <-upDone; err != nil {
		a.log.Error("uplink stopped with an error", "err", err)
	}
	if srv != nil {
		shCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = srv.Shutdown(shCtx)
		cancel()
	}
	batches, points = buf.Pending()
	runErr = errors.Join(runErr, a.closeBuffer())
	st := a.Status()
	a.log.Info("agent stopped", "points_read", st.PointsRead, "points_sent", st.PointsSent,
		"pending_batches", batches, "pending_points", points)
	return runErr
}

func (a *Agent) closeBuffer() error {
	b := a.buf.Swap(nil)
	if b == nil {
		return nil
	}
	return b.Close()
}

// accumulator is what every input writes to: straight into the buffer,
// returning once the points are fsync'd. Points count as read once the
// buffer took them (points_read = points_buffered + points_invalid); a
// refused write is counted apart, since the input offers it again.
type accumulator struct {
	a   *Agent
	buf *buffer.Buffer
}

func (acc *accumulator) Write(ctx context.Context, pts []protocols.Point) error {
	a := acc.a
	err := acc.buf.Append(ctx, pts)
	var invalid *buffer.InvalidPointsError
	switch {
	case errors.As(err, &invalid):
		// The valid points are stored. Refusing the write would make the
		// input resend the same bad points forever.
		a.pointsRead.Add(len(pts))
		a.pointsInvalid.Add(invalid.Dropped)
		a.pointsBuffered.Add(len(pts) - invalid.Dropped)
		if now, last := time.Now().UnixNano(), a.lastInvalidLog.Load(); now-last > int64(10*time.Second) && a.lastInvalidLog.CompareAndSwap(last, now) {
			a.log.Warn("invalid points dropped", "dropped", invalid.Dropped, "err", invalid.First)
		}
		return nil
	case err != nil:
		// Not counted as read: the input offers the same points again.
		a.writesRefused.Inc()
		return err
	}
	a.pointsRead.Add(len(pts))
	a.pointsBuffered.Add(len(pts))
	return nil
}

// Interface guards.
var _ protocols.Accumulator = (*accumulator)(nil)
