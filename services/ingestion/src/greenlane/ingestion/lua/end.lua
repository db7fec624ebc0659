-- End a booking (fulfilled or cancelled) and give its slot back, atomically.
-- ARGV: booking_id, new_status ('fulfilled' | 'cancelled'), now_ms (0: server TIME),
--       car_id ('' = any owner; else the booking must belong to this car)
-- Returns {"ENDED", car_id, station_id} | {"NOT_FOUND"} | {"NOT_ACTIVE", status} | {"NOT_OWNER"}
local bid, new_status, car_filter = ARGV[1], ARGV[2], ARGV[4]
local now = tonumber(ARGV[3])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local bkey = 'booking:' .. bid
local b = redis.call('HMGET', bkey, 'car_id', 'station_id', 'status', 'expires')
if not b[1] then return {'NOT_FOUND'} end
if car_filter ~= '' and car_filter ~= b[1] then return {'NOT_OWNER'} end
if b[3] ~= 'active' then return {'NOT_ACTIVE', b[3]} end
if tonumber(b[4]) <= now then return {'NOT_ACTIVE', 'expired'} end
redis.call('ZREM', 'station:' .. b[2] .. ':bookings', bid)
redis.call('ZREM', 'bookings:expiry', bid)
redis.call('HSET', bkey, 'status', new_status, 'ended', now)
redis.call('PEXPIRE', bkey, 86400000)
if redis.call('GET', 'car:' .. b[1] .. ':booking') == bid then
  redis.call('DEL', 'car:' .. b[1] .. ':booking')
end
return {'ENDED', b[1], b[2]}
