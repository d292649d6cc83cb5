#!/usr/bin/env bash
# Starts the demo: one collector, then one agent with simulated stations. Ctrl-C
# (or SIGTERM) stops the agent first, so it can hand over what it buffered, and
# then the collector. Used by `make run`.
set -euo pipefail
# Job control puts the two servers in their own process groups, so a Ctrl-C on
# the terminal reaches only this script, which then stops them in order.
set -m
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin}
mkdir -p data

"$BIN/citysense-collector" run -c configs/demo/collector.yaml --log-format text &
collector=$!
agent=""

stop() {
  trap - INT TERM
  echo
  echo "Stopping…"
  [ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null && wait "$agent" 2>/dev/null || true
  kill -TERM "$collector" 2>/dev/null && wait "$collector" 2>/dev/null || true
  echo "Stopped. Data is kept in ./data (make clean removes it)."
  exit 0
}
trap stop INT TERM

for _ in $(seq 1 300); do
  if curl -fs http://127.0.0.1:8080/readyz >/dev/null 2>&1; then break; fi
  if ! kill -0 "$collector" 2>/dev/null; then echo "the collector failed to start; see its log above" >&2; exit 1; fi
  sleep 0.1
done

"$BIN/citysense-agent" run -c configs/demo/agent.yaml --log-format text &
agent=$!

cat <<MSG

CitySense is running.
  portal:   http://127.0.0.1:8080/
  series:   http://127.0.0.1:8080/api/v1/series?station=s0001&field=pm25
  stations: http://127.0.0.1:8080/api/v1/stations
  agent:    http://127.0.0.1:9274/status
Press Ctrl-C to stop both.

MSG
wait
