#!/usr/bin/env bash
# Many nodes over Redis: forward-auth throughput with and without the near-cache, against an
# empty axum handler on the same server stack in the same run (and against the bare empty
# handler, `bench-empty --bare`, no middleware); Redis operations per resolve
# (INFO commandstats deltas / requests); revocation propagation between two nodes
# (crates/sessiond/examples/propagation.rs). Loopback only; a private redis-server on a free
# port (no persistence), killed at the end. Needs wrk, curl, redis-server and redis-cli.
#
#   bench/distributed.sh                       # 10000 sessions, 64 connections, 40 s warm-up,
#                                              # 7 interleaved rounds of 15 s, 1000 revocations
#   NEAR_CACHE_TTL_MS=1000 bench/distributed.sh  # another near-cache TTL (default 30000, the server default)
#   SESSIONS=10000 CONNS=64 WARMUP=40 ROUND_WARMUP=5 DURATION=15s THREADS=2 ROUNDS=1000 LOAD_ROUNDS=7 bench/distributed.sh
#   WARMUP=3 ROUND_WARMUP=0 DURATION=40s LOAD_ROUNDS=3 bench/distributed.sh   # the method before 2026-12-03 (ninth session)
#
# Steady state, not a warm cache: the near-cache node is warmed up for WARMUP seconds (default
# 40), longer than the 30 s near-cache TTL, so that every cached entry has expired and been
# fetched again at least once before the first measured round, and the entries' expiries are
# spread as in a long run. Between its rounds the node is idle while the baselines run, so
# entries expire and sessions come due for renewal (every 45-90 s each) as they would not
# under continuous traffic; every run (baselines too) is therefore preceded by ROUND_WARMUP
# seconds (default 5) of unmeasured load, in which that backlog is worked off. ROUND_WARMUP=0
# measures the rounds with their start-up bursts. Many short rounds, with the order of the
# three servers reversed every other round, cancel the shared host's slow drift better than
# few long ones.
#
# Reuses bench/forward-auth.lua (random valid cookie per request) from bench/forward-auth.sh.
set -euo pipefail

SESSIONS=${SESSIONS:-10000}
CONNS=${CONNS:-64}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-40}
ROUND_WARMUP=${ROUND_WARMUP:-5}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-1000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/target/release/sessiond"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
# Free ports unless given (other benchmarks may be running on the usual ones).
CACHED_ADDR=${CACHED_ADDR:-127.0.0.1:$(free_port)}
PEER_ADDR=${PEER_ADDR:-127.0.0.1:$(free_port)}
NOCACHE_ADDR=${NOCACHE_ADDR:-127.0.0.1:$(free_port)}
EMPTY_ADDR=${EMPTY_ADDR:-127.0.0.1:$(free_port)}
BARE_ADDR=${BARE_ADDR:-127.0.0.1:$(free_port)}

for tool in wrk curl redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
(cd "$ROOT" && cargo build --release -p sessiond --bin sessiond --example propagation)

REDIS_PORT=$(free_port)
echo "== private redis-server on 127.0.0.1:$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" --daemonize no \
  >"$WORK/redis.out" 2>&1 &
PIDS+=($!); NAMES=("redis-server")
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
STORE="redis://127.0.0.1:$REDIS_PORT"

# One signing key for every node (32 random bytes, unpadded base64url).
head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=' >"$WORK/signing-key"
chmod 600 "$WORK/signing-key"
printf 'near_cache = true\nnear_cache_ttl_ms = %s\n[redis]\nkey_prefix = "bench"\n' "${NEAR_CACHE_TTL_MS:-30000}" >"$WORK/cached.toml"
printf 'near_cache = false\n[redis]\nkey_prefix = "bench"\n' >"$WORK/nocache.toml"

