-- Counts the live records among KEYS: answers {consuming, consumed}. Reads only the head
-- of each record (state and expires_at; the layout is in claim.lua), not its result.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local consuming, consumed = 0, 0
for _, key in ipairs(KEYS) do
  local head = redis.call('GETRANGE', key, 0, 24)
  if #head == 25 and struct.unpack('>i8', head, 18) > now then
    local state = string.sub(head, 1, 1)
    if state == 'D' then consumed = consumed + 1
    elseif state == 'C' then consuming = consuming + 1 end
  end
end
return {consuming, consumed}
