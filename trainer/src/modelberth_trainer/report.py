"""``report.html``: one self-contained page (inline CSS, plots as base64 PNG, no external URLs)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import NDArray
from sklearn import metrics as skm

from modelberth_core.contract import ModelCard, Threshold
from modelberth_trainer.leakage import GuardResult
from modelberth_trainer.prepare import Prepared

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px 0;font-size:26px} h2{margin-top:32px;border-bottom:2px solid #dde2ea;padding-bottom:4px}
.sub{color:#5b6475}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0}
.card{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002;min-width:150px}
.card b{display:block;font-size:22px} .card span{color:#5b6475;font-size:13px}
table{border-collapse:collapse;background:#fff;margin:8px 0;font-size:14px}
th,td{border:1px solid #dde2ea;padding:5px 9px;text-align:left} th{background:#eef1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.warn{background:#fff1f0;border-left:5px solid #d4380d;padding:10px 14px;margin:10px 0;border-radius:4px}
.ok{background:#f0fff4;border-left:5px solid #389e0d;padding:10px 14px;margin:10px 0;border-radius:4px}
.plots{display:flex;flex-wrap:wrap;gap:16px}
.plots figure{margin:0;background:#fff;padding:8px;border-radius:8px}
figcaption{color:#5b6475;font-size:13px;text-align:center} img{max-width:100%}
code{background:#eef1f5;padding:1px 4px;border-radius:3px}
"""


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(fig: Figure, caption: str) -> str:
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{_png(fig)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.4f}"


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{_e(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _class_balance(prep: Prepared) -> str:
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    if prep.problem.classification and prep.problem.classes:
        classes = prep.problem.classes
        train = pd.Series(prep.y_train).value_counts().reindex(classes, fill_value=0)
        test = pd.Series(prep.y_test).value_counts().reindex(classes, fill_value=0)
        pos = np.arange(len(classes))
        ax.bar(pos - 0.2, train / train.sum(), 0.4, label=f"train ({train.sum()})", color="#4c78a8")
        ax.bar(pos + 0.2, test / test.sum(), 0.4, label=f"test ({test.sum()})", color="#f58518")
        ax.set_xticks(pos, [c[:14] for c in classes], rotation=30 if len(classes) > 3 else 0, ha="right")
        ax.set_ylabel("share of rows")
        ax.legend()
        caption = "Class balance"
    else:
        ax.hist(prep.y_train.astype(float), bins=30, alpha=0.7, label="train", color="#4c78a8", density=True)
        ax.hist(prep.y_test.astype(float), bins=30, alpha=0.6, label="test", color="#f58518", density=True)
        ax.set_xlabel(prep.target)
        ax.legend()
        caption = "Target distribution"
    return _figure(fig, caption)


def _confusion(card: ModelCard) -> str:
    matrix = np.asarray(card.metrics.confusion_matrix)
    classes = card.classes or []
    size = min(9.0, 2.5 + 0.5 * len(classes))
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black"
        )
    labels = [c[:14] for c in classes]
    ax.set_xticks(range(len(classes)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    note = f" at threshold {card.threshold.value:.3f}" if card.threshold else ""
    return _figure(fig, f"Confusion matrix (test){note}")


def _curves(prep: Prepared, scores: NDArray[np.float64], threshold: Threshold | None) -> list[str]:
    problem = prep.problem
    assert problem.classes is not None
    out = []
    if len(problem.classes) == 2 and problem.positive is not None:
        pos = problem.classes.index(problem.positive)
        is_pos = prep.y_test == problem.positive
        fpr, tpr, _ = skm.roc_curve(is_pos, scores[:, pos])
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        ax.plot(fpr, tpr, color="#4c78a8", label=f"AUC {skm.auc(fpr, tpr):.3f}")
        ax.plot([0, 1], [0, 1], "--", color="#999")
        if threshold is not None:
            hard = scores[:, pos] >= threshold.value
            x = float((hard & ~is_pos).sum() / max(1, (~is_pos).sum()))
            y = float((hard & is_pos).sum() / max(1, is_pos.sum()))
            ax.plot([x], [y], "o", color="#d4380d", label=f"threshold {threshold.value:.3f}")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right")
        out.append(_figure(fig, "ROC curve (test)"))
        precision, recall, _ = skm.precision_recall_curve(is_pos, scores[:, pos])
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        ax.plot(
            recall,
            precision,
            color="#f58518",
            label=f"AP {skm.average_precision_score(is_pos, scores[:, pos]):.3f}",
        )
        ax.axhline(float(is_pos.mean()), ls="--", color="#999", label="base rate")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.legend(loc="upper right")
        out.append(_figure(fig, f"Precision-recall curve (test, positive = {problem.positive})"))
    else:
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        for j, label in enumerate(problem.classes[:10]):
            is_pos = prep.y_test == label
            if 0 < is_pos.sum() < len(is_pos):
                fpr, tpr, _ = skm.roc_curve(is_pos, scores[:, j])
                ax.plot(fpr, tpr, label=f"{label[:14]} ({skm.auc(fpr, tpr):.3f})")
        ax.plot([0, 1], [0, 1], "--", color="#999")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=7, loc="lower right")
        out.append(_figure(fig, "ROC curves, one class vs rest (test)"))
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        for j, label in enumerate(problem.classes[:10]):
            is_pos = prep.y_test == label
            if 0 < is_pos.sum() < len(is_pos):
                precision, recall, _ = skm.precision_recall_curve(is_pos, scores[:, j])
                ap = skm.average_precision_score(is_pos, scores[:, j])
                ax.plot(recall, precision, label=f"{label[:14]} (AP {ap:.3f})")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.legend(fontsize=7, loc="lower left")
        out.append(_figure(fig, "Precision-recall curves, one class vs rest (test)"))
    return out


def _residuals(prep: Prepared, scores: NDArray[np.float64]) -> list[str]:
    actual, predicted = prep.y_test.astype(float), scores[:, 0]
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.scatter(actual, predicted, s=8, alpha=0.5, color="#4c78a8")
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([low, high], [low, high], "--", color="#999")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    first = _figure(fig, "Predicted vs actual (test)")
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.scatter(predicted, actual - predicted, s=8, alpha=0.5, color="#f58518")
    ax.axhline(0.0, ls="--", color="#999")
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (actual - predicted)")
    return [first, _figure(fig, "Residuals (test)")]


def _importance(card: ModelCard) -> str:
    items = list(card.feature_importance.items())[:20][::-1]
    fig, ax = plt.subplots(figsize=(6.0, 0.5 + 0.3 * max(3, len(items))))
    ax.barh([k[:30] for k, _ in items], [v for _, v in items], color="#54a24b")
    ax.set_xlabel(f"drop in {card.metrics.primary} when shuffled")
    return _figure(fig, "Permutation importance (test)")


def _gate_plot(
    prep: Prepared, candidate: NDArray[np.float64], champion: NDArray[np.float64], who: str
) -> str:
    """Both models on the same test rows: ROC curves for a classifier, predicted vs actual for a regressor."""
    problem = prep.problem
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    if problem.classification and problem.classes is not None:
        if len(problem.classes) == 2 and problem.positive is not None:
            pos = problem.classes.index(problem.positive)
            truth = prep.y_test == problem.positive
            pairs = [(truth, candidate[:, pos]), (truth, champion[:, pos])]
            caption = f"ROC curves on the same test rows (positive = {problem.positive})"
        else:  # micro-average: every (row, class) pair as one binary decision
            onehot = np.asarray(prep.y_test)[:, None] == np.asarray(problem.classes)[None, :]
            pairs = [(onehot.ravel(), candidate.ravel()), (onehot.ravel(), champion.ravel())]
            caption = "ROC curves on the same test rows (micro-averaged over the classes)"
        for (truth, score), label, color in zip(
            pairs, ("candidate", who), ("#4c78a8", "#d4380d"), strict=True
        ):
            fpr, tpr, _ = skm.roc_curve(truth, score)
            ax.plot(fpr, tpr, color=color, label=f"{label} (AUC {skm.auc(fpr, tpr):.3f})")
        ax.plot([0, 1], [0, 1], "--", color="#999")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right", fontsize=8)
    else:
        actual = prep.y_test.astype(float)
        ax.scatter(actual, candidate[:, 0], s=8, alpha=0.5, color="#4c78a8", label="candidate")
        ax.scatter(actual, champion[:, 0], s=8, alpha=0.5, color="#d4380d", label=who)
        low, high = float(actual.min()), float(actual.max())
        ax.plot([low, high], [low, high], "--", color="#999")
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        ax.legend(fontsize=8)
        caption = "Predicted vs actual on the same test rows"
    return _figure(fig, caption)


def _gate_section(
    card: ModelCard,
    prep: Prepared,
    scores: NDArray[np.float64],
    champion_scores: NDArray[np.float64] | None,
) -> list[str]:
    gate = card.gate
    if gate is None:
        return []
    parts = ["<h2>Promotion gate: champion vs candidate</h2>"]
    if gate.verdict == "skipped":
        parts.append(
            "<div class=warn>The gate was skipped (<code>--no-gate</code>): promoted to champion"
            " without comparison or checks.</div>"
        )
        return parts
    if gate.verdict == "promoted":
        against = (
            f" over champion {_e(gate.champion_version)}" if gate.champion_version else " (first version)"
        )
        parts.append(f"<div class=ok><b>Promoted to champion</b>{against}.</div>")
    else:
        stays = f"champion {_e(gate.champion_version)} stays" if gate.champion_version else "no champion yet"
        parts.append(
            f"<div class=warn><b>Refused</b>: published as challenger, {stays}."
            "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in gate.reasons) + "</ul></div>"
        )
    champion = f"champion {gate.champion_version}" if gate.champion_version else "champion (none)"
    parts.append(
        _table(
            ["metric", "candidate", champion, "tolerance", "rows"],
            [
                [
                    gate.metric,
                    _fmt(gate.candidate_score),
                    _fmt(gate.champion_score),
                    f"{gate.tolerance:g}",
                    gate.rows,
                ]
            ],
            {1, 2, 3, 4},
        )
    )
    parts.append(
        _table(
            ["check", "result", "detail", "value", "limit", "margin"],
            [
                [
                    f"{c.kind}: {c.name}",
                    "pass" if c.passed else "FAIL",
                    c.detail,
                    _fmt(c.value),
                    _fmt(c.limit),
                    _fmt(c.margin),
                ]
                for c in gate.checks
            ],
            {3, 4, 5},
        )
    )
    if champion_scores is not None:
        parts.append(
            "<div class=plots>"
            + _gate_plot(prep, scores, champion_scores, f"champion {gate.champion_version}")
            + "</div>"
        )
    return parts


def render_report(
    card: ModelCard,
    prep: Prepared,
    scores: NDArray[np.float64],
    threshold: Threshold | None,
    guard: GuardResult,
    champion_scores: NDArray[np.float64] | None = None,
) -> str:
    """The whole report as one HTML string; ``champion_scores`` are the champion's on the same test rows."""
    parts = _summary(card, threshold)
    parts += _gate_section(card, prep, scores, champion_scores)
    parts += _leak_section(card, guard)
    parts += _leaderboard_section(card)
    parts += _metrics_section(card)
    parts += _plots_section(card, prep, scores, threshold)
    parts += _fairness_section(card)
    parts += _features_section(card)
    parts += _data_sections(card)
    title = f"{card.name} {card.version} — modelberth report"
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
        f"<body><main>{''.join(parts)}</main></body></html>\n"
    )


def _summary(card: ModelCard, threshold: Threshold | None) -> list[str]:
    """The title, one line on what was trained from what, and the headline numbers as cards."""
    m = card.metrics
    primary = m.primary
    cards = [
        (_fmt(m.test.get(primary)), f"test {primary}"),
        (_fmt(m.cv.get(primary)), f"cv {primary}"),
    ]
    if "accuracy" in m.test:
        cards.append((_fmt(m.test["accuracy"]), "test accuracy"))
    if m.test_at_threshold:
        cards.append((_fmt(m.test_at_threshold["accuracy"]), "accuracy at threshold"))
    if threshold:
        cards.append((f"{threshold.value:.3f}", f"threshold ({threshold.strategy})"))
    cards.append((f"{card.timings.get('total_seconds', 0):.1f}s", "training time"))
    return [
        f"<h1>{_e(card.name)} <span class=sub>{_e(card.version)}</span></h1>",
        f"<div class=sub>{_e(card.task)} of <code>{_e(card.target)}</code> from {_e(card.data.source)}"
        f" · {card.data.rows} rows · selected <b>{_e(card.selected.candidate)}</b>"
        f" ({_e(card.selected.estimator)})"
        f" · created {_e(card.created_at.isoformat(timespec='seconds'))}</div>",
        "<div class=cards>"
        + "".join(f"<div class=card><b>{v}</b><span>{_e(k)}</span></div>" for v, k in cards)
        + "</div>",
    ]


def _leak_section(card: ModelCard, guard: GuardResult) -> list[str]:
    """Whether a column predicts the target suspiciously well, and the single-column scores."""
    parts = ["<h2>Leak guard</h2>"]
    if card.leak_warnings:
        for w in card.leak_warnings:
            parts.append(
                f"<div class=warn><b>{_e(w.column)}</b> {_e(guard.reasons.get(w.column, ''))}. "
                "If it is not known at prediction time, retrain with"
                f" <code>--drop {_e(w.column)}</code>.</div>"
            )
    else:
        parts.append("<div class=ok>No single column predicts the target suspiciously well.</div>")
    if guard.single_scores:
        top = sorted(guard.single_scores.items(), key=lambda kv: kv[1], reverse=True)[:10]
        parts.append(
            f"<p class=sub>Single-column cross-validated {_e(guard.metric)} (training part), top 10:</p>"
        )
        parts.append(_table(["column", guard.metric], [[k, f"{v:.4f}"] for k, v in top], {1}))
    return parts


def _leaderboard_section(card: ModelCard) -> list[str]:
    """Every candidate: its cross-validated score, configurations tried, time and best parameters."""
    primary = card.metrics.primary
    parts = ["<h2>Leaderboard</h2>"]
    parts.append(
        _table(
            [
                "rank",
                "candidate",
                "estimator",
                f"cv {primary}",
                "± std",
                "configs",
                "seconds",
                "status",
                "best params",
            ],
            [
                [
                    i,
                    r.candidate,
                    r.estimator,
                    _fmt(r.cv_score),
                    _fmt(r.cv_std),
                    r.n_configs,
                    f"{r.fit_seconds:.1f}",
                    r.status + (f": {r.message}" if r.message else ""),
                    ", ".join(f"{k}={v}" for k, v in r.params.items()),
                ]
                for i, r in enumerate(card.leaderboard, start=1)
            ],
            {3, 4, 5, 6},
        )
    )
    return parts


def _metrics_section(card: ModelCard) -> list[str]:
    """Every metric on the training part (cross-validated) and on the test part."""
    m = card.metrics
    parts = ["<h2>Metrics</h2>"]
    keys = sorted(set(m.cv) | set(m.test))
    header = ["metric", "cv (training part)", "test"]
    rows = [[k, _fmt(m.cv.get(k)), _fmt(m.test.get(k))] for k in keys]
    if m.test_at_threshold:
        header.append("test at threshold")
        for row in rows:
            row.append(_fmt(m.test_at_threshold.get(str(row[0]))))
    parts.append(_table(header, rows, {1, 2, 3}))
    return parts


def _plots_section(
    card: ModelCard, prep: Prepared, scores: NDArray[np.float64], threshold: Threshold | None
) -> list[str]:
    """Class balance, then the confusion matrix and curves (classifier) or residuals (regressor), then
    the permutation importance."""
    plots = [_class_balance(prep)]
    if card.task == "classification":
        plots.append(_confusion(card))
        plots += _curves(prep, scores, threshold)
    else:
        plots += _residuals(prep, scores)
    if card.feature_importance:
        plots.append(_importance(card))
    return ["<h2>Plots</h2><div class=plots>" + "".join(plots) + "</div>"]


def _fairness_section(card: ModelCard) -> list[str]:
    """How many predictions change when a protected attribute is swapped."""
    parts = ["<h2>Fairness</h2>"]
    if card.fairness:
        parts.append(
            _table(
                ["attribute", "predictions that change", "rows swapped", "swap"],
                [
                    [
                        f.attribute,
                        f"{f.flip_rate:.2%}",
                        f.rows,
                        ", ".join(f"{a}→{b}" for a, b in f.swaps.items()),
                    ]
                    for f in card.fairness
                ],
                {1, 2},
            )
        )
    else:
        parts.append("<p class=sub>No protected attributes were named (<code>--protected COL</code>).</p>")
    return parts


def _features_section(card: ModelCard) -> list[str]:
    """What the model reads: each feature's type, range or categories, an example and its importance."""
    parts = ["<h2>Features</h2>"]
    parts.append(
        _table(
            ["feature", "type", "required", "range / categories", "example", "importance"],
            [
                [
                    f.name,
                    f.type,
                    "yes" if f.required else "no (nulls seen)",
                    f"{f.min:g} … {f.max:g}"
                    if f.type == "numeric"
                    else (
                        f"{len(f.categories or [])} categories"
                        if f.type == "categorical"
                        else f"≤ {f.max_length} chars"
                    ),
                    str(f.example)[:60],
                    _fmt(card.feature_importance.get(f.name)),
                ]
                for f in card.features
            ],
            {5},
        )
    )
    return parts


def _data_sections(card: ModelCard) -> list[str]:
    """Dropped columns, the data, the timings, the notes and the library versions."""
    parts = ["<h2>Dropped columns</h2>"]
    parts.append(
        _table(["column", "reason"], [[d.name, d.reason] for d in card.dropped_columns])
        if card.dropped_columns
        else "<p class=sub>None.</p>"
    )
    parts.append("<h2>Data</h2>")
    d = card.data
    parts.append(
        _table(
            ["source", "rows", "columns", "train", "test", "test source", "sha256"],
            [
                [
                    d.source,
                    d.rows,
                    d.columns,
                    d.train_rows,
                    d.test_rows,
                    d.test_source or "hold-out split",
                    d.sha256[:16] + "…",
                ]
            ],
        )
    )
    parts.append("<h2>Timings</h2>")
    parts.append(
        _table(
            ["step", "seconds"],
            [[k.removesuffix("_seconds"), f"{v:.2f}"] for k, v in card.timings.items()],
            {1},
        )
    )
    if card.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in card.notes) + "</ul>")
    v = card.versions
    parts.append(
        f"<p class=sub>python {_e(v.python)} · scikit-learn {_e(v.sklearn)} · pandas {_e(v.pandas)}"
        f" · numpy {_e(v.numpy)}"
        f" · modelberth {_e(v.modelberth)} · model sha256 {_e(card.model_sha256[:16])}…</p>"
    )
    return parts
