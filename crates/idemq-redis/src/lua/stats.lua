-- Counts the live records among KEYS: answers {consuming, consumed}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local consuming, consumed = 0, 0
for _, key in ipairs(KEYS) do
  local r = redis.call('HMGET', key, 'state', 'expires_at')
  local exp = tonumber(r[2])
  if exp and exp > now then
    if r[1] == 'CONSUMED' then consumed = consumed + 1
    elseif r[1] == 'CONSUMING' then consuming = consuming + 1 end
  end
end
return {consuming, consumed}
