-- greenlane: unless-extension timescaledb
--
-- Plain-PostgreSQL path (the embedded default): charging_sessions_hourly as a view
-- with the same name and columns as the continuous aggregate of 0003, so every
-- query runs on both paths. date_bin with a UTC origin gives the same buckets as
-- time_bucket, whatever the session's TimeZone (date_trunc would not).
CREATE OR REPLACE VIEW charging_sessions_hourly AS
SELECT
    date_bin(INTERVAL '1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
    station_id,
    count(*)        AS events,
    sum(kwh_usage)  AS kwh,
    sum(cost)       AS cost,
    avg(price_rate) AS avg_price,
    min(price_rate) AS min_price,
    max(price_rate) AS max_price
FROM charging_sessions
GROUP BY bucket, station_id;

-- Rows arrive in time order, so BRIN indexes (a few pages, almost free to maintain)
-- serve the time-range scans that TimescaleDB does by chunk exclusion: a day of the
-- raw table, and recent hours of the view (a bucket filter on the view becomes a
-- filter on this expression).
CREATE INDEX IF NOT EXISTS charging_sessions_time_brin
    ON charging_sessions USING brin (time);
CREATE INDEX IF NOT EXISTS charging_sessions_hour_brin
    ON charging_sessions USING brin (
        date_bin(INTERVAL '1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00'));
