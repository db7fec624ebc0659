"""A site's load snapshot as the planner sees it (greenlane.core.demand.SiteLoad): the
power its plugged-in and booked cars ask for, each at its connector's power."""

from __future__ import annotations

from collections.abc import Iterable

from greenlane.core.demand import SiteLoad
from greenlane.core.plans import PLUGGED_IN
from greenlane.planner.fleet import SiteCar, SiteInfo


def site_load(site: SiteInfo, cars: Iterable[SiteCar], now_ms: int) -> SiteLoad:
    """The snapshot of a site at now_ms; a car at a station the site no longer has asks
    for nothing."""
    plugged = booked = 0.0
    for car in cars:
        station = site.stations.get(car.station_id)
        power = station.power_kw if station is not None else 0.0
        if car.state == PLUGGED_IN:
            plugged += power
        else:
            booked += power
    return SiteLoad(site.site_id, now_ms, plugged, booked, site.limit_kw)
