//! The Lua scripts. Each one touches keys of a single hash slot only (one subject, one
//! pointer, one tenant set, one hint shard or the event stream), so it runs atomically in
//! Redis Cluster too. Every value from a client (ids, hashes, records) arrives as an argument,
//! never spliced into the script text.
//!
//! Every script that changes or removes a session also publishes the change on the
//! invalidation channel *inside* the script (`PUBLISH` is not a key command, so this is allowed
//! in Cluster too, where it reaches every node's subscribers): a change that committed has been
//! announced, and there is no window in which a write succeeded but its announcement failed.

use sha1::{Digest, Sha1};

/// A script with its SHA-1, for `EVALSHA` with an `EVAL` fallback.
#[derive(Debug)]
pub(crate) struct Script {
    pub(crate) name: &'static str,
    pub(crate) lua: String,
    pub(crate) sha: String,
    /// Whether running it twice has the effect of running it once, with the same reply.
    /// The client re-sends a command that was in flight when its connection dropped; a script
    /// that is not replay-safe is sent once only, and a dropped connection is a store error
    /// (503) instead of a second run whose reply misreports the first (a created session
    /// reported as a duplicate, a committed update as a conflict).
    pub(crate) replay_safe: bool,
    /// Whether the store waits for replicas after it ([`crate::RedisOptions::wait_replicas`]):
    /// revocations and epoch bumps, whose loss in a failover would bring a revoked session
    /// back.
    pub(crate) replicated: bool,
}

impl Script {
    fn new(name: &'static str, body: &str) -> Self {
        let lua = format!("{COMMON}\n{body}");
        let sha = Sha1::digest(lua.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        Self { name, lua, sha, replay_safe: true, replicated: false }
    }

    /// Marks the script as changing state in a way a second run would not repeat.
    fn once(mut self) -> Self {
        self.replay_safe = false;
        self
    }

    /// Marks the script as a change that must reach the replicas before it is reported done.
    fn replicated(mut self) -> Self {
        self.replicated = true;
        self
    }
}

/// Helpers shared by the subject scripts.
const COMMON: &str = r#"
local function refresh(idx, dl, seen, grace)
  local top = redis.call('ZRANGE', dl, -1, -1, 'WITHSCORES')
  if #top == 0 then
    redis.call('DEL', idx, dl, seen)
    return
  end
  local at = string.format('%d', tonumber(top[2]) + tonumber(grace))
  redis.call('PEXPIREAT', idx, at)
  redis.call('PEXPIREAT', dl, at)
  redis.call('PEXPIREAT', seen, at)
end
local function announce(ch, id)
  redis.call('PUBLISH', ch, '{"kind":"changed","id":"' .. id .. '"}')
end
local function remove(base, idx, dl, seen, id)
  local rk = base .. ':s:' .. id
  local r = redis.call('HGET', rk, 'r')
  redis.call('DEL', rk)
  redis.call('ZREM', idx, id)
  redis.call('ZREM', dl, id)
  redis.call('ZREM', seen, id)
  return r
end
"#;

/// KEYS idx, dl, seen, record, epoch. ARGV base, id, json, version, created, deadline,
/// last_seen, record_expire_at, grace, now, max (0: no limit), action (deny|oldest|idlest),
/// channel. Evictions are announced on the channel. Sessions an epoch bump ended (record epoch
/// below the subject's) are dead: at the limit they are left out of the count and never
/// evicted (their records are read only then, so the usual create stays O(log n)). Returns
/// `{'dup'}`, `{'limit'}` or `{'ok', evicted records...}`.
const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[4]) == 1 then return {'dup'} end
local out = {'ok'}
local max = tonumber(ARGV[11])
if max > 0 then
  local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[10], '+inf')
  local cur = tonumber(redis.call('GET', KEYS[5]) or '0')
  if #live >= max and cur > 0 then
    -- Doubles: above 2^53 two epochs may compare equal, which only counts a dead session
    -- (never skips a live one). A record that cannot be read counts, as before.
    local kept = {}
    for _, id in ipairs(live) do
      local r = redis.call('HGET', ARGV[1] .. ':s:' .. id, 'r')
      local ok, rec = false, nil
      if r then ok, rec = pcall(cjson.decode, r) end
      if not (ok and type(rec) == 'table' and tonumber(rec.epoch) and tonumber(rec.epoch) < cur) then
        table.insert(kept, id)
      end
    end
    live = kept
  end
  if #live >= max then
    if ARGV[12] == 'deny' then return {'limit'} end
    local c = {}
    for i, id in ipairs(live) do
      c[i] = { id = id,
               created = tonumber(redis.call('ZSCORE', KEYS[1], id) or '0'),
               seen = tonumber(redis.call('ZSCORE', KEYS[3], id) or '0') }
    end
    if ARGV[12] == 'idlest' then
      table.sort(c, function(a, b)
        if a.seen ~= b.seen then return a.seen < b.seen end
        if a.created ~= b.created then return a.created < b.created end
        return a.id < b.id
      end)
    else
      table.sort(c, function(a, b)
        if a.created ~= b.created then return a.created < b.created end
        return a.id < b.id
      end)
    end
    for i = 1, #live + 1 - max do
      local r = remove(ARGV[1], KEYS[1], KEYS[2], KEYS[3], c[i].id)
      announce(ARGV[13], c[i].id)
      if r then table.insert(out, r) end
    end
  end
