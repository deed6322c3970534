-- Completes every key of KEYS. ARGV[1] is the retention in milliseconds, shared by every key.
-- ARGV[2] is '' when no completion stores a result; then ARGV[2 + i] is the fencing token of
-- KEYS[i]. Otherwise ARGV[2] holds one character per key, '1' when it stores a result, and
-- ARGV[1 + 2i], ARGV[2 + 2i] are the token and the result ('' when none) of KEYS[i].
-- Mirrors idemq_core::store::transition::complete; the record layout is in claim.lua.
-- Answers one string, a character per key: '1' done, '0' when the token does not own the
-- record (lease lost). Completing twice with one token answers '1'.
--
-- Two calls a key: GETEX reads the record and sets its new expiry, then one SETRANGE writes
-- the state, expires_at, updated_at and the result (the record's tail). When the record is
-- not ours to complete, the expiry GETEX set is put back.
local FMT = '>Bc32i8i8i8i8c1i8i8c1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local e = now + tonumber(ARGV[1])
local mask = ARGV[2]
local stride = mask == '' and 1 or 2
local tail = struct.pack('>c1i8i8', 'D', e, now)
local out = {}
for i, key in ipairs(KEYS) do
  local arg = 3 + (i - 1) * stride
  local old
  if e > now then
    old = redis.call('GETEX', key, 'PXAT', e)
  else
    -- A zero retention: the completed record expires at once, so it is deleted below.
    old = redis.call('GET', key)
  end
  out[i] = '0'
  if old then
    local _, _, token, _, _, _, state, exp = struct.unpack(FMT, old)
    local owned = exp > now and token == tonumber(ARGV[arg])
    if owned and state == 'C' then
      out[i] = '1'
      if e <= now then
        redis.call('DEL', key)
      elseif stride == 2 and string.byte(mask, i) == 49 then -- '1'
        redis.call('SETRANGE', key, 65, tail .. 'r' .. ARGV[arg + 1])
      else
        -- A consuming record never holds a result (claims write none), so none is dropped.
        redis.call('SETRANGE', key, 65, tail .. 'n')
      end
    else
      if owned then out[i] = '1' end
      -- Already completed, or not ours: the record keeps its expiry (one in the past drops
      -- a record that had expired by its own rule anyway).
      if e > now then redis.call('PEXPIREAT', key, exp) end
    end
  end
end
return table.concat(out)
