-- Releases KEYS[1] held by token ARGV[1]: lease_until becomes 0 (RELEASED), so the next
-- claim is not a takeover. Mirrors idemq_core::store::transition::release.
-- Answers 1, or 0 when the token does not own a live claim.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local r = redis.call('HMGET', key, 'state', 'token', 'expires_at')
local exp = tonumber(r[3])
if not exp or exp <= now or tonumber(r[2]) ~= tonumber(ARGV[1]) or r[1] ~= 'CONSUMING' then
  return 0
end
redis.call('HSET', key, 'lease_until', 0, 'updated_at', now)
return 1