end
redis.call('HSET', KEYS[4], 'r', ARGV[3], 'v', ARGV[4], 'w', '1')
redis.call('PEXPIREAT', KEYS[4], ARGV[8])
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[2])
refresh(KEYS[1], KEYS[2], KEYS[3], ARGV[9])
return out
"#;

/// KEYS idx, dl, seen, record. ARGV id, expected_version, json, new_version, created,
/// deadline, last_seen, record_expire_at, grace, channel. An update is announced on the
/// channel. Returns `{'missing'}`, `{'conflict', current}` or `{'ok', previous}`.
const UPDATE: &str = r#"
local cur = redis.call('HMGET', KEYS[4], 'r', 'v')
if not cur[1] then return {'missing'} end
if cur[2] ~= ARGV[2] then return {'conflict', cur[1]} end
redis.call('HSET', KEYS[4], 'r', ARGV[3], 'v', ARGV[4])
redis.call('HINCRBY', KEYS[4], 'w', 1)
redis.call('PEXPIREAT', KEYS[4], ARGV[8])
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
refresh(KEYS[1], KEYS[2], KEYS[3], ARGV[9])
announce(ARGV[10], ARGV[1])
return {'ok', cur[1]}
"#;

/// KEYS idx, dl, seen, record. ARGV id, expected_write_count, json, deadline, last_seen,
/// record_expire_at, grace. Returns `missing`, `retry` or `ok`. Never creates.
const RENEW: &str = r#"
local w = redis.call('HGET', KEYS[4], 'w')
if not w then return 'missing' end
if w ~= ARGV[2] then return 'retry' end
redis.call('HSET', KEYS[4], 'r', ARGV[3])
redis.call('HINCRBY', KEYS[4], 'w', 1)
redis.call('PEXPIREAT', KEYS[4], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
refresh(KEYS[1], KEYS[2], KEYS[3], ARGV[7])
return 'ok'
"#;

/// The renewal in one round trip, from the caller's copy of the record (see
/// `SessionStore::renew`). KEYS idx, dl, seen, record. ARGV id, version of the copy, json
/// (the copy renewed), deadline, last_seen, record_expire_at, grace. Returns `missing` (never
/// creates), `stale` (the stored record has another version or a later deadline: renew from
/// the stored record instead) or `ok` (written, or already renewed as far by someone else).
/// Leaves the sweep hint at the older deadline: the sweeper moves it when it gets there.
const RENEW_COPY: &str = r#"
local v = redis.call('HGET', KEYS[4], 'v')
if not v then return 'missing' end
if v ~= ARGV[2] then return 'stale' end
local seen = redis.call('ZSCORE', KEYS[3], ARGV[1])
if seen and tonumber(seen) >= tonumber(ARGV[5]) then return 'ok' end
local dl = redis.call('ZSCORE', KEYS[2], ARGV[1])
if dl and tonumber(dl) > tonumber(ARGV[4]) then return 'stale' end
redis.call('HSET', KEYS[4], 'r', ARGV[3])
redis.call('HINCRBY', KEYS[4], 'w', 1)
redis.call('PEXPIREAT', KEYS[4], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
local at = tonumber(ARGV[4]) + tonumber(ARGV[7])
if redis.call('PEXPIRETIME', KEYS[1]) < at then
  at = string.format('%d', at)
  redis.call('PEXPIREAT', KEYS[1], at)
  redis.call('PEXPIREAT', KEYS[2], at)
  redis.call('PEXPIREAT', KEYS[3], at)
end
return 'ok'
"#;

/// KEYS record, epoch. Returns `{record or nil, write_count or nil, epoch or nil}`.
const LOAD: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'r', 'w')
return {h[1], h[2], redis.call('GET', KEYS[2])}
"#;

/// KEYS idx, dl, seen, record. ARGV id, grace, channel. Announces the id on the channel
/// whether or not the record was still there (a retried revocation announces again).
/// Returns the record or nil.
const DELETE: &str = r#"
local r = redis.call('HGET', KEYS[4], 'r')
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
refresh(KEYS[1], KEYS[2], KEYS[3], ARGV[2])
announce(ARGV[3], ARGV[1])
return r
"#;

/// KEYS idx, dl, seen. ARGV base, except ('' for none), grace, channel. Announces each
/// removed id. Returns the deleted records.
const DELETE_SUBJECT: &str = r#"
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if id ~= ARGV[2] then
    local r = remove(ARGV[1], KEYS[1], KEYS[2], KEYS[3], id)
    announce(ARGV[4], id)
    if r then table.insert(out, r) end
  end
end
refresh(KEYS[1], KEYS[2], KEYS[3], ARGV[3])
return out
"#;

/// KEYS idx, dl. ARGV base, now, after_score ('-inf' for none), after_id ('' for none),
/// limit. Returns up to limit + 1 live records after the cursor, oldest first.
const LIST: &str = r#"
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], '+inf', 'WITHSCORES')
local out = {}
local want = tonumber(ARGV[5]) + 1
local now = tonumber(ARGV[2])
local after = tonumber(ARGV[3])
for i = 1, #rows, 2 do
  local id = rows[i]
  if ARGV[4] == '' or tonumber(rows[i + 1]) > after or id > ARGV[4] then
    local d = redis.call('ZSCORE', KEYS[2], id)
    if d and tonumber(d) > now then
      local r = redis.call('HGET', ARGV[1] .. ':s:' .. id, 'r')
      if r then
        table.insert(out, r)
        if #out >= want then break end
      end
    end
  end
