-- Reads KEYS[1]: nil when missing or expired by the server clock, else the record as stored
-- (the layout is in claim.lua; store.rs decodes it).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('GET', KEYS[1])
-- A value too short to hold expires_at is returned as is, for the client to call corrupt.
if not v or (#v >= 74 and struct.unpack('>i8', v, 67) <= now) then
  return nil
end
return v
