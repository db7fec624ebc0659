"""The vocabulary of GreenLane dashboards: queries, panels and boards, built with the Grafana SDK.

A dashboard module describes its panels with `Query`, `Panel` and `Board`; `build()`
turns a Board into Grafana JSON through grafana-foundation-sdk's typed builders. The
descriptions keep what the JSON cannot say and the tests need: which queries may be
empty on a healthy platform (`quiet`, e.g. a counter that appears with its first
dead letter) and which have data only on Kubernetes or TimescaleDB (`only_on`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    GridPos,
    VariableHide,
    VariableRefresh,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

# Every panel names its data source through a variable: the provisioned Grafana of the
# chart has these types, and a user's Grafana picks its own instances.
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="${datasource}")
POSTGRES_TYPE = "grafana-postgresql-datasource"
POSTGRES = DataSourceRef(type_val=POSTGRES_TYPE, uid="${database}")
# Grid width of a dashboard, in Grafana's 24 columns.
COLUMNS = 24

# Every PromQL selector of a dashboard: the namespace variable ("All" = .*).
NS = 'namespace=~"$namespace"'

PanelKind = Literal["timeseries", "stat", "bargauge", "table"]
Where = Literal["kubernetes", "timescaledb"]


@dataclass(frozen=True)
class Query:
    """One target of a panel: PromQL, or SQL for the TimescaleDB data source.

    quiet: why the query may return nothing on a healthy, busy platform (an event-driven
    series: it exists once the event happened). only_on: the query has data only there
    (Redpanda's metrics on Kubernetes; TimescaleDB's compression). service: the
    service whose metrics it reads, when that service is not on every branch yet.
    """

    expr: str
    legend: str = ""
    sql: bool = False
    table: bool = False
    quiet: str | None = None
    only_on: Where | None = None
    exemplar: bool = False
    service: str | None = None


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    kind: PanelKind = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8


@dataclass(frozen=True)
class Board:
    """A dashboard; `service` names the service its metrics come from when that service
    is not part of every checkout yet (the tests then expect its queries to be empty
    until the service exists, and to return data once it does)."""

    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    service: str | None = None
    tags: tuple[str, ...] = field(default=("greenlane",))

    @property
    def filename(self) -> str:
        return f"{self.uid}.json"

    def queries(self) -> list[tuple[Panel, Query]]:
        return [(p, q) for p in self.panels for q in p.queries]

    def service_of(self, query: Query) -> str | None:
        """The service a query needs beyond today's platform, if any."""
        return query.service or self.service

    @property
    def uses_sql(self) -> bool:
        return any(q.sql for _, q in self.queries())


def quantile(q: float, histogram: str, legend: str) -> Query:
    """The q-quantile of a histogram over 5 minutes, exemplars on (they link to traces)."""
    return Query(
        f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{{{NS}}}[5m])))",
        legend,
        exemplar=True,
    )


class SqlQuery(cogvariants.Dataquery):
    """A PostgreSQL data source target (the SDK has no type for this plugin)."""

    def __init__(self, ref_id: str, raw_sql: str, table_format: bool) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.table_format = table_format

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": POSTGRES,
            "editorMode": "code",
            "format": "table" if self.table_format else "time_series",
            "rawQuery": True,
            "rawSql": self.raw_sql,
        }


class SqlQueryBuilder(cogbuilder.Builder[SqlQuery]):
    def __init__(self, query: SqlQuery) -> None:
        self._internal = query

    def build(self) -> SqlQuery:
        return self._internal


def _target(ref_id: str, query: Query) -> cogbuilder.Builder[Any]:
    if query.sql:
        return SqlQueryBuilder(SqlQuery(ref_id, query.expr, query.table))
    target = (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .expr(query.expr)
        .datasource(PROMETHEUS)
        .legend_format(query.legend or "__auto")
    )
    if query.exemplar:
        target = target.exemplar(True)
    if query.table:
        target = target.instant().format(PromQueryFormat.TABLE)
    return target


def _panel_builder(panel: Panel) -> Any:
    kinds: dict[str, Any] = {
        "timeseries": timeseries.Panel,
        "stat": stat.Panel,
        "bargauge": bargauge.Panel,
        "table": table.Panel,
    }
    return kinds[panel.kind]()


def build(board: Board) -> dict[str, Any]:
    """The board as Grafana dashboard JSON (a plain dict, ready for json.dumps)."""
    out = (
        dashboard.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(list(board.tags))
        .timezone("browser")
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Metrics").type("prometheus")
        )
        .with_variable(
            dashboard.QueryVariable("namespace")
            .label("Namespace")
            .datasource(PROMETHEUS)
            .query("label_values(up, namespace)")
            .include_all(True)
            .all_value(".*")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
    )
    if board.uses_sql:
        out = out.with_variable(
            dashboard.DatasourceVariable("database")
            .label("Database")
            .type(POSTGRES_TYPE)
            .hide(VariableHide.DONT_HIDE)
        )
    x = y = row_height = 0
    for number, panel in enumerate(board.panels, start=1):
        if x + panel.width > COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        sql = all(q.sql for q in panel.queries)
        builder = (
            _panel_builder(panel)
            .id(number)
            .title(panel.title)
            .description(panel.description)
            .datasource(POSTGRES if sql else PROMETHEUS)
            .grid_pos(GridPos(h=panel.height, w=panel.width, x=x, y=y))
            .unit(panel.unit)
        )
        for index, query in enumerate(panel.queries):
            builder = builder.with_target(_target(chr(ord("A") + index), query))
        out = out.with_panel(builder)
        x += panel.width
        row_height = max(row_height, panel.height)
    encoded: dict[str, Any] = json.loads(json.dumps(out.build(), cls=JSONEncoder))
    return encoded


def render(board: Board) -> str:
    """The JSON file's text: stable key order, so regenerating an unchanged board is a no-op."""
    return json.dumps(build(board), indent=2, sort_keys=True) + "\n"
