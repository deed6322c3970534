-- Claims every key of KEYS. ARGV[1] and ARGV[2] are the lease and the retention in
-- milliseconds, shared by every key. ARGV[3] holds 33 bytes per key, in order: its payload
-- fingerprint as a record stores it (a length byte, 32 or 0, then 32 bytes, zeros when
-- none). Mirrors idemq_core::store::transition::claim.
--
-- A record is one string, `struct.pack(FMT, ..)` then the result (documented on RedisStore):
--   fingerprint length (0 or 32), fingerprint (zeros when none), token, attempts, created_at,
--   lease_until, state ('C' consuming, 'D' consumed), expires_at, updated_at, then 'n', or 'r'
--   followed by the result. What a completion changes comes last, from byte 65 on, so that
--   it is one SETRANGE.
-- A new key costs one SET NX ... GET: it writes the record, or answers the one already there.
--
-- Answers one string, an entry per key in order:
--   'N'                           Acquired: token 1, attempt 1, no takeover
--   'A' i8 token i8 attempt B tk  Acquired (tk 1 for a takeover)
--   'I' i8 lease_until            InProgress
--   'D' / 'R' u4 len, result      Done without / with a result
--   'X' c32 fingerprint           Conflict, with the record's fingerprint
-- The server clock decides, so consumers' clocks do not matter.
local FMT = '>Bc32i8i8i8i8c1i8i8c1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local lease_until = now + lease
local expires_at = now + math.max(tonumber(ARGV[2]), lease)
-- Formatted once: Lua would print the number again for every call that passes it.
local px = string.format('%.0f', expires_at)
-- Everything after the fingerprint is the same for every new key of the call.
local fresh = struct.pack('>i8i8i8i8c1i8i8c1', 1, 1, now, lease_until, 'C', expires_at, now, 'n')
local fps = ARGV[3]
local out = {}
for i, key in ipairs(KEYS) do
  local fp = string.sub(fps, 33 * i - 32, 33 * i)
  local new = fp .. fresh
  local old = redis.call('SET', key, new, 'NX', 'PXAT', px, 'GET')
  if not old then
    out[i] = 'N'
  else
    local fpl, _, token, attempts, created, held, state, exp, _, res = struct.unpack(FMT, old)
    if exp <= now then
      -- Expired by the record's rule though Redis has not dropped it yet: new again.
      redis.call('SET', key, new, 'PXAT', px)
      out[i] = 'N'
    elseif fpl ~= 0 and string.byte(fp, 1) ~= 0 and string.sub(old, 1, 33) ~= fp then
      out[i] = 'X' .. string.sub(old, 2, 33)
    elseif state == 'D' then
      if res == 'r' then
        local result = string.sub(old, 84)
        out[i] = 'R' .. struct.pack('>I4', #result) .. result
      else
        out[i] = 'D'
      end
    elseif held > now then
      out[i] = 'I' .. struct.pack('>i8', held)
    else
      -- A released claim (lease_until 0) or an expired lease: the next owner takes it,
      -- keeping the record's fingerprint and creation time.
      local e = math.max(exp, expires_at)
      local next = string.sub(old, 1, 33) .. struct.pack('>i8i8i8i8c1i8i8c1', token + 1,
        attempts + 1, created, lease_until, 'C', e, now, 'n')
      redis.call('SET', key, next, 'PXAT', e)
      out[i] = 'A' .. struct.pack('>i8i8B', token + 1, attempts + 1, held ~= 0 and 1 or 0)
    end
  end
end
return table.concat(out)
