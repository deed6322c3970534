-- Counts the live records among KEYS: answers {consuming, consumed}. Reads only the state
-- and expires_at of each record (bytes 65 to 73; the layout is in claim.lua).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local consuming, consumed = 0, 0
for _, key in ipairs(KEYS) do
  local part = redis.call('GETRANGE', key, 65, 73)
  if #part == 9 and struct.unpack('>i8', part, 2) > now then
    local state = string.sub(part, 1, 1)
    if state == 'D' then consumed = consumed + 1
    elseif state == 'C' then consuming = consuming + 1 end
  end
end
return {consuming, consumed}