end
return out
"#;

/// KEYS idx, dl, seen. ARGV base, now, grace, channel, ids... Announces each removed id. For
/// each id: `{id, 'x', record}` when
/// removed (deadline at or before now), `{id, 'n', deadline}` when not due, `{id, 'gone'}` when
/// absent.
const SWEEP_SUBJECT: &str = r#"
local out = {}
local now = tonumber(ARGV[2])
for i = 5, #ARGV do
  local id = ARGV[i]
  local d = redis.call('ZSCORE', KEYS[2], id)
  if not d then
    table.insert(out, {id, 'gone'})
  elseif tonumber(d) <= now then
    local r = remove(ARGV[1], KEYS[1], KEYS[2], KEYS[3], id)
    announce(ARGV[4], id)
    if r then table.insert(out, {id, 'x', r}) else table.insert(out, {id, 'gone'}) end
  else
    table.insert(out, {id, 'n', d})
  end
end
refresh(KEYS[1], KEYS[2], KEYS[3], ARGV[3])
return out
"#;

/// KEYS epoch. ARGV channel, message (the subject's announcement, rendered by the caller).
/// Increments the subject's epoch (no TTL: an epoch that vanished would revive the sessions it
/// revoked) and announces it. Returns the new epoch.
const BUMP: &str = r#"
local e = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return e
"#;

