-- Reads KEYS[1]: nil when missing or expired by the server clock, else
-- {state, token, lease_until, expires_at, fingerprint, attempts, created_at, updated_at, result}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.call('HMGET', KEYS[1], 'state', 'token', 'lease_until', 'expires_at',
  'fingerprint', 'attempts', 'created_at', 'updated_at', 'result')
local exp = tonumber(r[4])
if not exp or exp <= now then
  return nil
end
return r
