"""The promotion gate at the end of ``modelberth train``: should this candidate become the champion?

The candidate and the current champion are scored **on the same rows**: the candidate's held-out test rows
as read from the input (every column, before ``--drop``), so a champion trained on other features is
scored fairly. The candidate is promoted when its primary metric is not worse than the champion's by more
than the tolerance, no leak warning stands (unless allowed) and every declared behavioural check passes;
otherwise it is published as ``challenger`` and the champion stays. The first version of a model becomes
champion when its checks pass. ``--no-gate`` promotes unconditionally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import joblib
import numpy as np
import sklearn
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from modelberth_core import contract
from modelberth_core.contract import GateCheck, GateResult, LeakWarning, ModelCard, Threshold
from modelberth_core.store import (
    CHALLENGER,
    CHAMPION,
    AliasConflict,
    ModelNotFound,
    ModelStore,
    Resolved,
    StoreError,
)
from modelberth_trainer import expectations as expectations_module
from modelberth_trainer.expectations import Expectations
from modelberth_trainer.prepare import Prepared
from modelberth_trainer.scoring import greater_is_better
from modelberth_trainer.search import all_scores, predict_scores
from modelberth_trainer.settings import TrainerSettings


@dataclass(frozen=True)
class GateOutcome:
    """The verdict for the card, plus the champion's scores on the gate rows for the report's plots."""

    result: GateResult
    champion_scores: NDArray[np.float64] | None = None

    @property
    def promote(self) -> bool:
        """True when the candidate is to become champion."""
        return self.result.verdict != "refused"


@dataclass(frozen=True)
class ChampionScores:
    """What scoring the champion on the gate rows gave: its scores, or why it could not be compared."""

    version: str
    scores: NDArray[np.float64] | None = None
    refusal: str | None = None


@dataclass(frozen=True)
class Contender:
    """The new version as the gate judges it: the fitted pipeline and the data it was prepared from, its
    scores on the test rows, its threshold (binary), the leak guard's warnings and the target's spread
    (regression, for the invariance checks)."""

    pipeline: Pipeline
    prep: Prepared
    test_scores: NDArray[np.float64]
    threshold: Threshold | None
    leak_warnings: list[LeakWarning]
    target_std: float | None


def evaluate(
    store: ModelStore,
    name: str,
    contender: Contender,
    settings: TrainerSettings,
    expectations: Expectations | None,
) -> GateOutcome:
    """Compare the contender with the champion and run every check; move nothing (see :func:`apply`)."""
    prep = contender.prep
    problem = prep.problem
    metric = problem.metric
    higher = greater_is_better(metric)
    candidate_score = _finite(all_scores(problem, prep.y_test, contender.test_scores).get(metric))
    unreadable: str | None = None
    try:
        current = store.champion(name)
    except ModelNotFound:
        current = None
    except StoreError as exc:  # a damaged pointer: nothing to compare with, nothing to promote over
        current, unreadable = None, f"cannot read the champion: {exc}"
    base = {
        "metric": metric,
        "greater_is_better": higher,
        "candidate_score": candidate_score,
        "tolerance": settings.gate_tolerance,
        "rows": len(prep.y_test),
        "champion_version": current,
    }
    if settings.no_gate:
        return GateOutcome(GateResult(verdict="skipped", **base))

    checks: list[GateCheck] = []
    if unreadable is not None:
        checks.append(GateCheck(kind="comparable", name="champion", passed=False, detail=unreadable))
    champion_scores: NDArray[np.float64] | None = None
    champion_score: float | None = None
    if current is not None:
        scored = score_champion(store, name, current, prep)
        if scored.scores is None:
            assert scored.refusal is not None
            checks.append(
                GateCheck(kind="comparable", name=f"champion {current}", passed=False, detail=scored.refusal)
            )
        else:
            champion_scores = scored.scores
            champion_score = _finite(all_scores(problem, prep.y_test, scored.scores).get(metric))
            checks.append(
                _metric_check(metric, higher, candidate_score, champion_score, settings.gate_tolerance)
            )
    checks.append(_leak_check(contender.leak_warnings, settings.allow_leaks))
    if expectations is not None:
        checks += expectations_module.run(
            expectations, contender.pipeline, prep, contender.threshold, contender.target_std
        )
    failed = [c for c in checks if not c.passed]
    result = GateResult(
        verdict="refused" if failed else "promoted",
        champion_score=champion_score,
        checks=checks,
        reasons=[f"{c.kind} {c.name}: {c.detail}" for c in failed],
        **base,
    )
    return GateOutcome(result, champion_scores)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def score_champion(store: ModelStore, name: str, version: str, prep: Prepared) -> ChampionScores:
    """The champion's scores on the candidate's test rows, in the candidate's class order; or why not."""
    try:
        card = store.card(name, version)
        version_dir = store.fetch(name, version)
        model_path = contract.verify_checksum(version_dir, card)
    except (StoreError, contract.ContractError, OSError) as exc:
        return ChampionScores(version, refusal=f"cannot read the champion {version}: {exc}")
    refusal = _incomparable(card, prep)
    if refusal is not None:
        return ChampionScores(version, refusal=f"cannot compare with the champion {version}: {refusal}")
    try:
        champion = joblib.load(model_path)
        # In the candidate's class order (the champion's classes are among them), so both line up.
        scores = predict_scores(champion, prep.raw_test[card.feature_names], prep.problem)
    except Exception as exc:  # a pickle can raise anything; the gate must refuse, not crash
        return ChampionScores(
            version,
            refusal=f"the champion {version} could not score the test rows ({type(exc).__name__}: {exc})",
        )
    return ChampionScores(version, scores=scores)


