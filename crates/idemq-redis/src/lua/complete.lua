-- Completes every key of KEYS. ARGV[1] is the retention in milliseconds, shared by every key;
-- ARGV[2] holds the fencing token of each key in order, 8 bytes big-endian each. ARGV[3] is
-- '' when no completion stores a result; otherwise it holds one character per key, '1' when
-- it stores a result, and ARGV[3 + i] is the result of KEYS[i] ('' when none).
-- Mirrors idemq_core::store::transition::complete; the record layout is in claim.lua.
-- Answers one string, a character per key: '1' done, '0' when the token does not own the
-- record (lease lost). Completing twice with one token answers '1'.
--
-- Two calls a key: GETEX reads the record and sets its new expiry, then one SETRANGE writes
-- the state, expires_at, updated_at and the result (the record's tail). When the record is
-- not ours to complete, the expiry GETEX set is put back.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local e = now + tonumber(ARGV[1])
-- Formatted once: Lua would print the number again for every call that passes it.
local px = string.format('%.0f', e)
local tokens, mask = ARGV[2], ARGV[3]
local tail = struct.pack('>c1i8i8', 'D', e, now)
local out = {}
for i, key in ipairs(KEYS) do
  local old
  if e > now then
    old = redis.call('GETEX', key, 'PXAT', px)
  else
    -- A zero retention: the completed record expires at once, so it is deleted below.
    old = redis.call('GET', key)
  end
  out[i] = '0'
  if old then
    -- Read in place: expires_at at byte 66, the state at 65, the token at 33.
    local exp = struct.unpack('>i8', old, 67)
    local owned = exp > now and string.sub(old, 34, 41) == string.sub(tokens, 8 * i - 7, 8 * i)
    if owned and string.byte(old, 66) == 67 then -- 'C'
      out[i] = '1'
      if e <= now then
        redis.call('DEL', key)
      elseif mask ~= '' and string.byte(mask, i) == 49 then -- '1'
        redis.call('SETRANGE', key, '65', tail .. 'r' .. ARGV[3 + i])
      else
        -- A consuming record never holds a result (claims write none), so none is dropped.
        redis.call('SETRANGE', key, '65', tail .. 'n')
      end
    else
      if owned then out[i] = '1' end
      -- Already completed, or not ours: the record keeps its expiry (one in the past drops
      -- a record that had expired by its own rule anyway).
      if e > now then redis.call('PEXPIREAT', key, string.format('%.0f', exp)) end
    end
  end
end
return table.concat(out)
