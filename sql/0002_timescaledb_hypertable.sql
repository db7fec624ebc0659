-- greenlane: requires-extension timescaledb
--
-- TimescaleDB path: charging_sessions becomes a hypertable with weekly chunks;
-- chunks older than 7 days are compressed (one segment per car, newest first, so a
-- car's history decompresses from one segment) and raw rows go after 365 days.
-- Needs TimescaleDB 2.13 or newer (by_range). Skipped on plain PostgreSQL.
CREATE EXTENSION IF NOT EXISTS timescaledb;

SELECT create_hypertable(
    'charging_sessions',
    by_range('time', INTERVAL '7 days'),
    if_not_exists => TRUE,
    migrate_data  => TRUE
);

-- event_key as a second ordering column: the unique key (event_key, time) is then
-- checked on compressed chunks from batch metadata (and TimescaleDB stops warning).
ALTER TABLE charging_sessions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'car_id',
    timescaledb.compress_orderby   = 'time DESC, event_key'
);

SELECT add_compression_policy('charging_sessions', compress_after => INTERVAL '7 days',
                              if_not_exists => TRUE);
SELECT add_retention_policy('charging_sessions', drop_after => INTERVAL '365 days',
                            if_not_exists => TRUE);
