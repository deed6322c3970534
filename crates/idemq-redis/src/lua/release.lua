-- Releases KEYS[1] held by token ARGV[1]: lease_until becomes 0 (RELEASED), so the next
-- claim is not a takeover. Mirrors idemq_core::store::transition::release; the record layout
-- is in claim.lua. Answers 1, or 0 when the token does not own a live claim.
local FMT = '>c1i8i8i8i8i8i8Bc0'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local old = redis.call('GET', key)
if not old then
  return 0
end
local state, token, _, exp, attempts, created, _, fp, pos = struct.unpack(FMT, old)
if exp <= now or token ~= tonumber(ARGV[1]) or state ~= 'C' then
  return 0
end
redis.call('SET', key,
  struct.pack(FMT, state, token, 0, exp, attempts, created, now, #fp, fp) .. string.sub(old, pos),
  'KEEPTTL')
return 1
