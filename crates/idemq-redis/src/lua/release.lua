-- Releases KEYS[1] held by token ARGV[1]: lease_until becomes 0 (RELEASED), so the next
-- claim is not a takeover. Mirrors idemq_core::store::transition::release; the record layout
-- is in claim.lua. Answers 1, or 0 when the token does not own a live claim.
local FMT = '>Bc32i8i8i8i8c1i8i8c1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local old = redis.call('GET', key)
if not old then
  return 0
end
local _, _, token, _, _, _, state, exp = struct.unpack(FMT, old)
if exp <= now or token ~= tonumber(ARGV[1]) or state ~= 'C' then
  return 0
end
-- lease_until, state, expires_at, updated_at from byte 57; SETRANGE keeps the expiry.
redis.call('SETRANGE', key, 57, struct.pack('>i8c1i8i8', 0, 'C', exp, now))
return 1
