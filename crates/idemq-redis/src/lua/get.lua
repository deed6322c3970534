-- Reads every key of KEYS, answering one entry per key in order: false (a nil reply) when
-- missing or expired by the server clock, else the record as stored (the layout is in
-- claim.lua; store.rs decodes it).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  -- A value too short to hold expires_at is returned as is, for the client to call corrupt.
  if not v or (#v >= 74 and struct.unpack('>i8', v, 67) <= now) then
    out[i] = false
  else
    out[i] = v
  end
end
return out
