-- Claims every key of KEYS. ARGV[1] and ARGV[2] are the lease and the retention in
-- milliseconds, shared by every key; ARGV[2 + i] is the payload fingerprint of KEYS[i] (raw
-- bytes, '' for none). Mirrors idemq_core::store::transition::claim.
--
-- A record is one string (see store.rs, "Record layout"):
--   struct '>c1i8i8i8i8i8i8Bc0' = state ('C' consuming, 'D' consumed), token, lease_until,
--   expires_at, attempts, created_at, updated_at, fingerprint (length-prefixed), then 'n', or
--   'r' followed by the result.
-- A new key costs one SET NX ... GET: it writes the record, or answers the one already there.
--
-- Answers one string, an entry per key in order:
--   'N'                           Acquired: token 1, attempt 1, no takeover
--   'A' i8 token i8 attempt B tk  Acquired (tk 1 for a takeover)
--   'I' i8 lease_until            InProgress
--   'D' / 'R' u4 len, result      Done without / with a result
--   'X'                           Conflict
-- The server clock decides, so consumers' clocks do not matter.
local FMT = '>c1i8i8i8i8i8i8Bc0'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local lease_until = now + lease
local expires_at = now + math.max(tonumber(ARGV[2]), lease)
local fresh = struct.pack('>c1i8i8i8i8i8i8', 'C', 1, lease_until, expires_at, 1, now, now)
-- Fingerprints are 32 bytes or none: their length byte is added once, not per key.
local fresh32, fresh0 = fresh .. string.char(32), fresh .. string.char(0) .. 'n'
local out = {}
for i, key in ipairs(KEYS) do
  local fp = ARGV[2 + i]
  local new
  if #fp == 32 then
    new = fresh32 .. fp .. 'n'
  elseif fp == '' then
    new = fresh0
  else
    new = fresh .. string.char(#fp) .. fp .. 'n'
  end
  local old = redis.call('SET', key, new, 'NX', 'PXAT', expires_at, 'GET')
  if not old then
    out[i] = 'N'
  else
    local state, token, held, exp, attempts, created, _, have, pos = struct.unpack(FMT, old)
    if exp <= now then
      -- Expired by the record's rule though Redis has not dropped it yet: new again.
      redis.call('SET', key, new, 'PXAT', expires_at)
      out[i] = 'N'
    elseif have ~= '' and fp ~= '' and have ~= fp then
      out[i] = 'X'
    elseif state == 'D' then
      if string.byte(old, pos) == 114 then -- 'r'
        local result = string.sub(old, pos + 1)
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
      local next = struct.pack(FMT, 'C', token + 1, lease_until, e, attempts + 1, created, now,
        #have, have)
      redis.call('SET', key, next .. 'n', 'PXAT', e)
      out[i] = 'A' .. struct.pack('>i8i8B', token + 1, attempts + 1, held ~= 0 and 1 or 0)
    end
  end
end
return table.concat(out)
