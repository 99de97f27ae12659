#!/usr/bin/env bash
# Where forward-auth spends the time the empty handler does not: `perf record` (cpu-clock
# sampling, so it works in VMs without hardware counters) of the forward-auth server and of
# the empty handler (`bench-empty`), each under the same wrk load (random valid cookies from
# N sessions, 64 connections), then per symbol the server CPU time per request of each and
# the difference, largest first. Kernel time spent in the server's threads is included ([k]).
# Sampling at 2 kHz: differences under ~20 ns per request are noise. Loopback only. Needs
# perf, wrk, curl and python3.
#
#   bench/perf-diff.sh                    # 8 s per server, top 40 symbols
#   DURATION=15 TOP=60 SESSIONS=10000 bench/perf-diff.sh
#   KEEP=/tmp/pd bench/perf-diff.sh       # also copy perf.auth and perf.empty there (perf annotate -i)
#   STORE=redis://127.0.0.1:6379 CONFIG=bench/redis-renewals.toml bench/perf-diff.sh
#                                         # forward-auth over another store (keys under its prefix)
#   EMPTY_FLAGS=--bare bench/perf-diff.sh  # against the bare empty handler (no middleware)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/sessiond}
SESSIONS=${SESSIONS:-10000}
DURATION=${DURATION:-8}
TOP=${TOP:-40}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
for tool in perf wrk curl python3; do command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }; done
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p sessiond)

start_auth_and_empty 3

profile() { # name pid addr path
  perf record -e cpu-clock -F 2000 -p "$2" -o "$WORK/perf.$1" -- sleep "$DURATION" >/dev/null 2>&1 &
  local rec=$!
  load "$3" "$4" "$DURATION" | awk '/Requests\/sec/ {print $2}' >"$WORK/rps.$1"
  wait "$rec" || true
  [ -n "${KEEP:-}" ] && cp "$WORK/perf.$1" "$KEEP/"
  perf report -i "$WORK/perf.$1" -n --no-children --sort sym --stdio 2>/dev/null |
    awk '/^ +[0-9.]+%/ {n = $2; $1 = ""; $2 = ""; sub(/^ +/, ""); print n "\t" $0}' >"$WORK/syms.$1"
  echo "== $1: $(cat "$WORK/rps.$1") requests/s"
}
profile auth "$AUTH_PID" "$AUTH" /v1/auth
profile empty "$EMPTY_PID" "$EMPTY" /

python3 - "$WORK" "$DURATION" "$TOP" <<'PY'
import collections, sys
work, duration, top = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
ns = collections.defaultdict(dict)
for who in ("auth", "empty"):
    reqs = float(open(f"{work}/rps.{who}").read()) * duration
    for line in open(f"{work}/syms.{who}"):
        n, sym = line.rstrip("\n").split("\t", 1)
        ns[sym][who] = int(n) * 0.5e6 / reqs  # one sample = 0.5 ms of CPU
tot = {w: sum(v.get(w, 0) for v in ns.values()) for w in ("auth", "empty")}
print(f"server CPU per request: forward-auth {tot['auth']:.0f} ns, empty {tot['empty']:.0f} ns, "
      f"difference {tot['auth'] - tot['empty']:.0f} ns")
for side, mark in (("kernel", "[k]"), ("user", "[.]")):
    a = sum(v.get("auth", 0) for s, v in ns.items() if s.startswith(mark))
    e = sum(v.get("empty", 0) for s, v in ns.items() if s.startswith(mark))
    print(f"  {side}: forward-auth {a:.0f} ns, empty {e:.0f} ns, difference {a - e:.0f} ns")
rows = sorted(((v.get("auth", 0) - v.get("empty", 0), v.get("auth", 0), s) for s, v in ns.items()), reverse=True)
print(f"{'diff ns':>8} {'auth ns':>8}  symbol (the {top} largest differences)")
for d, a, s in rows[:top]:
    print(f"{d:8.0f} {a:8.0f}  {s[:120]}")
PY
