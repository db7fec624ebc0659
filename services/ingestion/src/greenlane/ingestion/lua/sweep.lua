-- Reclaim bookings past their expiry (the periodic sweep), at most ARGV[2] per call, and
-- drop the records of bookings that ended more than ARGV[3] ms ago.
-- An expired booking stays in its station's set, where it no longer counts (its score
-- is past); the next booking there removes it.
-- KEYS: 1 bookings, 2 booking-expiry, 3 booking-ended, 4 car-booking
-- ARGV: now_ms (0: server TIME), limit, keep_ms
-- Returns a flat list of "booking_id|car_id|station_id" that expired.
local now = clock(ARGV[1])
local limit = tonumber(ARGV[2])
local k = {bookings = KEYS[1], expiry = KEYS[2], ended = KEYS[3], pointer = KEYS[4]}
local out = {}
for _, bid in ipairs(redis.call('ZRANGEBYSCORE', k.expiry, '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', k.expiry, bid)
  local r = record(k.bookings, bid)
  if r and r.status == 'active' then
    finish(k, bid, r, 'expired', now)
    table.insert(out, bid .. '|' .. r.car_id .. '|' .. r.station_id)
  end
end
local old = now - tonumber(ARGV[3])
for _, bid in ipairs(redis.call('ZRANGEBYSCORE', k.ended, '-inf', old, 'LIMIT', 0, limit)) do
  redis.call('HDEL', k.bookings, bid)
  redis.call('ZREM', k.ended, bid)
end
return out
