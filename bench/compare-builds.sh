#!/usr/bin/env bash
# A/B of two sessiond builds: forward-auth of each against the empty axum handler (same server
# stack, `sessiond bench-empty` of the NEW build), in many short interleaved rounds, so that
# the drift of a shared machine hits both builds alike. Both builds serve copies of one
# embedded data directory (the same 10,000 sessions and signing key). Loopback only. Needs wrk
# and curl.
#
#   # the build to compare against, e.g. the commit before a change:
#   git stash && cargo build --release -p sessiond && cp target/release/sessiond /tmp/sessiond-old && git stash pop
#   cargo build --release -p sessiond
#   OLD=/tmp/sessiond-old bench/compare-builds.sh            # NEW defaults to target/release/sessiond
#   OLD=… NEW=… ROUNDS=21 DURATION=2s SESSIONS=10000 CONNS=64 bench/compare-builds.sh
#
# Prints each round's requests/s and ratios, the median ratio of each build and in how many
# rounds NEW beat OLD.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OLD=${OLD:?set OLD to the sessiond binary to compare against}
NEW=${NEW:-$ROOT/target/release/sessiond}
SESSIONS=${SESSIONS:-10000}
CONNS=${CONNS:-64}
DURATION=${DURATION:-2s}
ROUNDS=${ROUNDS:-21}
THREADS=${THREADS:-2}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
for tool in wrk curl; do command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }; done

EMPTY=127.0.0.1:$(free_port); A_OLD=127.0.0.1:$(free_port); A_NEW=127.0.0.1:$(free_port)
serve() { # binary addr data-dir
  SESSIOND_API_KEY="$KEY" SESSIOND_LOG=warn "$1" serve --dev --listen "$2" --data-dir "$3" >/dev/null 2>"$3.err" &
  PIDS+=($!)
}
wait_ready() { for _ in $(seq 1 100); do curl -sf "http://$1/readyz" >/dev/null && return 0; sleep 0.1; done; return 1; }

echo "== creating $SESSIONS sessions with the NEW build, then copying its data directory"
mkdir -p "$WORK/old" "$WORK/new"
serve "$NEW" "$A_NEW" "$WORK/new"
wait_ready "$A_NEW"
create_sessions "$A_NEW" "$SESSIONS"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
cp -r "$WORK/new/." "$WORK/old/"
SESSIOND_LOG=warn "$NEW" bench-empty --listen "$EMPTY" >/dev/null 2>&1 &
PIDS+=($!)
serve "$OLD" "$A_OLD" "$WORK/old"
serve "$NEW" "$A_NEW" "$WORK/new"
wait_ready "$A_OLD" && wait_ready "$A_NEW" || { cat "$WORK"/*.err >&2; exit 1; }
for _ in $(seq 1 100); do curl -s "http://$EMPTY/" >/dev/null && break; sleep 0.1; done

run() { # addr path -> "requests/s non2xx"
  TOKENS="$WORK/tokens.txt" BENCH_PATH="$2" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" \
    -s "$ROOT/bench/forward-auth.lua" "http://$1" | awk '/Requests\/sec/ {r=$2} /Non-2xx/ {b=$NF} END {print r, b+0}'
}
echo "== warm-up"
run "$EMPTY" / >/dev/null; run "$A_OLD" /v1/auth >/dev/null; run "$A_NEW" /v1/auth >/dev/null
echo "| round | empty req/s | OLD req/s | OLD ratio | NEW req/s | NEW ratio | non-2xx |"
echo "|---|---|---|---|---|---|---|"
: >"$WORK/ratios"
for r in $(seq 1 "$ROUNDS"); do
  read -r e _ < <(run "$EMPTY" /)
  # Alternate which build goes first, so neither always follows the empty handler.
  if [ $((r % 2)) -eq 1 ]; then
    read -r o ob < <(run "$A_OLD" /v1/auth); read -r n nb < <(run "$A_NEW" /v1/auth)
  else
    read -r n nb < <(run "$A_NEW" /v1/auth); read -r o ob < <(run "$A_OLD" /v1/auth)
  fi
  ro=$(awk -v a="$o" -v e="$e" 'BEGIN { printf "%.1f", 100 * a / e }')
  rn=$(awk -v a="$n" -v e="$e" 'BEGIN { printf "%.1f", 100 * a / e }')
  echo "$ro $rn" >>"$WORK/ratios"
  echo "| $r | $e | $o | $ro % | $n | $rn % | $((ob + nb)) |"
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo
echo "median forward-auth / empty: OLD $(cut -d' ' -f1 "$WORK/ratios" | median) %, NEW $(cut -d' ' -f2 "$WORK/ratios" | median) %;" \
  "NEW ahead in $(awk '$2 > $1' "$WORK/ratios" | wc -l) of $ROUNDS rounds ($CONNS connections, $DURATION each, $(nproc) cores, $SESSIONS sessions)"
