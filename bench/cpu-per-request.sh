#!/usr/bin/env bash
# Server CPU time per request: a steadier figure than requests/s on a shared 2-core machine.
#
# Each server runs pinned to CPU 0 and wrk to CPU 1 (taskset), so the server is never
# preempted by its own load generator; the server's CPU time (user + system, from
# /proc/PID/stat) over a wrk run, divided by the requests served, is its cost per request,
# kernel networking included. Three servers, interleaved ROUNDS times, median per server:
#   empty    `sessiond bench-empty`: an empty axum handler on the same server stack
#   headers  `sessiond bench-empty --session-headers`: the same, answering with the six
#            X-Session-* headers of a forward-auth 200 (the cost of the larger response)
#   auth     `sessiond serve`, GET /v1/auth with a random valid cookie of SESSIONS sessions
# The differences between the rows split the forward-auth cost into "response size" and
# "session work". Needs wrk, curl and taskset.
#
#   bench/cpu-per-request.sh                       # 10000 sessions, 64 connections, 5 rounds of 6 s
#   STORE=redis://127.0.0.1:6379 CONFIG=f.toml bench/cpu-per-request.sh   # another store
#   BIN=/tmp/sessiond-old bench/cpu-per-request.sh  # another build (not rebuilt)
set -euo pipefail

SESSIONS=${SESSIONS:-10000}
CONNS=${CONNS:-64}
DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-5}
STORE=${STORE:-embedded:}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/sessiond}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
for tool in wrk curl taskset; do command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }; done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (server and load generator on separate ones)" >&2; exit 1; }
[ -x "$BIN" ] && [ "$BIN" != "$ROOT/target/release/sessiond" ] || (cd "$ROOT" && cargo build --release -p sessiond)
EMPTY=127.0.0.1:$(free_port); HEADERS=127.0.0.1:$(free_port); AUTH=127.0.0.1:$(free_port)

CONFIG_ARGS=()
[ -n "${CONFIG:-}" ] && CONFIG_ARGS=(--config "$CONFIG")
SESSIOND_API_KEY="$KEY" SESSIOND_LOG=warn taskset -c 0 "$BIN" serve --dev --listen "$AUTH" --data-dir "$WORK/data" \
  --store "$STORE" "${CONFIG_ARGS[@]}" >"$WORK/serve.out" 2>"$WORK/serve.err" &
PIDS+=($!); AUTH_PID=$!
SESSIOND_LOG=warn taskset -c 0 "$BIN" bench-empty --listen "$EMPTY" >/dev/null 2>&1 &
PIDS+=($!); EMPTY_PID=$!
SESSIOND_LOG=warn taskset -c 0 "$BIN" bench-empty --session-headers --listen "$HEADERS" >/dev/null 2>&1 &
PIDS+=($!); HEADERS_PID=$!
for _ in $(seq 1 100); do
  curl -sf "http://$AUTH/readyz" >/dev/null && curl -s "http://$EMPTY/" >/dev/null && curl -s "http://$HEADERS/" >/dev/null && break
  sleep 0.1
done
curl -sf "http://$AUTH/readyz" >/dev/null || { cat "$WORK/serve.err" >&2; exit 1; }

create_sessions "$AUTH" "$SESSIONS"

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # user + system, in clock ticks
HZ=$(getconf CLK_TCK)
measure() { # name pid url path -> "requests/s us-per-request non2xx"
  local before after
  before=$(ticks "$2")
  TOKENS="$WORK/tokens.txt" BENCH_PATH="$4" taskset -c 1 wrk -t2 -c"$CONNS" -d"${DURATION}s" \
    -s "$ROOT/bench/forward-auth.lua" "$3" >"$WORK/$1.txt"
  after=$(ticks "$2")
  awk -v t=$((after - before)) -v hz="$HZ" \
    -v n="$(awk '/requests in/ {print $1}' "$WORK/$1.txt")" \
    -v r="$(awk '/Requests\/sec/ {print $2}' "$WORK/$1.txt")" \
    -v bad="$(awk '/Non-2xx/ {print $NF}' "$WORK/$1.txt")" \
    'BEGIN { printf "%s %.2f %d\n", r, 1e6 * t / hz / n, bad + 0 }'
}
echo "== warm-up"
for s in "$EMPTY /" "$HEADERS /" "$AUTH /v1/auth"; do
  set -- $s
  TOKENS="$WORK/tokens.txt" BENCH_PATH="$2" taskset -c 1 wrk -t2 -c"$CONNS" -d2s -s "$ROOT/bench/forward-auth.lua" "http://$1" >/dev/null
done
: >"$WORK/rows"
for r in $(seq 1 "$ROUNDS"); do
  echo "   $(date +%T) empty $(measure empty "$EMPTY_PID" "http://$EMPTY" / | tee -a "$WORK/empty.rows")"
  echo "   $(date +%T) headers $(measure headers "$HEADERS_PID" "http://$HEADERS" / | tee -a "$WORK/headers.rows")"
  echo "   $(date +%T) auth $(measure auth "$AUTH_PID" "http://$AUTH" /v1/auth | tee -a "$WORK/auth.rows")"
done
# A Redis store's keys under the configured prefix are removed (SCAN is fine outside the
# request path).
if [[ "$STORE" == redis* && -n "${CONFIG:-}" ]]; then
  prefix=$(sed -n 's/^key_prefix *= *"\([A-Za-z0-9_-]*\)".*/\1/p' "$CONFIG" | head -n 1)
  if [ -n "$prefix" ]; then
    redis-cli -u "$STORE" --scan --pattern "$prefix:*" | xargs -r -n 500 redis-cli -u "$STORE" del >/dev/null
  fi
fi
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
e=$(cut -d' ' -f2 "$WORK/empty.rows" | median)
h=$(cut -d' ' -f2 "$WORK/headers.rows" | median)
a=$(cut -d' ' -f2 "$WORK/auth.rows" | median)
echo
echo "| server (pinned to CPU 0; wrk on CPU 1) | median requests/s | median server CPU per request | non-2xx |"
echo "|---|---|---|---|"
for s in empty headers auth; do
  echo "| $s | $(cut -d' ' -f1 "$WORK/$s.rows" | median) | $(cut -d' ' -f2 "$WORK/$s.rows" | median) µs | $(awk '{ s += $3 } END { print s + 0 }' "$WORK/$s.rows") |"
done
awk -v e="$e" -v h="$h" -v a="$a" 'BEGIN {
  printf "\nforward-auth costs %.2f µs more per request than the empty handler: %.2f µs for the larger response, %.2f µs of session work (%d rounds of %s s, store %s)\n", a - e, h - e, a - h, '"$ROUNDS"', "'"$DURATION"'", "'"$STORE"'"
}'
