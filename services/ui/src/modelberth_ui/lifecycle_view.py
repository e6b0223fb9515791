"""The Versions tab: every version of a model, champion against challenger, and shadow agreement.

Read-only: moving aliases stays with ``modelberth models promote/rollback`` and the trainer's gate. Everything
here comes from the inference API (the served card, ``GET /v1/models/{name}/versions``, ``.../history`` and
``.../versions/challenger/card``), never the store.
Tables are DataFrames (shown as text), so nothing a service sends is rendered as markup.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from modelberth_core.contract import GateResult, ModelCard
from modelberth_ui.client import ModelHistory, ModelVersions, ShadowStats, VersionInfo

VERSION_COLUMNS = ["version", "created", "metric", "score", "aliases"]
HISTORY_COLUMNS = ["time (UTC)", "alias", "from → to", "who", "why"]
CHECK_COLUMNS = ["check", "kind", "passed", "value", "limit", "margin", "detail"]


MISSING = "—"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _cell(value: float | None) -> float | str:
    return MISSING if value is None else round(value, 4)


def versions_table(listing: ModelVersions) -> pd.DataFrame:
    """One row per version, newest first: when it was made, its primary test score, its aliases."""
    rows = sorted(
        listing.versions,
        key=lambda v: (v.created_at.timestamp() if v.created_at else 0.0, v.version),
        reverse=True,
    )
    return pd.DataFrame(
        {
            "version": [v.version for v in rows],
            "created": [v.created_at.strftime("%Y-%m-%d %H:%M UTC") if v.created_at else "" for v in rows],
            "metric": [v.metric or "" for v in rows],
            "score": [_round(v.score) for v in rows],
            "aliases": [", ".join(listing.aliases_of(v.version)) for v in rows],
        },
        columns=VERSION_COLUMNS,
    )


def _find(listing: ModelVersions | None, alias: str) -> VersionInfo | None:
    if listing is None or alias not in listing.aliases:
        return None
    version = listing.aliases[alias]
    return next((v for v in listing.versions if v.version == version), None)


def history_table(history: ModelHistory) -> pd.DataFrame:
    """One row per alias move, newest first: when, which alias, from which version to which, who and why."""
    return pd.DataFrame(
        {
            "time (UTC)": [e.at.strftime("%Y-%m-%d %H:%M:%S") for e in history.events],
            "alias": [e.alias for e in history.events],
            "from → to": [
                f"{e.from_version or '(none)'} → {e.to_version or '(removed)'}" for e in history.events
            ],
            "who": [e.actor for e in history.events],
            "why": [e.reason + (f": {e.detail}" if e.detail else "") for e in history.events],
        },
        columns=HISTORY_COLUMNS,
    )


def comparison_table(
    champion: ModelCard, listing: ModelVersions | None, challenger_card: ModelCard | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Champion and challenger side by side, primary metric first, and notes on what could not be shown.

    The champion's column is its card (every test metric); so is the challenger's when its card could be
    read (``challenger_card``), else only its primary test score from the versions listing.
    """
    notes: list[str] = []
    primary = champion.metrics.primary
    names = [primary, *(n for n in champion.metrics.test if n != primary)]
    challenger = _find(listing, "challenger")
    if (
        challenger_card is not None
        and challenger is not None
        and challenger_card.version == challenger.version
    ):
        names += [n for n in challenger_card.metrics.test if n not in names]
    champion_label = f"champion {champion.version}"
    frame: dict[str, list[Any]] = {
        "metric": [n + (" (primary)" if n == primary else "") for n in names],
        champion_label: [_cell(champion.metrics.test.get(n)) for n in names],
    }
    if listing is None:
        notes.append("The challenger is not known: this inference does not list versions.")
    elif challenger is None:
        notes.append("This model has no challenger.")
    elif challenger.version == champion.version:
        notes.append("The challenger is the champion's version.")
    else:
        _add_challenger(frame, notes, champion, challenger, names, challenger_card)
    return pd.DataFrame(frame), notes


