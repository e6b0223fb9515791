"""The Model tab: the card as tables and text, and the training report's plots.

The report (``report.html``) embeds its plots as ``data:image/png;base64`` images. Only those images are
taken from it (decoded, checked to be PNG or JPEG, re-encoded) with their captions escaped, so nothing
else of the report's markup reaches the page.
"""

from __future__ import annotations

import base64
import binascii
import html
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pandas as pd

from modelberth_core.contract import ModelCard

MAX_PLOTS = 24
"""Plots taken from one report; a report with more is not one a person reads on a phone anyway."""

_MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff"}


@dataclass(frozen=True)
class Plot:
    """One image of the report: its caption, format and bytes."""

    caption: str
    kind: str
    data: bytes = field(repr=False)


class _ReportImages(HTMLParser):
    """Collects embedded raster images with the nearest caption (alt, title, figcaption or heading)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.plots: list[Plot] = []
        self._heading: list[str] = []
        self._in_heading = False
        self._in_caption = False
        self._caption: list[str] = []
        self._figure_plot: int | None = None
        self._last_heading = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h1", "h2", "h3", "h4"):
            self._in_heading, self._heading = True, []
        elif tag == "figure":
            self._figure_plot = None
        elif tag == "figcaption":
            self._in_caption, self._caption = True, []
        elif tag == "img" and len(self.plots) < MAX_PLOTS:
            values = {k: v or "" for k, v in attrs}
            plot = _decode(values.get("src", ""), values.get("alt") or values.get("title") or "")
            if plot is not None:
                if not plot.caption:
                    plot = Plot(self._last_heading, plot.kind, plot.data)
                self.plots.append(plot)
                self._figure_plot = len(self.plots) - 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3", "h4") and self._in_heading:
            self._in_heading = False
            self._last_heading = " ".join("".join(self._heading).split())
        elif tag == "figcaption" and self._in_caption:
            self._in_caption = False
            caption = " ".join("".join(self._caption).split())
            if caption and self._figure_plot is not None:
                old = self.plots[self._figure_plot]
                self.plots[self._figure_plot] = Plot(caption, old.kind, old.data)

    def handle_data(self, data: str) -> None:
        if self._in_heading:
            self._heading.append(data)
        if self._in_caption:
            self._caption.append(data)


def _decode(src: str, caption: str) -> Plot | None:
    head, sep, payload = src.partition(",")
    if not sep or not head.startswith("data:image/") or not head.endswith(";base64"):
        return None
    kind = head[len("data:image/") : -len(";base64")].lower().replace("jpg", "jpeg")
    if kind not in _MAGIC:
        return None  # SVG can carry script; only raster images are shown
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not data.startswith(_MAGIC[kind]):
        return None
    return Plot(" ".join(caption.split()), kind, data)


def report_plots(report_html: str) -> list[Plot]:
    """The embedded PNG/JPEG plots of a training report, in page order, with captions."""
    parser = _ReportImages()
    parser.feed(report_html)
    parser.close()
    return parser.plots


def plots_html(plots: list[Plot]) -> str:
    """A responsive grid of the plots (data URIs, so no file is written and nothing is fetched)."""
    if not plots:
        return "<p>The training report has no plots.</p>"
    figures = []
    for plot in plots:
        caption = html.escape(plot.caption or "plot")
        encoded = base64.b64encode(plot.data).decode("ascii")
        figures.append(
            f'<figure class="mb-plot"><img src="data:image/{plot.kind};base64,{encoded}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return '<div class="mb-plots">' + "".join(figures) + "</div>"


def _params(params: dict[str, Any], limit: int = 6) -> str:
    items = [f"{k}={v}" for k, v in list(params.items())[:limit]]
    if len(params) > limit:
        items.append("…")
    return ", ".join(items)


def overview(card: ModelCard) -> str:
    """What the model is, how it was chosen and what to watch out for, as Markdown."""
    created = card.created_at.strftime("%Y-%m-%d %H:%M UTC")
    task = card.task if not card.classes else f"classification ({', '.join(card.classes)})"
    lines = [
        f"### {card.name} · version `{card.version}`",
        f"{task} of **{card.target}** · {len(card.features)} features · trained {created}"
        + (f" · git `{card.git_sha[:12]}`" if card.git_sha else ""),
        f"\n**Selected:** {card.selected.estimator} (`{card.selected.candidate}`)"
        + (f" with {_params(card.selected.params)}" if card.selected.params else ""),
    ]
    primary = card.metrics.primary
    test, cv = card.metrics.test.get(primary), card.metrics.cv.get(primary)
    if test is not None:
        cv_text = f" (cross-validation {cv:.4g})" if cv is not None else ""
        lines.append(f"\n**{primary}** on the held-out test set: **{test:.4g}**{cv_text}")
    if card.threshold is not None:
        lines.append(
            f"\n**Decision threshold:** P({card.positive_label}) ≥ {card.threshold.value:.3g} "
            f"({card.threshold.strategy})"
        )
    if card.dropped_columns:
        dropped = "; ".join(f"{d.name} ({d.reason})" for d in card.dropped_columns)
        lines.append(f"\n**Dropped columns:** {dropped}")
    for leak in card.leak_warnings:
        action = "dropped" if leak.dropped else "kept"
        lines.append(
            f"\n⚠ **Possible leak:** `{leak.column}` alone scores {leak.score:.3g} {leak.metric} ({action})"
        )
    for result in card.fairness:
        lines.append(
            f"\n**Fairness:** swapping `{result.attribute}` changes {result.flip_rate:.1%} of "
            f"{result.rows} test predictions"
        )
    lines.extend(f"\n- {note}" for note in card.notes)
    return "\n".join(lines)


def metrics_table(card: ModelCard) -> pd.DataFrame:
    """One row per metric: cross-validation and test scores (and at the threshold, for binary)."""
    names = list(dict.fromkeys([*card.metrics.test, *card.metrics.cv]))
    frame: dict[str, list[Any]] = {
        "metric": names,
        "cross-validation": [_round(card.metrics.cv.get(n)) for n in names],
        "test": [_round(card.metrics.test.get(n)) for n in names],
    }
    if card.metrics.test_at_threshold:
        frame["test at threshold"] = [_round(card.metrics.test_at_threshold.get(n)) for n in names]
    return pd.DataFrame(frame)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def leaderboard_table(card: ModelCard) -> pd.DataFrame:
    """Every candidate the trainer tried, best first."""
    sign = -1.0 if card.metrics.greater_is_better else 1.0
    rows = sorted(
        card.leaderboard,
        key=lambda r: (r.cv_score is None, sign * r.cv_score if r.cv_score is not None else 0.0),
    )
    return pd.DataFrame(
        {
            "candidate": [
                r.candidate + (" ★" if r.candidate == card.selected.candidate else "") for r in rows
            ],
            "estimator": [r.estimator for r in rows],
            f"cv {card.metrics.primary}": [_round(r.cv_score) for r in rows],
            "± std": [_round(r.cv_std) for r in rows],
            "configs": [r.n_configs for r in rows],
            "fit s": [round(r.fit_seconds, 2) for r in rows],
            "status": [r.status + (f": {r.message}" if r.message else "") for r in rows],
        }
    )


def confusion_table(card: ModelCard) -> pd.DataFrame:
    """The test confusion matrix with class names (rows: actual, columns: predicted); empty if none."""
    matrix = card.metrics.confusion_matrix
    classes = list(card.classes or [])
    if not matrix or len(matrix) != len(classes):
        return pd.DataFrame({"actual \\ predicted": []})
    frame: dict[str, list[Any]] = {"actual \\ predicted": classes}
    for j, name in enumerate(classes):
        frame[name] = [row[j] if j < len(row) else None for row in matrix]
    return pd.DataFrame(frame)


def importance_table(card: ModelCard, top: int = 15) -> pd.DataFrame:
    """The ``top`` most important features (columns ``feature`` and ``importance``)."""
    items = sorted(card.feature_importance.items(), key=lambda item: -abs(item[1]))[:top]
    return pd.DataFrame({"feature": [k for k, _ in items], "importance": [float(v) for _, v in items]})


def fingerprint(card: ModelCard) -> str:
    """Where the training data came from and its shape, as Markdown."""
    data = card.data
    lines = [
        "| property | value |\n|---|---|",
        f"| source | `{data.source}` |",
        f"| sha256 | `{data.sha256}` |",
        f"| rows × columns | {data.rows} × {data.columns} |",
        f"| train / test rows | {data.train_rows} / {data.test_rows} |",
    ]
    if data.test_source:
        lines.append(f"| test data | `{data.test_source}` |")
    if data.class_counts:
        counts = ", ".join(f"{k}: {v}" for k, v in data.class_counts.items())
        lines.append(f"| classes | {counts} |")
    return "\n".join(lines)


def versions(card: ModelCard, served: dict[str, str | None] | None = None) -> str:
    """The model version, library versions and what the service serves now, as Markdown."""
    v = card.versions
    lines = [
        "| component | version |\n|---|---|",
        f"| model version | `{card.version}` |",
        f"| model sha256 | `{card.model_sha256[:16]}…` |",
        f"| schema | {card.schema_version} |",
        f"| python | {v.python} |",
        f"| scikit-learn | {v.sklearn} |",
        f"| pandas | {v.pandas} |",
        f"| numpy | {v.numpy} |",
        f"| modelberth | {v.modelberth} |",
    ]
    for name, version in sorted((served or {}).items()):
        lines.append(f"| served: {name} | `{version or '?'}` |")
    return "\n".join(lines)
