-- Completes every key of KEYS. ARGV[1] is the retention in milliseconds, shared by every key.
-- ARGV[2] is '' when no completion stores a result; then ARGV[2 + i] is the fencing token of
-- KEYS[i]. Otherwise ARGV[2] holds one character per key, '1' when it stores a result, and
-- ARGV[1 + 2i], ARGV[2 + 2i] are the token and the result ('' when none) of KEYS[i].
-- Mirrors idemq_core::store::transition::complete; the record layout is in claim.lua.
-- Answers one string, a character per key: '1' done, '0' when the token does not own the
-- record (lease lost). Completing twice with one token answers '1'.
local FMT = '>c1i8i8i8i8i8i8Bc0'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local e = now + tonumber(ARGV[1])
local mask = ARGV[2]
local stride = mask == '' and 1 or 2
local out = {}
for i, key in ipairs(KEYS) do
  local arg = 3 + (i - 1) * stride
  local old = redis.call('GET', key)
  out[i] = '0'
  if old then
    local state, token, held, exp, attempts, created, _, fp = struct.unpack(FMT, old)
    if exp > now and token == tonumber(ARGV[arg]) then
      out[i] = '1'
      if state == 'C' then
        -- A consuming record never holds a result (claims write none), so none is dropped.
        local result = 'n'
        if stride == 2 and string.byte(mask, i) == 49 then -- '1'
          result = 'r' .. ARGV[arg + 1]
        end
        local done = struct.pack(FMT, 'D', token, held, e, attempts, created, now, #fp, fp)
        redis.call('SET', key, done .. result, 'PXAT', e)
      end
    end
  end
end
return table.concat(out)
