//! The Lua scripts that run the shared budget inside Redis. Every decision that reads and
//! then writes shared state happens in one script, so it is atomic; time is Redis's own
//! clock (`TIME`), so replicas' clocks never matter.
//!
//! Keys (one hash tag per API key, so all of a key's state lives in one slot):
//! * `leases` — sorted set: lease member (`<replica>:<id>`) → deadline (µs);
//! * `tat` — the GCRA "theoretical arrival time" of the admission bucket (µs);
//! * `limit` — hash: `rate` (req/s, the fleet's admission rate), `ceiling` (the learned
//!   ceiling), `version` (bumped on every change), `origin` (the replica that changed it);
//! * `replicas` — sorted set: replica id → last heartbeat (ms).

/// Takes one admission: a lease (when `limit > 0`) and a slot of the GCRA bucket, plus up
/// to `want` more granted ahead of use ("prefetched", see
/// [`crate::ratelimit::prefetch::prefetch_want`])
/// while the fleet has headroom.
///
/// KEYS: leases, tat, limit. ARGV: member, lease ttl (ms), concurrency limit (0 = none),
/// rate to use when the `limit` hash has none (req/s), `required` (1: the admission itself
/// is asked — its slot, and its lease when the member is not empty; 0: only prefetched
/// ones), `want`, then `want` more lease members when `limit > 0`.
///
/// Returns `{1, wait_us, in_use, extra}` (granted; go after `wait_us`; `in_use` leases
/// counted with this one and the extras, 0 when no lease was asked; the first `extra`
/// members were granted ahead too, each with a lease and a slot usable at once) or
/// `{0, 0, in_use, 0}` (the concurrency budget is full; nothing was taken). With
/// `required = 0` the answer is always `{1, 0, in_use, extra}`.
///
/// GCRA as a reservation: emission interval T = 1/rate, burst b = max(1, ⌊2·rate⌋) (the
/// local bucket's burst), tolerance τ = (b − 1)·T. The slot reserved is max(tat, now); the
/// caller waits until slot − τ; tat becomes slot + T.
///
/// Headroom for an extra (each one checked after the one before it is counted): the fleet
/// holds at most half the concurrency budget with it (`in_use ≤ ⌊limit/2⌋`), and the
/// bucket keeps at least half its tolerance free (`tat − now ≤ τ/2`, so the extra's slot
/// is usable now). Under load neither holds and every admission is one call, as without
/// prefetching; without a rate (none in the hash nor given) nothing is prefetched.
pub const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[3])
local required = ARGV[5] == '1'
local own = required and ARGV[1] ~= ''
local want = tonumber(ARGV[6])
local used = 0
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  used = redis.call('ZCARD', KEYS[1])
  if own then
    if used >= limit then
      return {0, 0, used, 0}
    end
    used = used + 1
  end
end
local rate = tonumber(redis.call('HGET', KEYS[3], 'rate') or ARGV[4])
local wait = 0
local extra = 0
if rate and rate > 0 then
  local interval = 1000000 / rate
  local burst = math.max(1, math.floor(2 * rate))
  local tolerance = (burst - 1) * interval
  local tat = tonumber(redis.call('GET', KEYS[2]) or now)
  if tat < now then tat = now end
  local changed = false
  if required then
    local allowed = tat - tolerance
    if allowed > now then wait = allowed - now end
    tat = tat + interval
    changed = true
  end
  while extra < want and tat + interval - now <= tolerance / 2
      and (limit == 0 or used + 1 <= math.floor(limit / 2)) do
    tat = tat + interval
    extra = extra + 1
    if limit > 0 then used = used + 1 end
    changed = true
  end
  if changed then
    redis.call('SET', KEYS[2], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  end
end
if limit > 0 and (own or extra > 0) then
  local deadline = now + tonumber(ARGV[2]) * 1000
  if own then
    redis.call('ZADD', KEYS[1], deadline, ARGV[1])
  end
  for i = 1, extra do
    redis.call('ZADD', KEYS[1], deadline, ARGV[6 + i])
  end
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
end
return {1, math.floor(wait), used, extra}
";

/// One heartbeat of a replica: marks it alive, (re-)registers every lease it holds with a
/// fresh deadline (after an outage Redis may have lost them; leases granted locally while
/// Redis was down join the shared count here), holds `reserve` placeholder leases
/// (`<replica>:r<k>`, k = 1..reserve; those up to `drop_up_to` beyond it are removed),
/// seeds the shared limit if nobody has, and reads it back. Releases go through the same
/// task after the heartbeat, so a lease given back meanwhile is removed again right after.
///
/// A replica that admits locally (its share) while Redis answers again reserves its whole
/// share this way: leases it takes locally between two heartbeats are already counted,
/// so replicas that admit through Redis never fill the budget over them. Switching back
/// to Redis it sends `reserve = 0` with every lease it holds, in this one atomic call.
///
/// KEYS: replicas, leases, limit. ARGV: replica id, replica ttl (ms), lease ttl (ms),
/// seed rate, seed ceiling, reserve, drop_up_to, then the lease members held.
///
/// Returns `{alive replicas, rate, ceiling, version, origin}`.
pub const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local replica_ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - replica_ttl)
redis.call('PEXPIRE', KEYS[1], replica_ttl * 4)
local alive = redis.call('ZCARD', KEYS[1])
local deadline = now_us + tonumber(ARGV[3]) * 1000
local reserve = tonumber(ARGV[6])
local drop_up_to = tonumber(ARGV[7])
for k = 1, math.max(reserve, drop_up_to) do
  local member = ARGV[1] .. ':r' .. k
  if k <= reserve then
    redis.call('ZADD', KEYS[2], deadline, member)
  else
    redis.call('ZREM', KEYS[2], member)
  end
end
for i = 8, #ARGV do
  redis.call('ZADD', KEYS[2], deadline, ARGV[i])
end
if #ARGV >= 8 or reserve > 0 then
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]) * 4)
end
redis.call('HSETNX', KEYS[3], 'rate', ARGV[4])
redis.call('HSETNX', KEYS[3], 'ceiling', ARGV[5])
redis.call('HSETNX', KEYS[3], 'version', '0')
local st = redis.call('HMGET', KEYS[3], 'rate', 'ceiling', 'version', 'origin')
return {alive, st[1], st[2], st[3], st[4] or ''}
";

/// Publishes a new admission rate and ceiling to every replica.
///
/// KEYS: limit. ARGV: rate, ceiling, origin replica. Returns the new version.
pub const PUBLISH: &str = r"
redis.call('HSET', KEYS[1], 'rate', ARGV[1], 'ceiling', ARGV[2], 'origin', ARGV[3])
return redis.call('HINCRBY', KEYS[1], 'version', 1)
";
