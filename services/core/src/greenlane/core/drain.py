"""Battery-drain prediction, per car, online, from the car's own telemetry; pure.

The model (docs/prediction.md): while a car drives, its battery falls at a rate (percent
of the pack per hour) that is linear in five features of its speed v (km/h) and the hour
of day h,

    rate = θ · x,  x = (v/50, (v/50)³, 1, cos(2πh/24), sin(2πh/24))

which is the physics of an electric car in one line: rolling resistance (∝ v per hour),
air drag (∝ v³ per hour), idle draw (constant), and heating or cooling (a daily cycle of
the outside temperature, one harmonic). The car's efficiency scales every θ.

Each car's θ is learned by recursive least squares (Bayesian linear regression in closed
form): θ starts at the fleet prior with a wide covariance, and every observed drain (two
statuses at least MIN_WINDOW_S apart, not charging) updates θ and its covariance P in
O(5²). The noise level is learned too (a running mean of squared innovations), so every
prediction carries its standard deviation. No library is needed for five parameters:
river's linear models are SGD without a covariance (no uncertainty), scikit-learn's
BayesianRidge refits the whole history at every update; this is the exact posterior, in
pure Python, with no dependency in core.

A prediction at a horizon assumes the car keeps its recent speed (a 10-minute moving
average): battery_at(H) = battery − rate(v̄, h)·H, range_km = battery / (rate / v̄) and
reach_km = battery_at(H) / (rate / v̄), with v̄ at least RANGE_SPEED_KMH for a parked car.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

N_FEATURES: Final = 5
# Two statuses closer than this are too close for their battery difference to mean much.
MIN_WINDOW_S: Final = 60.0
# Gaps longer than this (a car offline) are not one drive: the window restarts.
MAX_WINDOW_S: Final = 900.0
# A battery that rose more than this since the window began was charged (or swapped): the
# window restarts. Smaller rises are the noise of the reading and are learnt from, like
# falls: discarding them would bias every rate upwards.
RISE_TOLERANCE: Final = 1.0
SPEED_MEMORY_S: Final = 600.0  # the moving average of speed used for predictions
# A parked or crawling car's range is told at this speed (a range needs a way of driving).
RANGE_SPEED_KMH: Final = 30.0
DEFAULT_HORIZON_S: Final = 1800.0

# The fleet prior, in percent of the pack per hour: an average car (75 kWh, 0.17 kWh/km at
# 50 km/h) at 50 km/h draws ~8 kW = ~11 %/h. A new car predicts with it until it has
# history; its covariance is wide, so a car's own drains soon dominate.
FLEET_PRIOR: Final = (6.0, 2.0, 1.5, 0.0, -1.0)
PRIOR_SD: Final = (4.0, 2.0, 2.0, 1.5, 1.5)
PRIOR_NOISE_SD: Final = 3.0  # %/h: the noise of one observed drain before any is seen
NOISE_MEMORY: Final = 0.02  # weight of each new squared innovation in the noise estimate


def features(velocity_kmh: float, timestamp_ms: int) -> tuple[float, ...]:
    """x of the model for a speed and an instant (the hour is UTC; the fleet's local
    clock shifts the harmonic's phase, which θ learns)."""
    u = max(velocity_kmh, 0.0) / 50.0
    hour = (timestamp_ms / 3_600_000.0) % 24.0
    a = 2.0 * math.pi * hour / 24.0
    return (u, u * u * u, 1.0, math.cos(a), math.sin(a))


# The fields of a car's prediction hash (keys.drain), in this order.
PREDICTION_FIELDS: Final = (
    "at_ms",
    "horizon_s",
    "battery",
    "rate_per_h",
    "rate_sd",
    "battery_at_horizon",
    "battery_sd",
    "range_km",
    "range_sd_km",
    "reach_km",
    "observations",
)


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the model expects of a car, with its uncertainty (one standard deviation)."""

    at_ms: int  # the status it is made from
    horizon_s: float
    battery: float  # % now
    rate_per_h: float  # % of the pack per hour at the car's recent speed
    rate_sd: float
    battery_at_horizon: float  # %, never below 0
    battery_sd: float
    range_km: float  # how far the car gets at its recent speed (0 when parked)
    range_sd_km: float
    reach_km: float  # range left at the horizon: what it can still drive after H
    observations: int  # how many drains of this car the model has learned from

    def to_hash(self) -> dict[str, str]:
        """The prediction as its Redis hash (PREDICTION_FIELDS; 3 decimals, inf as "inf")."""
        out = {}
        for name in PREDICTION_FIELDS:
            value = getattr(self, name)
            out[name] = str(value) if isinstance(value, int) else f"{value:.3f}"
        return out


@dataclass(slots=True)
class DrainModel:
    """One car's online model: θ, its covariance P (in units of the noise variance) and
    the noise variance; plus the window and the speed average of the car's last statuses."""

    theta: list[float] = field(default_factory=lambda: list(FLEET_PRIOR))
    cov: list[list[float]] = field(
        default_factory=lambda: [
            [(PRIOR_SD[i] / PRIOR_NOISE_SD) ** 2 if i == j else 0.0 for j in range(N_FEATURES)]
            for i in range(N_FEATURES)
        ]
    )
    noise_var: float = PRIOR_NOISE_SD**2
    observations: int = 0
    # The window: where the last accepted drain ended.
    _anchor_ms: int = -1
    _anchor_battery: float = 0.0
    _speed_sum: float = 0.0  # speed × seconds over the window
    _last_ms: int = -1
    _last_speed: float = 0.0
    speed_avg: float = 0.0

    def observe(
        self, battery: float, velocity_kmh: float, timestamp_ms: int, *, charging: bool
    ) -> bool:
        """Learn from one status; True when it closed a window and updated θ.

        A charging car (or one whose battery rose by more than RISE_TOLERANCE) restarts the
        window: only drives drain.
        Statuses out of order are ignored.
        """
        if not (math.isfinite(battery) and math.isfinite(velocity_kmh)):
            raise ValueError("battery and velocity must be finite numbers")
        if self._last_ms >= 0 and timestamp_ms <= self._last_ms:
            return False
        if self._last_ms >= 0:
            dt = (timestamp_ms - self._last_ms) / 1000.0
            w = min(dt / SPEED_MEMORY_S, 1.0)
            self.speed_avg += w * (velocity_kmh - self.speed_avg)
            self._speed_sum += dt * (self._last_speed + velocity_kmh) / 2.0
        else:
            self.speed_avg = velocity_kmh
        self._last_ms, self._last_speed = timestamp_ms, velocity_kmh
        window_s = (timestamp_ms - self._anchor_ms) / 1000.0
        if (
            charging
            or self._anchor_ms < 0
            or battery > self._anchor_battery + RISE_TOLERANCE
            or window_s > MAX_WINDOW_S
        ):
            self._restart(battery, timestamp_ms)
            return False
        if window_s < MIN_WINDOW_S:
            return False
        rate = (self._anchor_battery - battery) / (window_s / 3600.0)
        mid_ms = (self._anchor_ms + timestamp_ms) // 2
        self.update(features(self._speed_sum / window_s, mid_ms), rate)
        self._restart(battery, timestamp_ms)
        return True

    def _restart(self, battery: float, timestamp_ms: int) -> None:
        self._anchor_ms, self._anchor_battery, self._speed_sum = timestamp_ms, battery, 0.0

    def update(self, x: tuple[float, ...], rate: float) -> None:
        """One recursive-least-squares step: the posterior after observing `rate` at x."""
        p, th = self.cov, self.theta
        px = [sum(p[i][j] * x[j] for j in range(N_FEATURES)) for i in range(N_FEATURES)]
        s = 1.0 + sum(x[i] * px[i] for i in range(N_FEATURES))
        innovation = rate - sum(th[i] * x[i] for i in range(N_FEATURES))
        gain = [v / s for v in px]
        for i in range(N_FEATURES):
            th[i] += gain[i] * innovation
            row = p[i]
            for j in range(N_FEATURES):
                row[j] -= gain[i] * px[j]
        # The innovation's variance is noise_var × s: its normalised square estimates the
        # noise, so the uncertainty of every prediction follows what the car really does.
        self.noise_var += NOISE_MEMORY * (innovation * innovation / s - self.noise_var)
        self.observations += 1

    def rate(self, velocity_kmh: float, timestamp_ms: int) -> tuple[float, float]:
        """(mean, sd) of the drain rate (%/h) at a speed and instant: the uncertainty of θ."""
        x0, x1, x2, x3, x4 = x = features(velocity_kmh, timestamp_ms)
        t = self.theta
        mean = t[0] * x0 + t[1] * x1 + t[2] * x2 + t[3] * x3 + t[4] * x4
        xpx = 0.0
        for xi, row in zip(x, self.cov, strict=True):  # 5 x 5, unrolled inside: hot path
            xpx += xi * (row[0] * x0 + row[1] * x1 + row[2] * x2 + row[3] * x3 + row[4] * x4)
        return max(mean, 0.0), math.sqrt(max(xpx, 0.0) * self.noise_var)

    def predict(
        self, battery: float, timestamp_ms: int, horizon_s: float = DEFAULT_HORIZON_S
    ) -> Prediction:
        """The car's battery at the horizon and its range, if it keeps its recent speed.

        The sd of the battery at the horizon adds, to θ's uncertainty, the noise of one
        observed drain averaged over the horizon's windows (noise_var × window / H).
        """
        if not (horizon_s > 0 and math.isfinite(horizon_s)):
            raise ValueError("horizon_s must be a finite number above 0")
        v = self.speed_avg
        hours = horizon_s / 3600.0
        mid = timestamp_ms + int(horizon_s * 500)
        mean, sd = self.rate(v, mid)
        sd_h = math.sqrt(sd * sd + self.noise_var * MIN_WINDOW_S / horizon_s)
        at_h = max(battery - mean * hours, 0.0)
        drive_v = max(v, RANGE_SPEED_KMH)
        drive_mean, drive_sd = self.rate(drive_v, mid) if drive_v != v else (mean, sd)
        if drive_mean <= 0:
            range_km = range_sd = reach = math.inf
        else:
            per_km = drive_mean / drive_v  # % per km
            range_km = battery / per_km
            range_sd = range_km * drive_sd / drive_mean
            reach = at_h / per_km
        return Prediction(
            at_ms=timestamp_ms,
            horizon_s=horizon_s,
            battery=battery,
            rate_per_h=mean,
            rate_sd=sd,
            battery_at_horizon=at_h,
            battery_sd=sd_h * hours,
            range_km=range_km,
            range_sd_km=range_sd,
            reach_km=reach,
            observations=self.observations,
        )


def naive_battery_at(
    previous: tuple[float, int], current: tuple[float, int], horizon_s: float
) -> float:
    """The naive baseline: the last observed rate (two statuses), carried on to the horizon."""
    (b0, t0), (b1, t1) = previous, current
    if t1 <= t0:
        return b1
    rate = (b0 - b1) / ((t1 - t0) / 1000.0)
    return max(b1 - max(rate, 0.0) * horizon_s, 0.0)
