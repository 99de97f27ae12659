#!/usr/bin/env bash
# Resident memory of a forward-auth server under a long load that nobody scrapes: the
# server's RSS (VmRSS) after a warm-up, then after each of ROUNDS further wrk runs, and the
# growth per million requests. A server whose memory does not depend on how many requests it
# served shows a growth near 0 after the warm-up; one that keeps something per request (as
# unscraped Prometheus histogram samples were kept before `/metrics` upkeep ran on a timer,
# decision D27) grows linearly. Loopback only. Needs wrk and curl.
#
#   bench/memory-under-load.sh                      # 10000 sessions, 4 rounds of 15 s
#   ROUNDS=4 DURATION=15 SESSIONS=10000 BIN=/tmp/sessiond-old bench/memory-under-load.sh
#   STORE=redis://127.0.0.1:6379 CONFIG=bench/redis-cached.toml bench/memory-under-load.sh
set -euo pipefail

SESSIONS=${SESSIONS:-10000}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-15}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/sessiond}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p sessiond --bin sessiond)

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
requests() { awk '/requests in/ { print $1 }' "$1"; }

start_auth_and_empty 5
echo "== after the warm-up: forward-auth $(rss_kb "$AUTH_PID") kB, empty handler $(rss_kb "$EMPTY_PID") kB"
for name in forward-auth empty; do
  if [ "$name" = forward-auth ]; then pid=$AUTH_PID addr=$AUTH path=/v1/auth; else pid=$EMPTY_PID addr=$EMPTY path=/; fi
  start=$(rss_kb "$pid") total=0
  for r in $(seq 1 "$ROUNDS"); do
    load "$addr" "$path" "$DURATION" >"$WORK/$name.$r.txt"
    total=$((total + $(requests "$WORK/$name.$r.txt")))
    echo "$name round $r: $(requests "$WORK/$name.$r.txt") requests, RSS $(rss_kb "$pid") kB"
  done
  end=$(rss_kb "$pid")
  awk -v s="$start" -v e="$end" -v n="$total" -v name="$name" 'BEGIN {
    printf "%s: %d requests, RSS %d -> %d kB, growth %.1f kB per million requests (%.1f bytes per request)\n",
      name, n, s, e, (e - s) / (n / 1e6), 1024 * (e - s) / n }' | tee -a "$WORK/summary"
done
echo
cat "$WORK/summary"
