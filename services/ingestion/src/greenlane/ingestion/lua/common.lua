-- Shared by every booking script (prepended when the scripts are loaded).
-- The scripts touch only the keys they are given (KEYS, built by greenlane.core.keys):
-- all of one booking region, so all in the region's Redis Cluster slot.
-- A booking's record is JSON in the region's bookings HASH: car_id, station_id, created,
-- expires, status ('active', 'fulfilled', 'cancelled', 'expired'), distance_km, ended.

-- now_ms: ARGV's now, or the server's clock when it is 0 (replicas agree on expiry).
local function clock(given)
  local now = tonumber(given)
  if now == 0 then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end

local function ms(x)
  return string.format('%d', x)
end

local function record(bookings, bid)
  local raw = redis.call('HGET', bookings, bid)
  if raw then return cjson.decode(raw) end
  return nil
end

-- An active booking ends: its record says how and when, it leaves the expiry index, the
-- car's pointer lets go of it, and its record is dropped a day later (by the sweep).
local function finish(k, bid, r, status, now)
  r.status = status
  r.ended = ms(now)
  redis.call('HSET', k.bookings, bid, cjson.encode(r))
  redis.call('ZREM', k.expiry, bid)
  redis.call('ZADD', k.ended, now, bid)
  if redis.call('HGET', k.pointer, r.car_id) == bid then
    redis.call('HDEL', k.pointer, r.car_id)
  end
end

