-- Budget counters and expiring holds of lynkr-extproc, one atomic call per
-- operation. Units: money in integer nano-dollars (1 USD = 10^9), times in
-- milliseconds from the Redis server clock (TIME), so that replicas with
-- skewed clocks agree on expiry. Lua numbers are doubles, exact for integers
-- up to 2^53 nano-dollars (about 9 million USD), which is why limits are
-- capped there; results leave as strings formatted with %d, never tostring,
-- which keeps only 14 significant digits.
--
-- Every budget window a request counts against ("charge") has four keys,
-- passed in KEYS in this order:
--   counter  string, committed spend of the window
--   holds    sorted set, hold id -> expiry time
--   amounts  hash, hold id -> held amount
--   held     string, sum of the amounts in `holds`
-- All keys of one call share one hash tag, so they live in one cluster slot.
--
-- ARGV[1] is the operation:
--   reserve  ARGV: op, hold_id, estimate, ttl_ms, hold_key_ttl_ms, then per
--            charge: limit.  Returns {"MISSING", i...} when counters must be
--            rebuilt first, {"REJECT", i, committed, held} for the first window
--            that cannot take the estimate (nothing changed), or
--            {"OK", remaining} with the room left in the tightest window.
--   settle   ARGV: op, hold_id, cost, marker_ttl_s. KEYS: 4 per charge, then
--            the request's settled marker. Returns {"MISSING", i...} with no
--            change, or {"OK", 1} when the cost was added, {"OK", 0} when the
--            request was settled before (only its hold is dropped).
--   release  ARGV: op, hold_id. Drops the hold from every window.
--   load     ARGV: op, then per charge: value, expire_at_s (0 = never).
--            Sets missing counters to their rebuilt value; existing counters
--            are left alone, so concurrent rebuilds cannot undo increments.
--   balance  ARGV: op. Returns {"MISSING", i...} or {"OK", committed, held, ...}
--            for every window.

local op = ARGV[1]

local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

local function charge_keys(i)
  local base = (i - 1) * 4
  return KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4]
end

local function drop_hold(holds, amounts, held, hold_id)
  if redis.call('ZREM', holds, hold_id) == 1 then
    local amount = tonumber(redis.call('HGET', amounts, hold_id) or '0')
    redis.call('HDEL', amounts, hold_id)
    if redis.call('DECRBY', held, amount) <= 0 then
      redis.call('DEL', held)
    end
  end
end

local function expire_holds(holds, amounts, held, now)
  local stale = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  for _, hold_id in ipairs(stale) do
    drop_hold(holds, amounts, held, hold_id)
  end
end

local function missing_counters(count)
  local missing = {}
  for i = 1, count do
    local counter = charge_keys(i)
    if redis.call('EXISTS', counter) == 0 then
      missing[#missing + 1] = i
    end
  end
  return missing
end

if op == 'reserve' then
  local hold_id, estimate = ARGV[2], tonumber(ARGV[3])
  local ttl_ms, key_ttl_ms = tonumber(ARGV[4]), tonumber(ARGV[5])
  local count = #ARGV - 5
  local missing = missing_counters(count)
  if #missing > 0 then
    return {'MISSING', unpack(missing)}
  end
  local now = now_ms()
  local remaining = nil
  for i = 1, count do
    local counter, holds, amounts, held = charge_keys(i)
    expire_holds(holds, amounts, held, now)
    local committed = tonumber(redis.call('GET', counter))
    local holding = tonumber(redis.call('GET', held) or '0')
    local limit = tonumber(ARGV[5 + i])
    local spent = committed + holding
    if spent >= limit or spent + estimate > limit then
      return {'REJECT', i, string.format('%d', committed), string.format('%d', holding)}
    end
    local room = limit - spent - estimate
    if remaining == nil or room < remaining then
      remaining = room
    end
  end
  for i = 1, count do
    local _, holds, amounts, held = charge_keys(i)
    redis.call('ZADD', holds, now + ttl_ms, hold_id)
    redis.call('HSET', amounts, hold_id, estimate)
    redis.call('INCRBY', held, estimate)
    for _, key in ipairs({holds, amounts, held}) do
      if redis.call('PTTL', key) < key_ttl_ms then
        redis.call('PEXPIRE', key, key_ttl_ms)
      end
    end
  end
  return {'OK', string.format('%d', remaining or -1)}
end

if op == 'settle' then
  local hold_id, cost, marker_ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
  local count = (#KEYS - 1) / 4
  local missing = missing_counters(count)
  if #missing > 0 then
    return {'MISSING', unpack(missing)}
  end
  local first = redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EX', marker_ttl)
  for i = 1, count do
    local counter, holds, amounts, held = charge_keys(i)
    drop_hold(holds, amounts, held, hold_id)
    if first then
      redis.call('INCRBY', counter, cost)
    end
  end
  return {'OK', first and 1 or 0}
end

if op == 'release' then
  for i = 1, #KEYS / 4 do
    local _, holds, amounts, held = charge_keys(i)
    drop_hold(holds, amounts, held, ARGV[2])
  end
  return {'OK'}
end

if op == 'load' then
  for i = 1, #KEYS do
    local value, expire_at = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
    if redis.call('SET', KEYS[i], value, 'NX') and expire_at > 0 then
      redis.call('EXPIREAT', KEYS[i], expire_at)
    end
  end
  return {'OK'}
end

if op == 'balance' then
  local missing = missing_counters(#KEYS / 4)
  if #missing > 0 then
    return {'MISSING', unpack(missing)}
  end
  local now = now_ms()
  local result = {'OK'}
  for i = 1, #KEYS / 4 do
    local counter, holds, amounts, held = charge_keys(i)
    expire_holds(holds, amounts, held, now)
    result[#result + 1] = redis.call('GET', counter) or '0'
    result[#result + 1] = redis.call('GET', held) or '0'
  end
  return result
end

return redis.error_reply('lynkr budget script: unknown operation ' .. tostring(op))
