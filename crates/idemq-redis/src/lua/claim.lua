-- Claims every key of KEYS; ARGV holds three values per key: the payload fingerprint (raw
-- bytes, '' for none), the lease and the retention, both in milliseconds.
-- Mirrors idemq_core::store::transition::claim. One answer per key:
--   {1, token, attempt, takeover}   Acquired (takeover 0 or 1)
--   {2, lease_until}                InProgress
--   {3, result or nil}              Done
--   {4}                             Conflict
-- The server clock decides, so consumers' clocks do not matter.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local fp = ARGV[3 * i - 2]
  local lease = tonumber(ARGV[3 * i - 1])
  local lease_until = now + lease
  local expires_at = now + math.max(tonumber(ARGV[3 * i]), lease)
  local r = redis.call('HMGET', key, 'state', 'token', 'lease_until', 'expires_at',
    'fingerprint', 'attempts', 'result')
  local exp = tonumber(r[4])
  if not exp or exp <= now then
    -- New, or expired by the record's rule though Redis has not dropped it yet.
    if r[1] then redis.call('DEL', key) end
    redis.call('HSET', key, 'state', 'CONSUMING', 'token', 1, 'lease_until', lease_until,
      'expires_at', expires_at, 'fingerprint', fp, 'attempts', 1,
      'created_at', now, 'updated_at', now)
    redis.call('PEXPIREAT', key, expires_at)
    out[i] = {1, 1, 1, 0}
  elseif r[5] and r[5] ~= '' and fp ~= '' and r[5] ~= fp then
    out[i] = {4}
  elseif r[1] == 'CONSUMED' then
    out[i] = {3, r[7]}
  else
    local held = tonumber(r[3])
    if held > now then
      out[i] = {2, held}
    else
      -- A released claim (lease_until 0) or an expired lease: the next owner takes it.
      local token = tonumber(r[2]) + 1
      local attempts = tonumber(r[6]) + 1
      local e = math.max(exp, expires_at)
      redis.call('HSET', key, 'token', token, 'lease_until', lease_until, 'expires_at', e,
        'attempts', attempts, 'updated_at', now)
      redis.call('PEXPIREAT', key, e)
      out[i] = {1, token, attempts, held ~= 0 and 1 or 0}
    end
  end
end
return out