def _incomparable(card: ModelCard, prep: Prepared) -> str | None:
    """Why the champion cannot be scored on these rows, or None."""
    if card.versions.sklearn != sklearn.__version__:
        return (
            f"it was built with scikit-learn {card.versions.sklearn}, this trainer runs {sklearn.__version__}"
        )
    if card.task != prep.problem.task:
        return f"it is a {card.task} model, the candidate a {prep.problem.task} one"
    if card.target != prep.target:
        return f"it predicts {card.target!r}, the candidate {prep.target!r}"
    columns = set(map(str, prep.raw_test.columns))
    missing = [f for f in card.feature_names if f not in columns]
    if missing:
        return f"its features {missing} are missing from the candidate's data"
    if card.classes is not None:
        unknown = [c for c in card.classes if c not in (prep.problem.classes or [])]
        if unknown:
            return f"its classes {unknown} are missing from the candidate's data"
    return None


def _metric_check(
    metric: str, higher: bool, candidate: float | None, champion: float | None, tolerance: float
) -> GateCheck:
    name = metric
    if candidate is None or champion is None:
        which = "candidate" if candidate is None else "champion"
        return GateCheck(
            kind="metric",
            name=name,
            passed=False,
            detail=f"the {which}'s {metric} is undefined on these rows",
        )
    limit = champion - tolerance if higher else champion + tolerance
    margin = candidate - limit if higher else limit - candidate
    better = candidate >= champion if higher else candidate <= champion
    if better:
        detail = f"{candidate:.4f}, champion {champion:.4f}: not worse"
    else:
        detail = (
            f"{candidate:.4f} is worse than the champion's {champion:.4f} by {abs(candidate - champion):.4f}"
            f" (tolerance {tolerance:g})"
        )
    return GateCheck(
        kind="metric",
        name=name,
        passed=margin >= 0,
        detail=detail,
        value=candidate,
        limit=limit,
        margin=margin,
    )


def _leak_check(warnings: list[LeakWarning], allowed: bool) -> GateCheck:
    if not warnings:
        return GateCheck(kind="leaks", name="leak guard", passed=True, detail="no leak warning", value=0.0)
    columns = ", ".join(repr(w.column) for w in warnings)
    if allowed:
        detail = f"leak warnings on {columns} allowed by --allow-leaks"
    else:
        detail = (
            f"leak warnings stand on {columns}: --drop them, or --allow-leaks if known at prediction time"
        )
    return GateCheck(
        kind="leaks", name="leak guard", passed=allowed, detail=detail, value=float(len(warnings))
    )


def apply(store: ModelStore, published: Resolved, outcome: GateOutcome, *, actor: str | None = None) -> str:
    """Move ``champion`` (promoted) or ``challenger`` (refused) to the published version; return the alias.

    A promotion is conditional on the champion still being the one compared against: if another run
    moved it meanwhile, this version becomes the challenger instead.
    """
    result = outcome.result
    name, version = published.name, published.version
    if outcome.promote:
        if result.verdict == "skipped":
            detail = "--no-gate: promoted without comparison or checks"
        elif result.champion_version is None:
            detail = "first version: its checks passed"
        else:
            detail = f"{result.metric} {_fmt(result.candidate_score)} vs {_fmt(result.champion_score)}"
        try:
            store.move_alias(
                name,
                CHAMPION,
                version,
                reason="gate",
                actor=actor,
                detail=detail,
                expected=result.champion_version,
            )
            return CHAMPION
        except AliasConflict as exc:
            detail = f"promotion lost a race: {exc}"
    else:
        detail = "; ".join(result.reasons)[:2000]
    store.move_alias(name, CHALLENGER, version, reason="gate", actor=actor, detail=detail)
    return CHALLENGER


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def summary_lines(result: GateResult, moved: str, published: Resolved) -> list[str]:
    """The command's last lines: the verdict, both scores and every check."""
    lines = []
    if result.verdict == "skipped":
        lines.append("gate: skipped (--no-gate)")
    elif result.champion_version is None:
        lines.append(f"gate: first version of {published.name}: no champion to compare with")
    else:
        lines.append(
            f"gate: {result.metric} on {result.rows} test rows: candidate {_fmt(result.candidate_score)},"
            f" champion {result.champion_version} {_fmt(result.champion_score)}"
            f" (tolerance {result.tolerance:g})"
        )
    for check in result.checks:
        lines.append(f"gate: {'PASS' if check.passed else 'FAIL'}  {check.kind} {check.name}: {check.detail}")
    if moved == CHAMPION:
        lines.append(f"gate: PROMOTED {published.name}:{published.version} to champion")
    elif result.verdict == "refused":
        stays = f"champion stays {result.champion_version}" if result.champion_version else "no champion yet"
        lines.append(f"gate: REFUSED {published.name}:{published.version}: published as challenger; {stays}")
    else:
        lines.append(
            f"gate: NOT PROMOTED {published.name}:{published.version}: the champion moved meanwhile;"
            " published as challenger"
        )
    return lines
