#!/usr/bin/env bash
# Server-side instructions per request, counted by valgrind's callgrind: the empty handler
# (`bench-empty`), the empty handler answering with the six session headers
# (`bench-empty --session-headers`), the empty handler taking an `Arc` state from the router as
# every v1 handler does (`bench-empty --with-state`) and forward-auth with valid cookies drawn
# at random from N sessions, and the bare empty handler (`bench-empty --bare`, no middleware;
# BARE=0 leaves it out). Instruction counts do not depend on what else the machine is doing, so unlike
# requests/s they can tell two builds apart by a few percent on a shared, noisy machine; they
# are not time (cache misses, system calls and the client are not in them), so the bars stay
# measured by bench/forward-auth.sh. Loopback only. Needs valgrind, curl and python3.
#
#   bench/instructions.sh                      # 2000 measured requests per server
#   REQUESTS=5000 SESSIONS=10000 BIN=/tmp/sessiond-old bench/instructions.sh
#   REDIS=1 bench/instructions.sh               # forward-auth over a private redis-server
#                                              # with the near-cache (needs redis-server)
#   KEEP=/tmp/cg bench/instructions.sh          # keep the callgrind files there, for
#                                              # callgrind_annotate --inclusive=yes FILE
#
# Prints, per server, the instructions per request (total over all threads, measured after a
# warm-up, client excluded), the difference to the empty handler, and how many of them are
# SHA-256 compressions: valgrind's virtual CPU has no SHA extensions, so the sha2 crate runs
# its software rounds here (~3,400 instructions per 64-byte block; three blocks per token
# check), where a CPU with SHA-NI runs a few hundred.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/sessiond}
SESSIONS=${SESSIONS:-10000}
REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-500}
KEEP=${KEEP:-}
REDIS=${REDIS:-0}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
for tool in valgrind callgrind_control curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install -y valgrind curl python3)" >&2; exit 1; }
done
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p sessiond)

wait_up() { for _ in $(seq 1 600); do curl -s -o /dev/null "http://$1$2" && return 0; sleep 0.1; done; return 1; }

# The store: the embedded one in $WORK/data, or a private redis-server (no persistence) with
# the near-cache on, every node sharing one signing key.
STORE_ARGS=(--data-dir "$WORK/data")
if [ "$REDIS" = "1" ]; then
  command -v redis-server >/dev/null || { echo "redis-server is missing" >&2; exit 1; }
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null 2>&1 &
  PIDS+=($!)
  head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=' >"$WORK/signing-key"
  chmod 600 "$WORK/signing-key"
  printf 'near_cache = true\n[redis]\nkey_prefix = "bench"\n' >"$WORK/redis.toml"
  STORE_ARGS+=(--store "redis://127.0.0.1:$REDIS_PORT" --config "$WORK/redis.toml" --signing-key-file "$WORK/signing-key")
fi

# The sessions, created by a normal (fast) server; the measured one opens the same store
# afterwards.
AUTH=127.0.0.1:$(free_port)
SESSIOND_API_KEY="$KEY" SESSIOND_LOG=warn "$BIN" serve --dev --listen "$AUTH" "${STORE_ARGS[@]}" >/dev/null 2>"$WORK/create.err" &
PIDS+=($!)
wait_up "$AUTH" /readyz || { cat "$WORK/create.err" >&2; exit 1; }
create_sessions "$AUTH" "$SESSIONS"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

# drive ADDR PATH COUNT: COUNT keep-alive GETs of PATH over 4 connections, each with the
# cookie of a random token (COUNT 0: every token once, in order); fails on any non-2xx answer.
drive() {
  python3 - "$1" "$2" "$3" "$WORK/tokens.txt" <<'EOF'
import http.client, random, sys, threading
addr, path, count, tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
host, port = addr.rsplit(":", 1)
toks = [l.strip() for l in open(tokens) if l.strip()]
bad = []
def worker(n, seed):
    rnd = random.Random(seed)
    c = http.client.HTTPConnection(host, int(port))
    mine = toks[seed::4] if count == 0 else [rnd.choice(toks) for _ in range(n)]
    for t in mine:
        c.request("GET", path, headers={"Cookie": "sid=" + t})
        r = c.getresponse(); r.read()
        if r.status // 100 != 2: bad.append(r.status)
per = count // 4
ts = [threading.Thread(target=worker, args=(per + (count % 4 if i == 0 else 0), i)) for i in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
if bad: sys.exit(f"{len(bad)} non-2xx answers, e.g. {bad[0]}")
EOF
}

# measure NAME PATH ARGS...: starts `sessiond ARGS` under callgrind with instrumentation off,
# warms it up (every session once, so that the resolve cache holds them all as it does in a
# long wrk run, then WARMUP random requests), counts REQUESTS requests, prints instructions per
# request.
measure() {
  local name=$1 path=$2; shift 2
  local addr=127.0.0.1:$(free_port) out="$WORK/callgrind.$name"
  SESSIOND_API_KEY="$KEY" SESSIOND_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out.%p" "$BIN" "$@" --listen "$addr" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  local pid=$!
  PIDS+=($pid)
  wait_up "$addr" "$path" || { cat "$WORK/$name.err" >&2; exit 1; }
  drive "$addr" "$path" 0
  callgrind_control -i on "$pid" >/dev/null 2>&1
  drive "$addr" "$path" "$WARMUP"
  callgrind_control -z "$pid" >/dev/null 2>&1
  drive "$addr" "$path" "$REQUESTS"
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  [ -z "$KEEP" ] || { mkdir -p "$KEEP" && cp "$out".$pid.1 "$KEEP/callgrind.$name"; }
  # The dump after -z holds only the measured requests; sum its per-thread totals.
  local total sha
  total=$(cat "$out".$pid.* 2>/dev/null | awk '/^totals:/ {s += $2} END {print s + 0}')
  # Valgrind's CPU has no SHA extensions, so SHA-256 runs in software here (~3,400
  # instructions per block); natively it takes the SHA-NI path where the CPU has one.
  sha=$(callgrind_annotate --auto=no --threshold=100 "$out".$pid.1 2>/dev/null |
    awk '/compress256/ {c = $1; gsub(",", "", c); s += c} END {print s + 0}')
  echo "$name $((total / REQUESTS)) $((sha / REQUESTS))" >>"$WORK/results"
}

: >"$WORK/results"
measure empty / bench-empty
measure headers / bench-empty --session-headers
measure with-state / bench-empty --with-state
measure forward-auth /v1/auth serve --dev "${STORE_ARGS[@]}"
# The bare empty axum handler, without the common middleware (BARE=0 for builds without it).
[ "${BARE:-1}" = "0" ] || measure bare / bench-empty --bare

echo "== server instructions per request ($REQUESTS requests after $WARMUP warm-up, $SESSIONS sessions)"
base=$(awk '$1 == "empty" {print $2}' "$WORK/results")
awk -v b="$base" '{printf "%-14s %8d  (%+d over the empty handler; SHA-256 blocks in software: %d)\n", $1, $2, $2 - b, $3}' "$WORK/results"
