#!/usr/bin/env bash
# Scheduler events per request: how often the server's threads wake the load generator and
# how often they are preempted (sched_switch with prev_state=R), for forward-auth against the
# empty handler, each under the same wrk load (random valid cookies from N sessions, 64
# connections). On a 2-core machine shared with wrk these context switches are part of what
# the throughput ratio measures. Needs perf (sched tracepoints), wrk and curl.
#
#   bench/sched-events.sh                   # 10000 sessions, 4 s per server
#   SESSIONS=100 DURATION=6 bench/sched-events.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/sessiond}
SESSIONS=${SESSIONS:-10000}
DURATION=${DURATION:-4}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
for tool in perf wrk curl; do command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }; done
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p sessiond)

start_auth_and_empty 2

for who in "auth $AUTH_PID $AUTH /v1/auth" "empty $EMPTY_PID $EMPTY /"; do
  read -r name pid addr path <<<"$who"
  perf record -e sched:sched_wakeup,sched:sched_switch -p "$pid" -o "$WORK/sched.$name" -- sleep "$DURATION" >/dev/null 2>&1 &
  rec=$!
  rps=$(load "$addr" "$path" "$DURATION" | awk '/Requests\/sec/ {print $2}')
  wait "$rec" || true
  perf script -i "$WORK/sched.$name" 2>/dev/null | awk -v rps="$rps" -v d="$DURATION" -v name="$name" '
    /sched_wakeup/ && /comm=wrk/ { woke++ }
    /sched_switch/ && /prev_state=R / { preempted++ }
    /sched_switch/ && /prev_state=S / { slept++ }
    END {
      n = rps * d
      printf "%-6s %10.0f req/s  per request: woke wrk %.3f, preempted %.3f, went to sleep %.3f\n", name, rps, woke / n, preempted / n, slept / n
    }'
done
