-- The demand factor a row was priced with (greenlane.core.demand): price_rate is the
-- grid's tariff times this factor of the station's site load at the row's instant; 1 for
-- rows away from a station, of a station in no site, and for rows priced before it.
ALTER TABLE charging_sessions ADD COLUMN IF NOT EXISTS demand_factor real NOT NULL DEFAULT 1;
