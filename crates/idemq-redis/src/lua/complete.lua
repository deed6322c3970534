-- Completes every key of KEYS; ARGV holds four values per key: the fencing token, the
-- retention in milliseconds, '1' when a result is stored ('0' for none) and the result.
-- Mirrors idemq_core::store::transition::complete. One answer per key: 1 done, 0 when the
-- token does not own the record (lease lost). Completing twice with one token answers 1.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local r = redis.call('HMGET', key, 'state', 'token', 'expires_at')
  local exp = tonumber(r[3])
  if not exp or exp <= now or tonumber(r[2]) ~= tonumber(ARGV[4 * i - 3]) then
    out[i] = 0
  elseif r[1] == 'CONSUMED' then
    out[i] = 1
  else
    local e = now + tonumber(ARGV[4 * i - 2])
    -- A consuming record never holds a result (claims write none), so none is deleted.
    if ARGV[4 * i - 1] == '1' then
      redis.call('HSET', key, 'state', 'CONSUMED', 'result', ARGV[4 * i], 'expires_at', e,
        'updated_at', now)
    else
      redis.call('HSET', key, 'state', 'CONSUMED', 'expires_at', e, 'updated_at', now)
    end
    redis.call('PEXPIREAT', key, e)
    out[i] = 1
  end
end
return out
