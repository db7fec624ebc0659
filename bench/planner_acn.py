"""acnportal's own algorithms on a replayed day, through acnportal's own simulator.

The mapping (the same sessions, limit, prices and slot length as every other strategy):

- one acnportal period is one slot (`period=slot_minutes`), arrivals and departures are
  the sessions' slots, so a car charges in periods arrive_slot .. depart_slot - 1;
- every session gets an EVSE of its own whose `max_rate` is the session's max_kw in
  amps, so acnportal's algorithms see the same per-car maximum as the planner (its
  algorithms read the EVSE's maximum, not the car's; a physical connector that serves
  several cars in a day becomes one EVSE per car, never two at once);
- every EVSE is at VOLTS, phase angle 0, and the site limit is one `Current` over all of
  them at limit_kw in amps: with one voltage and one phase, that constraint is exactly
  "the sum of the kW is at most the limit" (kw_to_amps);
- the battery (acnportal's ideal `Battery`) holds the pack, starts at the session's
  charge and draws at most max_kw, so it never stops a car short of its goal;
- acnportal's rates (A) come back as kW with amps_to_kw.

Round robin raises every car by `continuous_inc` amps per turn (default 0.1 A); at 1 A
(0.4 kW at 400 V) a day takes seconds instead of minutes, and the share each car gets
is within 1 A of the finer one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Final

from bench.planner_replay import Day, Replay, amps_to_kw, kw_to_amps

VOLTS: Final = 400.0
ROUND_ROBIN_STEP_AMPS: Final = 1.0

with warnings.catch_warnings():
    # acnportal imports setuptools' pkg_resources, which warns that it is deprecated.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from acnportal import acnsim
    from acnportal.algorithms import (
        RoundRobin,
        SortedSchedulingAlgo,
        earliest_deadline_first,
        first_come_first_served,
        least_laxity_first,
    )

ALGORITHMS: Final[dict[str, Callable[[], Any]]] = {
    "edf": lambda: SortedSchedulingAlgo(earliest_deadline_first),
    "llf": lambda: SortedSchedulingAlgo(least_laxity_first),
    "round_robin": lambda: RoundRobin(
        first_come_first_served, continuous_inc=ROUND_ROBIN_STEP_AMPS
    ),
    "fcfs": lambda: SortedSchedulingAlgo(first_come_first_served),
}


def network(day: Day) -> Any:
    """acnportal's ChargingNetwork for a day: an EVSE per session, the site limit in A."""
    net = acnsim.ChargingNetwork()
    for s in day.sessions:
        net.register_evse(acnsim.EVSE(s.car_id, max_rate=kw_to_amps(s.max_kw, VOLTS)), VOLTS, 0)
    ids = [s.car_id for s in day.sessions]
    net.add_constraint(acnsim.Current(ids), kw_to_amps(day.limit_kw, VOLTS), name="site")
    return net


def run(day: Day, algorithm: str) -> Replay:
    """Replay a day with one of acnportal's algorithms (a key of ALGORITHMS)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm: one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if not day.sessions:
        return Replay([], [])
    evs = [
        acnsim.EV(
            s.arrive_slot,
            s.depart_slot,
            s.energy_kwh,
            s.car_id,
            s.car_id,
            acnsim.Battery(s.pack_kwh, s.start_kwh, s.max_kw),
        )
        for s in day.sessions
    ]
    scheduler = ALGORITHMS[algorithm]()
    sim = acnsim.Simulator(
        network(day),
        scheduler,
        acnsim.EventQueue([acnsim.PluginEvent(ev.arrival, ev) for ev in evs]),
        day.clock.start.replace(tzinfo=None),
        period=day.clock.slot_minutes,
        verbose=False,
    )
    sim.run()
    rates = sim.charging_rates  # A, one row per EVSE (in registration order), one column per period
    index = {station: row for row, station in enumerate(sim.network.station_ids)}
    power = []
    for s in day.sessions:
        row = rates[index[s.car_id]]
        power.append(
            [amps_to_kw(float(row[t]), VOLTS) if t < row.size else 0.0 for t in range(day.slots)]
        )
    # acnportal times each decision itself (the algorithm's schedule(), once per period).
    return Replay(power, [float(stat["solve_time"]) for stat in scheduler.solve_stats])