def _add_challenger(
    frame: dict[str, list[Any]],
    notes: list[str],
    champion: ModelCard,
    challenger: VersionInfo,
    names: list[str],
    card: ModelCard | None,
) -> None:
    """The challenger's column and its difference to the champion: every test metric of its card, or the
    primary score of the listing when its card is not available."""
    primary = champion.metrics.primary
    if card is not None and card.version == challenger.version:
        scores = {n: card.metrics.test.get(n) for n in names}
        if card.metrics.primary != primary:
            notes.append(
                f"The challenger's primary metric is {card.metrics.primary}, the champion's {primary}."
            )
    else:
        scores = {primary: challenger.score if challenger.metric in (None, primary) else None}
        if challenger.metric not in (None, primary):
            notes.append(f"The challenger was scored on {challenger.metric}, the champion on {primary}.")
    # Object columns: a metric the challenger (or champion) has no score for reads "—", not NaN.
    frame[f"challenger {challenger.version}"] = [_cell(scores.get(n)) for n in names]
    deltas = []
    for n in names:
        own, other = champion.metrics.test.get(n), scores.get(n)
        deltas.append(_cell(other - own if other is not None and own is not None else None))
    frame["challenger − champion"] = deltas
    better = _better(champion, scores.get(primary))
    if better is not None:
        verdict = "better than" if better else "not better than"
        notes.append(f"On {primary} the challenger is {verdict} the champion ({_direction(champion)}).")
    where = "Its card is below" if card is not None else "Only the challenger's primary score could be read"
    notes.append(
        f"{where}; `modelberth models diff {champion.name} {champion.version} {challenger.version}` "
        "also compares params, schema and data."
    )


def _better(champion: ModelCard, score: float | None) -> bool | None:
    own = champion.metrics.test.get(champion.metrics.primary)
    if score is None or own is None:
        return None
    return score > own if champion.metrics.greater_is_better else score < own


def _direction(card: ModelCard) -> str:
    return "higher is better" if card.metrics.greater_is_better else "lower is better"


def gate_summary(card: ModelCard) -> str:
    """The promotion gate's verdict on the champion, as Markdown (a note when the card has none)."""
    gate: GateResult | None = card.gate
    if gate is None:
        return f"Version `{card.version}` carries no gate verdict (published without the promotion gate)."
    against = (
        f"against champion `{gate.champion_version}`" if gate.champion_version else "as the first version"
    )
    scores = f"candidate {_fmt(gate.candidate_score)}"
    if gate.champion_score is not None:
        scores += f", champion {_fmt(gate.champion_score)}"
    lines = [
        f"**Gate: {gate.verdict}** {against} · {gate.metric} on {gate.rows} shared test rows: {scores} "
        f"(tolerance {gate.tolerance:g}, {'higher' if gate.greater_is_better else 'lower'} is better)"
    ]
    lines.extend(f"- {reason}" for reason in gate.reasons)
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def gate_checks(card: ModelCard) -> pd.DataFrame:
    """Every check of the champion's gate: what was measured, the limit, the margin (empty if no gate)."""
    checks = card.gate.checks if card.gate is not None else []
    return pd.DataFrame(
        {
            "check": [c.name for c in checks],
            "kind": [c.kind for c in checks],
            "passed": ["✓" if c.passed else "✗" for c in checks],
            "value": [_round(c.value) for c in checks],
            "limit": [_round(c.limit) for c in checks],
            "margin": [_round(c.margin) for c in checks],
            "detail": [c.detail for c in checks],
        },
        columns=CHECK_COLUMNS,
    )


def shadow_line(shadow: ShadowStats | None) -> str:
    """One line on shadow traffic: agreement so far, or why there is none."""
    if shadow is None:
        return "Shadow agreement: not available (this inference does not report shadow traffic)."
    if shadow.status == "incompatible":
        why = shadow.reason or "no reason given"
        return f"Shadow traffic: off, the challenger cannot score the champion's requests ({why})."
    if shadow.enabled is False or shadow.status == "off":
        return "Shadow traffic: off for this model."
    pair = ""
    if shadow.champion and shadow.challenger:
        pair = f" between champion `{shadow.champion}` and challenger `{shadow.challenger}`"
    if shadow.agreement is None or not shadow.compared_rows:
        return f"Shadow traffic: on{pair}; no request has been compared yet."
    return (
        f"Shadow agreement{pair}: **{shadow.agreement:.1%}** "
        f"({shadow.agreeing_rows or 0} of {shadow.compared_rows} compared rows)."
    )