start() { # name addr config
  SESSIOND_API_KEY="$KEY" SESSIOND_LOG=warn "$BIN" serve --dev --listen "$2" --data-dir "$WORK/$1" \
    --config "$3" --store "$STORE" --signing-key-file "$WORK/signing-key" >"$WORK/$1.out" 2>"$WORK/$1.err" &
  PIDS+=($!); NAMES+=("node $1")
}
echo "== starting nodes: near-cache $CACHED_ADDR and $PEER_ADDR, no near-cache $NOCACHE_ADDR; bench-empty $EMPTY_ADDR"
start cached "$CACHED_ADDR" "$WORK/cached.toml"
start peer "$PEER_ADDR" "$WORK/cached.toml"
start nocache "$NOCACHE_ADDR" "$WORK/nocache.toml"
SESSIOND_LOG=warn "$BIN" bench-empty --listen "$EMPTY_ADDR" >"$WORK/empty.out" 2>"$WORK/empty.err" &
PIDS+=($!); NAMES+=("bench-empty")
# The bare empty axum handler (no middleware): forward-auth's common case skips the router's
# middleware (decision D25), so it is compared with this baseline too.
SESSIOND_LOG=warn "$BIN" bench-empty --bare --listen "$BARE_ADDR" >"$WORK/bare.out" 2>"$WORK/bare.err" &
PIDS+=($!); NAMES+=("bench-empty-bare")
for addr in "$CACHED_ADDR" "$PEER_ADDR" "$NOCACHE_ADDR"; do
  for _ in $(seq 1 100); do curl -sf "http://$addr/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://$addr/readyz" >/dev/null || { echo "the node on $addr is not ready:" >&2; cat "$WORK"/*.err >&2; exit 1; }
done
for _ in $(seq 1 100); do curl -s "http://$EMPTY_ADDR/" >/dev/null && curl -s "http://$BARE_ADDR/" >/dev/null && break; sleep 0.1; done

create_sessions "$CACHED_ADDR" "$SESSIONS"

stats() { # "command calls" lines (commands run inside Lua scripts are counted too)
  redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | awk -F'[=,:]' '/^cmdstat_/ { sub("cmdstat_", "", $1); print $1, $3 }'
}
# CPU time (user + system, clock ticks) of every process this script started, one per line.
ticks() { for p in "${PIDS[@]}"; do awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0; done; }
run() { # name url path
  # Unmeasured load first (ROUND_WARMUP seconds): the server is measured in steady state, not
  # while it works off what piled up while it stood idle during the other servers' runs.
  if [ "$ROUND_WARMUP" -gt 0 ]; then
    TOKENS="$WORK/tokens.txt" BENCH_PATH="$3" wrk -t"$THREADS" -c"$CONNS" -d"${ROUND_WARMUP}s" \
      -s "$ROOT/bench/forward-auth.lua" "$2" >/dev/null
  fi
  stats >"$WORK/$1.before"
  ticks >"$WORK/$1.ticks0"
  local t0; t0=$(date +%s.%N)
  TOKENS="$WORK/tokens.txt" BENCH_PATH="$3" /usr/bin/time -f "%U %S" -o "$WORK/$1.wrkcpu" \
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$ROOT/bench/forward-auth.lua" "$2" | tee "$WORK/$1.txt" >&2
  echo "$t0 $(date +%s.%N)" >"$WORK/$1.wall"
  ticks >"$WORK/$1.ticks1"
  stats >"$WORK/$1.after"
  # Per-command deltas (the INFO call itself is left out), and their total.
  awk 'NR == FNR { b[$1] = $2; next } $1 != "info" && $2 - b[$1] > 0 { print $1, $2 - b[$1] }' \
    "$WORK/$1.before" "$WORK/$1.after" | sort -k2 -nr >"$WORK/$1.delta"
  awk '{ s += $2 } END { print s + 0 }' "$WORK/$1.delta" >"$WORK/$1.redis"
}
echo "== warm-up: ${WARMUP} s on the near-cache node, 3 s on the others"
TOKENS="$WORK/tokens.txt" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$ROOT/bench/forward-auth.lua" "http://$CACHED_ADDR" >/dev/null
TOKENS="$WORK/tokens.txt" wrk -t"$THREADS" -c"$CONNS" -d3s -s "$ROOT/bench/forward-auth.lua" "http://$NOCACHE_ADDR" >/dev/null
for addr in "$EMPTY_ADDR" "$BARE_ADDR"; do
  TOKENS="$WORK/tokens.txt" BENCH_PATH=/ wrk -t"$THREADS" -c"$CONNS" -d3s -s "$ROOT/bench/forward-auth.lua" "http://$addr" >/dev/null
done
# The empty handler and the cached node alternate LOAD_ROUNDS times (the machine is shared and
# its load drifts); the table shows the round with the median ratio, and every round's ratio.
LOAD_ROUNDS=${LOAD_ROUNDS:-7}
RATIOS=()
BRATIOS=()
baseline() { # empty|bare round
  case $1 in
    empty) echo "== round $2: empty handler (GET /, same stack)"; run "empty$2" "http://$EMPTY_ADDR" / ;;
    bare) echo "== round $2: bare empty handler (GET /, no middleware)"; run "bare$2" "http://$BARE_ADDR" / ;;
  esac
}
for r in $(seq 1 "$LOAD_ROUNDS"); do
  # Odd rounds: empty, cached, bare; even rounds: bare, cached, empty (a linear drift of the
  # host's speed then favours neither baseline).
  if [ $((r % 2)) -eq 0 ]; then order=(bare empty); else order=(empty bare); fi
  baseline "${order[0]}" "$r"
  echo "== round $r: forward-auth over Redis, near-cache on (TTL ${NEAR_CACHE_TTL_MS:-30000} ms)"
  run "cached$r" "http://$CACHED_ADDR" /v1/auth
  baseline "${order[1]}" "$r"
  BRATIOS+=("$(awk -v a="$(awk '/Requests\/sec/ {print $2}' "$WORK/cached$r.txt")" \
    -v b="$(awk '/Requests\/sec/ {print $2}' "$WORK/bare$r.txt")" 'BEGIN { printf "%.1f", 100 * a / b }')")
  RATIOS+=("$(awk -v a="$(awk '/Requests\/sec/ {print $2}' "$WORK/cached$r.txt")" \
    -v e="$(awk '/Requests\/sec/ {print $2}' "$WORK/empty$r.txt")" 'BEGIN { printf "%.1f", 100 * a / e }') $r")
done
MED_ROUND=$(printf '%s\n' "${RATIOS[@]}" | sort -g | awk '{ a[NR] = $2 } END { print a[int((NR + 1) / 2)] }')
for f in txt delta redis ticks0 ticks1 wall wrkcpu; do
  cp "$WORK/empty$MED_ROUND.$f" "$WORK/empty.$f"
  cp "$WORK/cached$MED_ROUND.$f" "$WORK/cached.$f"
  cp "$WORK/bare$MED_ROUND.$f" "$WORK/bare.$f"
done
echo "== forward-auth over Redis, near-cache off"
run nocache "http://$NOCACHE_ADDR" /v1/auth

rps() { awk '/Requests\/sec/ {print $2}' "$WORK/$1.txt"; }
p99() { awk '$1 == "99%" {print $2}' "$WORK/$1.txt"; }
reqs() { awk '/requests in/ {print $1}' "$WORK/$1.txt"; }
non2xx() { awk '/Non-2xx/ {print $NF}' "$WORK/$1.txt"; }
per() { awk -v c="$(cat "$WORK/$1.redis")" -v r="$(reqs "$1")" 'BEGIN { printf "%.3f", c / r }'; }
pct() { awk -v a="$(rps "$1")" -v e="$(rps empty)" 'BEGIN { printf "%.1f %%", 100 * a / e }'; }
echo
echo "| run | requests/s | vs empty | p99 | non-2xx | Redis commands per request |"
echo "|---|---|---|---|---|---|"
echo "| empty axum handler (same stack) | $(rps empty) | 100 % | $(p99 empty) | $(non2xx empty) | – |"
echo "| bare empty axum handler (no middleware) | $(rps bare) | $(pct bare) | $(p99 bare) | $(non2xx bare) | – |"
echo "| forward-auth, Redis + near-cache (${NEAR_CACHE_TTL_MS:-30000} ms) | $(rps cached) | $(pct cached) | $(p99 cached) | $(non2xx cached) | $(per cached) |"
echo "| forward-auth, Redis, no near-cache | $(rps nocache) | $(pct nocache) | $(p99 nocache) | $(non2xx nocache) | $(per nocache) |"
echo
echo "($SESSIONS sessions, $CONNS connections, $THREADS wrk threads, $DURATION per run after ${ROUND_WARMUP} s unmeasured, ${WARMUP} s warm-up first, $(nproc) cores;"
echo " empty/cached rows: round $MED_ROUND, the median of $LOAD_ROUNDS interleaved rounds with ratios" \
  "$(printf '%s\n' "${RATIOS[@]}" | sort -k2 -n | awk '{ printf "%s%s %%", (NR > 1 ? ", " : ""), $1 }'))"
echo " forward-auth with near-cache / bare empty handler, every round: $(printf '%s %%, ' "${BRATIOS[@]}" | sed 's/, $//')," \
  "median $(printf '%s\n' "${BRATIOS[@]}" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }') %"
# Every round, not only the median one: the rounds that hold the renewal burst (all sessions
# were created together, so they renew together every 90 s) run many more Redis commands.
for r in $(seq 1 "$LOAD_ROUNDS"); do
  echo "round $r: cached/empty $(printf '%s\n' "${RATIOS[@]}" | awk -v r="$r" '$2 == r { print $1 }') %," \
    "$(per "cached$r") Redis commands per request," \
    "$(awk '$1 == "xadd" { print $2 }' "$WORK/cached$r.delta" | grep . || echo 0) events appended (renewals)"
done
for r in cached nocache; do
  echo "Redis commands during '$r' per request: $(awk -v n="$(reqs "$r")" '{ printf "%s %.3f  ", $1, $2 / n }' "$WORK/$r.delta")"
done
# Where the two cores went during each run: every process's CPU time over the run's wall time
# (100 % = one core), and per request.
cpu() { # run
  local wall; wall=$(awk '{ print $2 - $1 }' "$WORK/$1.wall")
  local hz; hz=$(getconf CLK_TCK)
  local n; n=$(reqs "$1")
  printf '%s' "CPU during '$1' (% of one core; µs per request):"
  paste -d' ' "$WORK/$1.ticks0" "$WORK/$1.ticks1" | awk -v w="$wall" -v hz="$hz" -v n="$n" -v names="$(IFS='|'; echo "${NAMES[*]}")" '
    BEGIN { split(names, nm, "|") } { d = ($2 - $1) / hz; printf "  %s %.1f %% (%.1f)", nm[NR], 100 * d / w, 1e6 * d / n }'
  awk -v w="$wall" -v n="$n" '{ d = $1 + $2; printf "  wrk %.1f %% (%.1f)\n", 100 * d / w, 1e6 * d / n }' "$WORK/$1.wrkcpu"
}
cpu empty; cpu bare; cpu cached; cpu nocache
echo
echo "== revocation propagation: $ROUNDS revocations on $CACHED_ADDR, polled on $PEER_ADDR"
"$ROOT/target/release/examples/propagation" "http://$CACHED_ADDR" "http://$PEER_ADDR" "$KEY" "$ROUNDS"
