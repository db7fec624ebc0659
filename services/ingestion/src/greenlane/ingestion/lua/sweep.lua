-- Reclaim bookings past their expiry (the periodic sweep), at most ARGV[2] per call.
-- ARGV: now_ms (0: server TIME), limit
-- Returns a flat list of "booking_id|car_id|station_id" that expired.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local gone = redis.call('ZRANGEBYSCORE', 'bookings:expiry', '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, bid in ipairs(gone) do
  local bkey = 'booking:' .. bid
  local b = redis.call('HMGET', bkey, 'car_id', 'station_id', 'status')
  redis.call('ZREM', 'bookings:expiry', bid)
  if b[2] then redis.call('ZREM', 'station:' .. b[2] .. ':bookings', bid) end
  if b[1] and b[3] == 'active' then
    redis.call('HSET', bkey, 'status', 'expired', 'ended', now)
    redis.call('PEXPIRE', bkey, 86400000)
    if redis.call('GET', 'car:' .. b[1] .. ':booking') == bid then
      redis.call('DEL', 'car:' .. b[1] .. ':booking')
    end
    table.insert(out, bid .. '|' .. b[1] .. '|' .. b[2])
  end
end
return out
