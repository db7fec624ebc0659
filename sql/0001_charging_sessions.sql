-- Charging-session time series: one row per priced fleet event.
CREATE TABLE IF NOT EXISTS charging_sessions (
    time              timestamptz      NOT NULL,
    event_key         text             NOT NULL,   -- '{car_id}:{timestamp_ms}:{event_type}'
    session_id        text             NOT NULL,
    car_id            text             NOT NULL,
    station_id        text,                        -- NULL unless plugged in at a station
    event_type        text             NOT NULL,
    session_kind      text             NOT NULL CHECK (session_kind IN ('driving', 'charging', 'idle')),
    kwh_usage         double precision NOT NULL CHECK (kwh_usage >= 0),
    price_rate        numeric(10, 5)   NOT NULL,   -- USD per kWh at the event's instant
    cost              numeric(14, 5)   NOT NULL,   -- kwh_usage * price_rate
    battery           real             NOT NULL,
    lat               double precision NOT NULL,
    lon               double precision NOT NULL,
    energy_source     text             NOT NULL,
    grid_load         real             NOT NULL,
    priced_from_cache boolean          NOT NULL DEFAULT false,
    inserted_at       timestamptz      NOT NULL DEFAULT now(),
    -- The idempotency key: a replayed event never makes a second row. It includes
    -- time so that it can stay unique on a TimescaleDB hypertable.
    CONSTRAINT charging_sessions_event_key UNIQUE (event_key, time)
);

CREATE INDEX IF NOT EXISTS charging_sessions_station_time
    ON charging_sessions (station_id, time DESC);
CREATE INDEX IF NOT EXISTS charging_sessions_car_time
    ON charging_sessions (car_id, time DESC);
