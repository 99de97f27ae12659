#!/usr/bin/env bash
# Forward-auth load test: `GET /v1/auth` with valid cookies drawn at random from N sessions,
# against an empty axum handler served by the same server stack (`sessiond bench-empty`), in
# the same run, at 64 connections. Loopback only. Needs `wrk` (apt-get install -y wrk) and
# `curl`.
#
#   bench/forward-auth.sh            # defaults: 10000 sessions, 64 connections, 15 s per run
#   SESSIONS=10000 CONNS=64 DURATION=15s THREADS=2 bench/forward-auth.sh
#   PACE_MS=4 bench/forward-auth.sh  # the paced latency runs (default 4 ms; 0 skips them)
#   HEADERS=1 bench/forward-auth.sh  # also the empty handler answering with the six session
#                                    # headers (`bench-empty --session-headers`) in every round:
#                                    # the cost of the larger response alone
#   BARE=0 bench/forward-auth.sh     # leave out the bare empty handler (`bench-empty --bare`:
#                                    # no middleware at all), measured in every round by default
#   WRK_PREFIX="chrt -b 0" bench/forward-auth.sh
#                                    # run every measured wrk under that command (here as
#                                    # SCHED_BATCH: its wake-ups do not preempt the server)
set -euo pipefail

SESSIONS=${SESSIONS:-10000}
CONNS=${CONNS:-64}
DURATION=${DURATION:-15s}
THREADS=${THREADS:-2}
AUTH_ADDR=${AUTH_ADDR:-127.0.0.1:7480}
STORE=${STORE:-embedded:}
EMPTY_ADDR=${EMPTY_ADDR:-127.0.0.1:7481}
HEADERS=${HEADERS:-0}
HEADERS_ADDR=${HEADERS_ADDR:-127.0.0.1:7482}
BARE=${BARE:-1}
BARE_ADDR=${BARE_ADDR:-127.0.0.1:7483}
# A command put before every measured wrk (e.g. "taskset -c 1" or "chrt -b 0"); empty by default.
WRK_PREFIX=${WRK_PREFIX:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/target/release/sessiond"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -p sessiond)

echo "== starting sessiond (store $STORE, dev mode) on $AUTH_ADDR and bench-empty on $EMPTY_ADDR"
SESSIOND_API_KEY="$KEY" SESSIOND_LOG=warn "$BIN" serve --dev --listen "$AUTH_ADDR" --data-dir "$WORK/data" --store "$STORE" \
  >"$WORK/serve.out" 2>"$WORK/serve.err" &
PIDS+=($!); AUTH_PID=$!
SESSIOND_LOG=warn "$BIN" bench-empty --listen "$EMPTY_ADDR" >"$WORK/empty.out" 2>"$WORK/empty.err" &
PIDS+=($!); EMPTY_PID=$!
HEADERS_PID=
if [ "$HEADERS" = "1" ]; then
  SESSIOND_LOG=warn "$BIN" bench-empty --session-headers --listen "$HEADERS_ADDR" >/dev/null 2>&1 &
  PIDS+=($!); HEADERS_PID=$!
fi
BARE_PID=
if [ "$BARE" = "1" ]; then
  SESSIOND_LOG=warn "$BIN" bench-empty --bare --listen "$BARE_ADDR" >/dev/null 2>&1 &
  PIDS+=($!); BARE_PID=$!
fi
for _ in $(seq 1 100); do
  curl -sf "http://$AUTH_ADDR/healthz" >/dev/null && curl -s "http://$EMPTY_ADDR/" >/dev/null &&
    { [ "$HEADERS" != "1" ] || curl -s "http://$HEADERS_ADDR/" >/dev/null; } &&
    { [ "$BARE" != "1" ] || curl -s "http://$BARE_ADDR/" >/dev/null; } && break
  sleep 0.1
done

create_sessions "$AUTH_ADDR" "$SESSIONS"

# CPU time (user + system, in clock ticks) a process has used so far.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
run() { # name url path [pace_ms] [server pid]
  local before=0
  [ -n "${5:-}" ] && before=$(ticks "$5")
  TOKENS="$WORK/tokens.txt" BENCH_PATH="$3" PACE_MS="${4:-0}" /usr/bin/time -f "%U %S" -o "$WORK/$1.wrkcpu" \
    $WRK_PREFIX wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$ROOT/bench/forward-auth.lua" "$2" | tee "$WORK/$1.txt" >&2
  [ -n "${5:-}" ] && echo $(($(ticks "$5") - before)) >"$WORK/$1.srvticks"
  return 0
}
echo "== warm-up"
TOKENS="$WORK/tokens.txt" wrk -t"$THREADS" -c"$CONNS" -d3s -s "$ROOT/bench/forward-auth.lua" "http://$AUTH_ADDR" >/dev/null
TOKENS="$WORK/tokens.txt" BENCH_PATH=/ wrk -t"$THREADS" -c"$CONNS" -d3s -s "$ROOT/bench/forward-auth.lua" "http://$EMPTY_ADDR" >/dev/null
# Interleave the two runs ROUNDS times: the machine is shared, and load from other processes
# drifts over seconds, so alternating short runs and comparing medians is fairer than one long
# run of each.
ROUNDS=${ROUNDS:-3}
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r: empty handler (GET /, same stack)"
  run "empty$r" "http://$EMPTY_ADDR" / 0 "$EMPTY_PID"
  echo "== round $r: forward-auth (GET /v1/auth, random valid cookie)"
  run "auth$r" "http://$AUTH_ADDR" /v1/auth 0 "$AUTH_PID"
  if [ "$HEADERS" = "1" ]; then
    echo "== round $r: empty handler with the six session headers"
    run "headers$r" "http://$HEADERS_ADDR" / 0 "$HEADERS_PID"
  fi
  if [ "$BARE" = "1" ]; then
    echo "== round $r: bare empty handler (no middleware)"
    run "bare$r" "http://$BARE_ADDR" / 0 "$BARE_PID"
  fi
done

# Latency below saturation: the same 64 connections, each pausing PACE_MS after every
# response, so both servers see the same fixed offered rate (about CONNS / PACE_MS per ms) and
# p99 measures service time rather than the queue that any saturated 2-core box builds.
PACE_MS=${PACE_MS:-4}
if [ "$PACE_MS" != "0" ]; then
  echo "== paced: empty handler (each connection pauses ${PACE_MS} ms between requests)"
  run "pacedempty" "http://$EMPTY_ADDR" / "$PACE_MS"
  echo "== paced: forward-auth"
  run "pacedauth" "http://$AUTH_ADDR" /v1/auth "$PACE_MS"
fi

rps() { awk '/Requests\/sec/ {print $2}' "$WORK/$1.txt"; }
p99() { awk '$1 == "99%" {print $2}' "$WORK/$1.txt"; }
non2xx() { awk '/Non-2xx/ {print $NF}' "$WORK/$1.txt"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", 100 * a / b }'; } # a as % of b
echo
echo "| round | empty req/s | empty p99 | forward-auth req/s | forward-auth p99 | ratio | non-2xx |"
echo "|---|---|---|---|---|---|---|"
RATIOS=()
for r in $(seq 1 "$ROUNDS"); do
  E=$(rps "empty$r"); A=$(rps "auth$r")
  R=$(pct "$A" "$E")
  RATIOS+=("$R")
  echo "| $r | $E | $(p99 "empty$r") | $A | $(p99 "auth$r") | $R % | $(non2xx "auth$r")$(non2xx "empty$r") |"
done
MED=$(printf '%s\n' "${RATIOS[@]}" | median)
if [ "$BARE" = "1" ]; then
  echo
  echo "| round | bare empty req/s | bare empty p99 | forward-auth req/s | ratio to bare |"
  echo "|---|---|---|---|---|"
  BRATIOS=()
  for r in $(seq 1 "$ROUNDS"); do
    B=$(rps "bare$r"); A=$(rps "auth$r")
    R=$(pct "$A" "$B")
    BRATIOS+=("$R")
    echo "| $r | $B | $(p99 "bare$r") | $A | $R % |"
  done
  BMED=$(printf '%s\n' "${BRATIOS[@]}" | median)
fi
if [ "$HEADERS" = "1" ]; then
  HMED=$(for r in $(seq 1 "$ROUNDS"); do pct "$(rps "headers$r")" "$(rps "empty$r")"; done | median)
fi
if [ "$PACE_MS" != "0" ]; then
  echo
  echo "| paced run (${PACE_MS} ms pause per connection) | req/s | p50 | p99 |"
  echo "|---|---|---|---|"
  p50() { awk '$1 == "50%" {print $2}' "$WORK/$1.txt"; }
  echo "| empty handler | $(rps pacedempty) | $(p50 pacedempty) | $(p99 pacedempty) |"
  echo "| forward-auth | $(rps pacedauth) | $(p50 pacedauth) | $(p99 pacedauth) |"
fi
echo
# Where the two cores went, per request served: the server's CPU time and wrk's (user +
# system). On a machine the load generator shares, the ratio is (empty server + empty client) /
# (forward-auth server + forward-auth client), so a cost on either side lowers it.
TICK=$(getconf CLK_TCK)
reqs() { awk '/requests in/ {print $1}' "$WORK/$1.txt"; }
srv_us() { awk -v t="$(cat "$WORK/$1.srvticks")" -v n="$(reqs "$1")" -v hz="$TICK" 'BEGIN { printf "%.2f\n", 1e6 * t / hz / n }'; }
cli_us() { awk -v n="$(reqs "$1")" '{ printf "%.2f\n", 1e6 * ($1 + $2) / n }' "$WORK/$1.wrkcpu"; }
echo
echo "| CPU µs per request (median of $ROUNDS rounds) | server | wrk | both |"
echo "|---|---|---|---|"
for who in empty auth $([ "$HEADERS" = "1" ] && echo headers) $([ "$BARE" = "1" ] && echo bare); do
  S=$(for r in $(seq 1 "$ROUNDS"); do srv_us "$who$r"; done | median)
  C=$(for r in $(seq 1 "$ROUNDS"); do cli_us "$who$r"; done | median)
  echo "| $who | $S | $C | $(awk -v s="$S" -v c="$C" 'BEGIN { printf "%.2f", s + c }') |"
done
echo
[ "$HEADERS" = "1" ] && echo "median empty-with-session-headers / empty = $HMED %"
[ "$BARE" = "1" ] && echo "median forward-auth / bare empty (no middleware) = $BMED %"
echo "median forward-auth / empty = $MED % over $ROUNDS interleaved rounds ($CONNS connections, $THREADS wrk threads, $DURATION each, $(nproc) cores, $SESSIONS sessions, store $STORE)"
