package collector

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

// PprofEnv names the environment variable that, when set to host:port,
// serves Go's profiler (/debug/pprof/) on its own listener. It is for an
// operator chasing CPU or memory on a live node, never for the public
// port: profiles reveal internals and cost CPU while they run.
const PprofEnv = "CITYSENSE_PPROF_LISTEN"

// startPprof serves the profiler when PprofEnv is set; the returned func
// stops it.
func startPprof(log *slog.Logger) func() {
	addr := os.Getenv(PprofEnv)
	if addr == "" {
		return func() {}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("pprof: cannot listen; profiler off", "addr", addr, "err", err)
		return func() {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Warn("pprof: profiler listening; do not expose it", "addr", ln.Addr().String())
	return func() { srv.Close() }
}
