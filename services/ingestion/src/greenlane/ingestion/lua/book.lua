-- Book a station with free capacity for one car, atomically: of the candidates with a
-- free slot (and within the car's range, when it is given), the one that costs the car
-- least, where cost = (distance / speed x 60 + wait minutes) x value of a minute
--                     + price x energy (greenlane.core.demand.booking_cost: the same sum).
-- With equal prices and no waits that is the nearest free station, as before.
-- Expired bookings of every candidate are reclaimed first, so a slot is free exactly
-- when capacity > live bookings.
-- Booking ahead of need: given need_km >= 0 (the car's predicted reach minus a margin),
-- the car is not booked while the nearest free station is closer than need_km: it can
-- still get there later (NOT_NEEDED, with that station's distance). need_km < 0 books
-- whatever the reach (the battery is below the floor, or the car asks).
--
-- KEYS: 1 stations:locations (GEO), 2 bookings, 3 booking-expiry, 4 booking-ended,
--       5 car-booking, 6 the car's car-bookings, 7 the fleet's fleet-bookings, then per
--       candidate station (nearest first) its station HASH and its station-bookings ZSET
-- ARGV: car_id, lon, lat, now_ms (0: server TIME), ttl_ms, booking_id, fleet ('' none),
--       cap (live bookings the fleet may hold; 0 = no cap),
--       need_km, range_km (< 0: no limit), speed_kmh, value_per_minute, energy_kwh,
--       then per candidate its station_id, distance_km, price (USD/kWh), wait_minutes
-- Returns {"BOOKED", booking_id, station_id, distance_km, expires_ms, existing(0/1), expired...}
--      or {"NOT_NEEDED", "", "", nearest_free_km, "", 0, expired...}
--      or {"NO_CAPACITY", "", "", "", "", 0, expired...}
--      or {"FLEET_LIMIT", "", "", "", "", live, expired...} (the fleet holds `cap` already)
-- where expired... is a flat list of reclaimed "booking_id|car_id|station_id".
local car_id, lon, lat = ARGV[1], ARGV[2], ARGV[3]
local now = clock(ARGV[4])
local ttl, booking_id = tonumber(ARGV[5]), ARGV[6]
local fleet, cap = ARGV[7], tonumber(ARGV[8])
local k = {locations = KEYS[1], bookings = KEYS[2], expiry = KEYS[3], ended = KEYS[4],
  pointer = KEYS[5], history = KEYS[6], fleet = KEYS[7]}

local expired = {}
local function answer(out)
  for _, e in ipairs(expired) do table.insert(out, e) end
  return out
end

local function reclaim(zkey, station_id)
  for _, bid in ipairs(redis.call('ZRANGEBYSCORE', zkey, '-inf', now)) do
    redis.call('ZREM', zkey, bid)
    local r = record(k.bookings, bid)
    if r and r.status == 'active' then
      finish(k, bid, r, 'expired', now)
      table.insert(expired, bid .. '|' .. r.car_id .. '|' .. station_id)
    end
  end
end

-- Haversine with Redis GEO's earth radius, so distances match GEOSEARCH's.
local function distance_km(station_id)
  local p = redis.call('GEOPOS', k.locations, station_id)[1]
  if not p then return '' end
  local r = math.pi / 180
  local lat1, lat2 = tonumber(lat) * r, tonumber(p[2]) * r
  local dlat, dlon = lat2 - lat1, (tonumber(p[1]) - tonumber(lon)) * r
  local a = math.sin(dlat / 2) ^ 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ^ 2
  return string.format('%.4f', 2 * 6372.797560856 * math.asin(math.sqrt(a)))
end

-- At most one active booking per car: asking again returns the same booking.
local current = redis.call('HGET', k.pointer, car_id)
if current then
  local r = record(k.bookings, current)
  if r and r.status == 'active' then
    if tonumber(r.expires) > now then
      return answer({'BOOKED', current, r.station_id, distance_km(r.station_id), r.expires, 1})
    end
    -- Expired: its slot is free already (only unexpired bookings count).
    finish(k, current, r, 'expired', now)
    table.insert(expired, current .. '|' .. car_id .. '|' .. r.station_id)
  end
  redis.call('HDEL', k.pointer, car_id)
end

-- Candidates come nearest first, up to the limit: the same stations, in the same order,
-- as widening the radius step by step.
local need, range = tonumber(ARGV[9]), tonumber(ARGV[10])
local speed, per_minute, energy = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local FIXED = 13
local nearest, best, best_cost = nil, nil, nil
for c = 1, (#ARGV - FIXED) / 4 do
  local at = FIXED + 4 * (c - 1)
  local station_id, dist = ARGV[at + 1], tonumber(ARGV[at + 2])
  local zkey = KEYS[7 + 2 * c]
  reclaim(zkey, station_id)
  local capacity = tonumber(redis.call('HGET', KEYS[6 + 2 * c], 'capacity') or '0')
  if redis.call('ZCARD', zkey) < capacity then
    nearest = nearest or c
    if range < 0 or dist <= range then
      local cost = (dist / speed * 60 + tonumber(ARGV[at + 4])) * per_minute
        + tonumber(ARGV[at + 3]) * energy
      if best == nil or cost < best_cost then best, best_cost = c, cost end
    end
  end
end
if nearest == nil then return answer({'NO_CAPACITY', '', '', '', '', 0}) end
if need >= 0 and tonumber(ARGV[FIXED + 4 * nearest - 2]) < need then
  return answer({'NOT_NEEDED', '', '', ARGV[FIXED + 4 * nearest - 2], '', 0})
end
-- A fleet holds at most `cap` live bookings (invented car ids cannot take every slot);
-- a car that needs no booking yet is told so whatever its fleet holds.
if fleet ~= '' then
  redis.call('ZREMRANGEBYSCORE', k.fleet, '-inf', now)
  local live = redis.call('ZCARD', k.fleet)
  if cap > 0 and live >= cap then return answer({'FLEET_LIMIT', '', '', '', '', live}) end
end

-- Nothing free within the car's range: the nearest free station, as far as it is.
local c = best or nearest
local at = FIXED + 4 * (c - 1)
local station_id, dist = ARGV[at + 1], ARGV[at + 2]
local zkey = KEYS[7 + 2 * c]
local expires = now + ttl
redis.call('ZADD', zkey, expires, booking_id)
redis.call('ZADD', k.expiry, expires, booking_id)
redis.call('HSET', k.bookings, booking_id, cjson.encode({car_id = car_id,
  station_id = station_id, created = ms(now), expires = ms(expires), status = 'active',
  distance_km = dist, fleet = fleet}))
if fleet ~= '' then redis.call('ZADD', k.fleet, expires, booking_id) end
redis.call('HSET', k.pointer, car_id, booking_id)
redis.call('ZADD', k.history, now, booking_id)
-- A car's history keeps its 50 latest bookings (their records go a day after they end).
redis.call('ZREMRANGEBYRANK', k.history, 0, -51)
return answer({'BOOKED', booking_id, station_id, dist, ms(expires), 0})
