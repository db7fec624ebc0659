-- greenlane: requires-extension timescaledb
-- greenlane: no-transaction
--
-- TimescaleDB path: charging_sessions_hourly as a continuous aggregate. WITH DATA
-- materializes existing rows, which TimescaleDB refuses inside a transaction block,
-- hence no-transaction, and so one statement only (its refresh policy is 0005).
-- materialized_only = false: buckets newer than the last refresh are computed from the
-- raw rows at query time, so the view is never stale. Same name and columns as the
-- plain-PostgreSQL view of 0004.
CREATE MATERIALIZED VIEW IF NOT EXISTS charging_sessions_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 hour', time) AS bucket,
    station_id,
    count(*)        AS events,
    sum(kwh_usage)  AS kwh,
    sum(cost)       AS cost,
    avg(price_rate) AS avg_price,
    min(price_rate) AS min_price,
    max(price_rate) AS max_price
FROM charging_sessions
GROUP BY bucket, station_id
WITH DATA;
