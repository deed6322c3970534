-- Extends the lease on KEYS[1] held by token ARGV[1] to now + ARGV[2] milliseconds, and
-- the record's expiry to at least that. Mirrors idemq_core::store::transition::extend.
-- Answers the new lease deadline, or -1 when the token does not own a live claim.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local r = redis.call('HMGET', key, 'state', 'token', 'expires_at')
local exp = tonumber(r[3])
if not exp or exp <= now or tonumber(r[2]) ~= tonumber(ARGV[1]) or r[1] ~= 'CONSUMING' then
  return -1
end
local lease_until = now + tonumber(ARGV[2])
local e = math.max(exp, lease_until)
redis.call('HSET', key, 'lease_until', lease_until, 'expires_at', e, 'updated_at', now)
redis.call('PEXPIREAT', key, e)
return lease_until
