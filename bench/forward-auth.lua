-- wrk script: GET $BENCH_PATH (default /v1/auth) with the session cookie of a token drawn at
-- random from $TOKENS (one token per line). The same script drives the empty-handler baseline,
-- so both runs pay the same client-side cost.
local tokens = {}
local path = os.getenv("BENCH_PATH") or "/v1/auth"
local cookie_name = os.getenv("COOKIE_NAME") or "sid"
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  for line in io.lines(os.getenv("TOKENS") or "tokens.txt") do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  math.randomseed(os.time() * 1000 + (seed or 0))
end

-- $PACE_MS: each connection waits this long after a response before sending its next request
-- (open-loop-ish load at a fixed rate below saturation), for latency rather than throughput.
local pace = tonumber(os.getenv("PACE_MS") or "")
if pace and pace > 0 then
  function delay()
    return pace
  end
end

function request()
  local t = tokens[math.random(#tokens)]
  return wrk.format("GET", path, { ["Cookie"] = cookie_name .. "=" .. t })
end
-- No response() callback: it would make wrk copy every header into Lua, a client cost that
-- grows with the number of response headers and would skew the comparison. wrk reports
-- non-2xx responses itself.
