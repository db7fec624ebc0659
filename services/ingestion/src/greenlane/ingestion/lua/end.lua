-- End a booking (fulfilled or cancelled) and give its slot back, atomically.
-- KEYS: 1 bookings, 2 booking-expiry, 3 booking-ended, 4 car-booking,
--       5 the station-bookings ZSET of the booking's station,
--       6 the fleet-bookings ZSET of the booking's fleet (the record's; any if none)
-- ARGV: booking_id, new_status ('fulfilled' | 'cancelled'), now_ms (0: server TIME),
--       car_id ('' = any owner; else the booking must belong to this car),
--       station_id (the booking's station, that KEYS[5] belongs to),
--       fleet ('' = any fleet; else the booking must be this fleet's)
-- Returns {"ENDED", car_id, station_id} | {"NOT_FOUND"} | {"NOT_ACTIVE", status} | {"NOT_OWNER"}
local bid, new_status, car_filter, station_id = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local fleet_filter = ARGV[6]
local now = clock(ARGV[3])
local k = {bookings = KEYS[1], expiry = KEYS[2], ended = KEYS[3], pointer = KEYS[4]}
local r = record(k.bookings, bid)
-- A booking's station never changes: another one means the caller read another booking.
if not r or r.station_id ~= station_id then return {'NOT_FOUND'} end
if car_filter ~= '' and car_filter ~= r.car_id then return {'NOT_OWNER'} end
if fleet_filter ~= '' and fleet_filter ~= (r.fleet or '') then return {'NOT_OWNER'} end
if r.status ~= 'active' then return {'NOT_ACTIVE', r.status} end
if tonumber(r.expires) <= now then return {'NOT_ACTIVE', 'expired'} end
redis.call('ZREM', KEYS[5], bid)
if (r.fleet or '') ~= '' then redis.call('ZREM', KEYS[6], bid) end
finish(k, bid, r, new_status, now)
return {'ENDED', r.car_id, r.station_id}
