-- greenlane: requires-extension timescaledb
--
-- TimescaleDB path: the refresh policy of the continuous aggregate of 0003 (which must
-- stay one statement: it runs outside a transaction). Databases migrated before the
-- split got this policy from 0003; if_not_exists makes this a no-op for them.
-- start_offset stays well inside the 365-day retention: a refresh never covers
-- dropped raw chunks (which would empty their buckets in the aggregate).
SELECT add_continuous_aggregate_policy('charging_sessions_hourly',
    start_offset      => INTERVAL '30 days',
    end_offset        => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes',
    if_not_exists     => TRUE);
