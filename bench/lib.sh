# Shared by the bench scripts (sourced, not run): a work directory and the processes to stop
# on exit, free ports, and the sessions every load test draws its cookies from.
# Needs ROOT set by the sourcing script; sets WORK, KEY and PIDS.

WORK=$(mktemp -d)
KEY="sdk_bench_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# create_sessions ADDR COUNT: creates COUNT sessions (subjects user-1..user-COUNT) through the
# node at ADDR with the API key $KEY, one keep-alive curl, and writes their tokens to
# $WORK/tokens.txt, one per line. Fails unless every create returned a token.
create_sessions() {
  echo "== creating $2 sessions"
  {
    for i in $(seq 1 "$2"); do
      [ "$i" -gt 1 ] && echo next
      printf 'url = "http://%s/v1/sessions"\nheader = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\ndata = "{\\"subject\\":\\"user-%d\\"}"\n' \
        "$1" "$KEY" "$i"
    done
  } >"$WORK/create.curl"
  curl -s -K "$WORK/create.curl" | grep -o '"token":"sds_[^"]*"' | cut -d'"' -f4 >"$WORK/tokens.txt"
  local count
  count=$(wc -l <"$WORK/tokens.txt")
  echo "   $count tokens"
  [ "$count" -eq "$2" ] || { echo "expected $2 tokens" >&2; return 1; }
}

# start_auth_and_empty: starts `$BIN serve --dev` (API key $KEY; store ${STORE:-embedded:},
# config file $CONFIG if set) and `$BIN bench-empty $EMPTY_FLAGS` on free ports, creates $SESSIONS
# sessions, warms both up for $1 seconds of wrk with random valid cookies, and sets AUTH,
# EMPTY, AUTH_PID, EMPTY_PID and load().
start_auth_and_empty() {
  AUTH=127.0.0.1:$(free_port); EMPTY=127.0.0.1:$(free_port)
  local extra=()
  [ -n "${CONFIG:-}" ] && extra=(--config "$CONFIG")
  SESSIOND_API_KEY="$KEY" SESSIOND_LOG=warn "$BIN" serve --dev --listen "$AUTH" --data-dir "$WORK/data" \
    --store "${STORE:-embedded:}" "${extra[@]}" >/dev/null 2>"$WORK/auth.err" &
  PIDS+=($!); AUTH_PID=$!
  # shellcheck disable=SC2086 # EMPTY_FLAGS: words, e.g. "--bare"
  SESSIOND_LOG=warn "$BIN" bench-empty ${EMPTY_FLAGS:-} --listen "$EMPTY" >/dev/null 2>&1 &
  PIDS+=($!); EMPTY_PID=$!
  for _ in $(seq 1 100); do curl -sf "http://$AUTH/readyz" >/dev/null && curl -s "http://$EMPTY/" >/dev/null && break; sleep 0.1; done
  create_sessions "$AUTH" "$SESSIONS"
  # load ADDR PATH SECONDS: wrk -t2 -c64 with a random valid cookie per request.
  load() { TOKENS="$WORK/tokens.txt" BENCH_PATH=$2 wrk -t2 -c64 -d"$3"s -s "$ROOT/bench/forward-auth.lua" "http://$1"; }
  load "$AUTH" /v1/auth "$1" >/dev/null
  load "$EMPTY" / "$1" >/dev/null
}
