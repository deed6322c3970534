-- Extends the lease on KEYS[1] held by token ARGV[1] to now + ARGV[2] milliseconds, and
-- the record's expiry to at least that. Mirrors idemq_core::store::transition::extend; the
-- record layout is in claim.lua.
-- Answers the new lease deadline, or -1 when the token does not own a live claim.
local FMT = '>Bc32i8i8i8i8c1i8i8c1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local old = redis.call('GET', key)
if not old then
  return -1
end
local _, _, token, _, _, _, state, exp = struct.unpack(FMT, old)
if exp <= now or token ~= tonumber(ARGV[1]) or state ~= 'C' then
  return -1
end
local lease_until = now + tonumber(ARGV[2])
local e = math.max(exp, lease_until)
-- lease_until, state, expires_at, updated_at: bytes 57 to 81.
local new = string.sub(old, 1, 57) .. struct.pack('>i8c1i8i8', lease_until, 'C', e, now)
  .. string.sub(old, 83)
redis.call('SET', key, new, 'PXAT', e)
return lease_until
