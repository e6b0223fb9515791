"""The house style of each panel kind, on Grafana's own builders (grafana-foundation-sdk).

A panel is written once as ``timeseries_panel(title, description, *queries, unit=..., thresholds=...)``;
everything every panel of a kind shares (datasource, legend, tooltip, line style, the instant or range
queries) lives here, so a dashboard module holds only what differs: titles, queries, units, thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from string import ascii_uppercase

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    heatmap,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
"""Every panel, target and variable reads the data source the ``$datasource`` variable picks."""

ROW_WIDTH = 24
"""Grafana's grid is 24 columns wide."""


PanelBuilder = timeseries.Panel | stat.Panel | table.Panel | heatmap.Panel | bargauge.Panel
"""The panel kinds the dashboards use."""


@dataclass(frozen=True)
class Query:
    """One PromQL expression (a constant of ``queries``) and its series name in the legend."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Row:
    """A titled row of panels, laid out left to right, wrapping at the grid's width."""

    title: str
    panels: Sequence[PanelBuilder]


def thresholds(base: str, *steps: tuple[float, str]) -> dashboard.ThresholdsConfig:
    """``thresholds("green", (0.05, "red"))``: absolute colour steps, ``base`` below the first value."""
    return (
        dashboard.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=None, color=base), *(dm.Threshold(value=v, color=c) for v, c in steps)])
    )


def targets(
    queries: Sequence[Query], *, instant: bool, fmt: pm.PromQueryFormat | None = None
) -> list[Builder[Dataquery]]:
    """Prometheus targets with refIds A, B, C... in order."""
    out: list[Builder[Dataquery]] = []
    for ref, query in zip(ascii_uppercase, queries, strict=False):
        target = prometheus.Dataquery().ref_id(ref).datasource(DATASOURCE).expr(query.expr)
        target = target.legend_format(query.legend)
        target = target.instant() if instant else target.range()
        out.append(target.format(fmt) if fmt else target)
    return out


def timeseries_panel(
    title: str,
    description: str,
    *queries: Query,
    unit: str,
    steps: dashboard.ThresholdsConfig,
    width: int = 12,
) -> timeseries.Panel:
    """A line chart from 0, legend as a table (last, max), thresholds drawn as lines; 8 rows high."""
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets(queries, instant=False))
        .unit(unit)
        .min(0)
        .thresholds(steps)
        .span(width)
        .height(8)
        .color_scheme(dashboard.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
        .draw_style(cm.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(10)
        .show_points(cm.VisibilityMode.NEVER)
        .span_nulls(False)
        .thresholds_style(common.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.LINE))
        .stacking(common.StackingConfig().mode(cm.StackingMode.NONE).group("A"))
        .legend(
            common.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.BOTTOM)
            .calcs(["lastNotNull", "max"])
            .show_legend(True)
        )
        .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )


def threshold_lines(mode: cm.GraphTresholdsStyleMode) -> common.GraphThresholdsStyleConfig:
    """How a time series draws its thresholds: ``OFF`` for plain traffic, ``LINE_AND_AREA`` for an alert

    (the SDK spells the enum ``GraphTresholdsStyleMode``)."""
    return common.GraphThresholdsStyleConfig().mode(mode)


def stacked() -> common.StackingConfig:
    """Series stacked on each other (parts of one total)."""
    return common.StackingConfig().mode(cm.StackingMode.NORMAL).group("A")


def last_value() -> common.ReduceDataOptions:
    """Show the last non-null value of each series."""
    return common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def stat_panel(
    title: str,
    description: str,
    *queries: Query,
    unit: str,
    steps: dashboard.ThresholdsConfig,
    size: tuple[int, int],
) -> stat.Panel:
    """One big number per series (instant queries), its background coloured by the thresholds.

    ``size`` is ``(width, height)`` in grid units.
    """
    width, height = size
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets(queries, instant=True))
        .unit(unit)
        .decimals(0)
        .thresholds(steps)
        .span(width)
        .height(height)
        .color_scheme(dashboard.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .reduce_options(last_value())
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.AUTO)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
    )


def table_panel(
    title: str, description: str, query: Query, *, rename_value: str, size: tuple[int, int]
) -> table.Panel:
    """The current series of one instant query as table rows, its value column named ``rename_value``."""
    width, height = size
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets([query], instant=True, fmt=pm.PromQueryFormat.TABLE))
        .unit("none")
        .decimals(0)
        .thresholds(thresholds("green"))
        .span(width)
        .height(height)
        .show_header(True)
        .footer(common.TableFooterOptions().show(False).reducer(["sum"]))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": {"Value": rename_value}},
            )
        )
    )


def heatmap_panel(title: str, description: str, query: Query, *, unit: str, width: int = 12) -> heatmap.Panel:
    """Histogram buckets over time (``le`` rows, pre-bucketed by Prometheus), exponential orange scale."""
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets([query], instant=False, fmt=pm.PromQueryFormat.HEATMAP))
        .unit(unit)
        .thresholds(thresholds("green"))
        .span(width)
        .height(8)
        .calculate(False)
        .cell_gap(1)
        .color(
            heatmap.HeatmapColorOptions()
            .mode(hm.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .fill("dark-orange")
            .scale(hm.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
            .reverse(False)
        )
        .exemplars_color("rgba(255,0,255,0.7)")
        .filter_values(heatmap.FilterValueRange().le(1e-9))
        .show_legend()
        .rows_frame(heatmap.RowsHeatmapOptions().layout(cm.HeatmapCellLayout.AUTO))
        .show_tooltip()
        .hide_y_histogram()
        .y_axis(heatmap.YAxisConfig().axis_placement(cm.AxisPlacement.LEFT).unit(unit))
        .scale_distribution(common.ScaleDistributionConfig().type(cm.ScaleDistribution.LINEAR))
        .hide_from(common.HideSeriesConfig().legend(False).tooltip(False).viz(False))
    )


def bargauge_panel(
    title: str,
    description: str,
    query: Query,
    *,
    unit: str,
    steps: dashboard.ThresholdsConfig,
    width: int = 8,
) -> bargauge.Panel:
    """One horizontal bar per series (instant query), coloured by the thresholds; 8 rows high."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets([query], instant=True))
        .unit(unit)
        .thresholds(steps)
        .span(width)
        .height(8)
        .color_scheme(dashboard.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .reduce_options(last_value())
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .value_mode(cm.BarGaugeValueMode.COLOR)
        .show_unfilled(True)
        .min_viz_width(0)
        .min_viz_height(10)
        .orientation(cm.VizOrientation.HORIZONTAL)
    )


def query_variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    """A variable listing label values, refreshed with the time range; every one of them offers "All"."""
    variable = dashboard.QueryVariable(name).label(label).datasource(DATASOURCE)
    variable = variable.query({"query": query, "refId": name}).refresh(
        dm.VariableRefresh.ON_TIME_RANGE_CHANGED
    )
    return variable.sort(dm.VariableSort.ALPHABETICAL_ASC).regex("")


def layout(board: dashboard.Dashboard, rows: Sequence[Row]) -> dashboard.Dashboard:
    """Add ``rows`` to ``board``; every row and panel gets the next id (1, 2, ...) in reading order."""
    next_id = 1
    for row in rows:
        board = board.with_row(dashboard.Row(row.title).id(next_id).collapsed(False))
        next_id += 1
        for panel in row.panels:
            board = board.with_panel(panel.id(next_id))
            next_id += 1
    return board