/// KEYS pointer. ARGV value, expire_at. Sets the pointer unless it holds another value;
/// never shortens its TTL. Returns 1 when the pointer is ours, 0 when it names something else.
const POINTER: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
local at = tonumber(ARGV[2])
if cur then
  local t = redis.call('PEXPIRETIME', KEYS[1])
  if t > at then at = t end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', string.format('%d', at))
return 1
"#;

/// KEYS zset. ARGV member, score, expire_at, mode ('GT' keeps the greater score, '' sets).
/// Adds or moves the member and extends (never shortens) the key's TTL.
const TOUCH: &str = r#"
if ARGV[4] == 'GT' then
  redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
local t = redis.call('PEXPIRETIME', KEYS[1])
if t < tonumber(ARGV[3]) then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
return 1
"#;

/// KEYS shard. ARGV grace, then triples member, seen_score, action ('del' or a new score):
/// applied only if the member still has the score the sweeper saw (a writer that moved it
/// wins). A moved hint extends the shard's TTL to its new score plus grace (renewals leave
/// hints behind, so the sweeper is what carries them, and the shard, forward).
const HINT_FIX: &str = r#"
local grace = tonumber(ARGV[1])
local until_at = 0
for i = 2, #ARGV, 3 do
  local cur = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if cur and tonumber(cur) == tonumber(ARGV[i + 1]) then
    if ARGV[i + 2] == 'del' then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
      local at = tonumber(ARGV[i + 2]) + grace
      if at > until_at then until_at = at end
    end
  end
end
if until_at > 0 and redis.call('PEXPIRETIME', KEYS[1]) < until_at then
  redis.call('PEXPIREAT', KEYS[1], string.format('%d', until_at))
end
return 1
"#;

/// KEYS seq, log, the outbox's high-water mark. ARGV maxlen, first, last (the batch's outbox
/// sequence numbers), events (JSON)... Appends nothing (returns 0) when `first` is at or below
/// the mark: the batch already ran (its reply was lost and it was sent again), or a later one
/// did. Otherwise assigns cursors from the counter (stream entry id `<cursor>-0`) and moves
/// the mark to `last`. The mark lives a day after its last batch.
const APPEND: &str = r#"
local mark = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[2]) <= mark then return 0 end
for i = 4, #ARGV do
  local c = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], string.format('%d-0', c), 'e', ARGV[i])
end
redis.call('SET', KEYS[3], ARGV[3], 'PX', 86400000)
return 1
"#;

/// All scripts of the store.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) create: Script,
    pub(crate) update: Script,
    pub(crate) renew: Script,
    pub(crate) renew_copy: Script,
    pub(crate) load: Script,
    pub(crate) delete: Script,
    pub(crate) delete_subject: Script,
    pub(crate) list: Script,
    pub(crate) sweep_subject: Script,
    pub(crate) bump: Script,
    pub(crate) pointer: Script,
    pub(crate) touch: Script,
    pub(crate) hint_fix: Script,
    pub(crate) append: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            create: Script::new("create", CREATE).once(),
            update: Script::new("update", UPDATE).once(),
            renew: Script::new("renew", RENEW),
            renew_copy: Script::new("renew_copy", RENEW_COPY),
            load: Script::new("load", LOAD),
            delete: Script::new("delete", DELETE).once().replicated(),
            delete_subject: Script::new("delete_subject", DELETE_SUBJECT).once().replicated(),
            list: Script::new("list", LIST),
            sweep_subject: Script::new("sweep_subject", SWEEP_SUBJECT),
            bump: Script::new("bump", BUMP).once().replicated(),
            pointer: Script::new("pointer", POINTER),
            touch: Script::new("touch", TOUCH),
            hint_fix: Script::new("hint_fix", HINT_FIX),
            // Replay-safe: the outbox's high-water mark makes a second run append nothing.
            append: Script::new("append", APPEND),
        }
    }
}
