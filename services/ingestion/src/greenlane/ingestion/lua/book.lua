-- Book the nearest station with free capacity for one car, atomically.
-- Expired bookings of every station looked at are reclaimed first, so a slot
-- is free exactly when capacity > live bookings.
--
-- KEYS: none (the script reads the station index itself: standalone Redis/Valkey)
-- ARGV: car_id, lon, lat, now_ms (0: server TIME), ttl_ms, booking_id,
--       max_candidates, max_radius_km
-- Returns {"BOOKED", booking_id, station_id, distance_km, expires_ms, existing(0/1), expired...}
--      or {"NO_CAPACITY", "", "", "", "", 0, expired...}
-- where expired... is a flat list of reclaimed "booking_id|car_id|station_id".
local car_id, lon, lat = ARGV[1], ARGV[2], ARGV[3]
local now = tonumber(ARGV[4])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local ttl, booking_id, max_candidates = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])

local expired = {}
local function reclaim(station_id)
  local zkey = 'station:' .. station_id .. ':bookings'
  local gone = redis.call('ZRANGEBYSCORE', zkey, '-inf', now)
  for _, bid in ipairs(gone) do
    local bkey = 'booking:' .. bid
    local owner = redis.call('HGET', bkey, 'car_id')
    redis.call('ZREM', zkey, bid)
    redis.call('ZREM', 'bookings:expiry', bid)
    if owner then
      redis.call('HSET', bkey, 'status', 'expired', 'ended', now)
      redis.call('PEXPIRE', bkey, 86400000)
      if redis.call('GET', 'car:' .. owner .. ':booking') == bid then
        redis.call('DEL', 'car:' .. owner .. ':booking')
      end
      table.insert(expired, bid .. '|' .. owner .. '|' .. station_id)
    end
  end
end

-- Haversine with Redis GEO's earth radius, so distances match GEOSEARCH's.
local function distance_km(station_id)
  local p = redis.call('GEOPOS', 'stations:locations', station_id)[1]
  if not p then return '' end
  local r = math.pi / 180
  local lat1, lat2 = tonumber(lat) * r, tonumber(p[2]) * r
  local dlat, dlon = lat2 - lat1, (tonumber(p[1]) - tonumber(lon)) * r
  local a = math.sin(dlat / 2) ^ 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ^ 2
  return string.format('%.4f', 2 * 6372.797560856 * math.asin(math.sqrt(a)))
end

-- At most one active booking per car: asking again returns the same booking.
local current = redis.call('GET', 'car:' .. car_id .. ':booking')
if current then
  local b = redis.call('HMGET', 'booking:' .. current, 'station_id', 'expires', 'status')
  if b[1] then reclaim(b[1]) end
  if b[1] and b[3] == 'active' and tonumber(b[2]) > now then
    local out = {'BOOKED', current, b[1], distance_km(b[1]), b[2], 1}
    for _, e in ipairs(expired) do table.insert(out, e) end
    return out
  end
  redis.call('DEL', 'car:' .. car_id .. ':booking')
end

-- Nearest first up to the limit: the same stations, in the same order, as widening the
-- radius step by step, without looking at the near ones again at every step.
do
  local found = redis.call('GEOSEARCH', 'stations:locations', 'FROMLONLAT', lon, lat,
    'BYRADIUS', ARGV[8], 'km', 'ASC', 'COUNT', max_candidates, 'WITHDIST')
  for _, row in ipairs(found) do
    local station_id, dist = row[1], row[2]
    reclaim(station_id)
    local capacity = tonumber(redis.call('HGET', 'station:' .. station_id, 'capacity') or '0')
    local live = redis.call('ZCARD', 'station:' .. station_id .. ':bookings')
    if live < capacity then
      local expires = now + ttl
      redis.call('ZADD', 'station:' .. station_id .. ':bookings', expires, booking_id)
      redis.call('ZADD', 'bookings:expiry', expires, booking_id)
      redis.call('HSET', 'booking:' .. booking_id, 'car_id', car_id, 'station_id', station_id,
        'created', now, 'expires', expires, 'status', 'active', 'distance_km', dist)
      redis.call('SET', 'car:' .. car_id .. ':booking', booking_id)
      redis.call('ZADD', 'car:' .. car_id .. ':bookings', now, booking_id)
      -- A car's history keeps its 50 latest bookings (their records expire after a day).
      redis.call('ZREMRANGEBYRANK', 'car:' .. car_id .. ':bookings', 0, -51)
      local out = {'BOOKED', booking_id, station_id, dist, tostring(expires), 0}
      for _, e in ipairs(expired) do table.insert(out, e) end
      return out
    end
  end
end
local out = {'NO_CAPACITY', '', '', '', '', 0}
for _, e in ipairs(expired) do table.insert(out, e) end
return out
