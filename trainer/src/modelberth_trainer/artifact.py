"""Turn the fitted selected candidate into an artifact: card, model, report and examples, via the store."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.metrics import confusion_matrix
from sklearn.pipeline import Pipeline

from modelberth_core import contract
from modelberth_core.store import CHAMPION, ModelStore, Resolved
from modelberth_trainer import gate
from modelberth_trainer.evaluation import fairness, hard_predictions, importance
from modelberth_trainer.expectations import Expectations
from modelberth_trainer.leakage import GuardResult
from modelberth_trainer.prepare import Prepared, Say
from modelberth_trainer.profiling import feature_specs, reference_profiles
from modelberth_trainer.provenance import versions
from modelberth_trainer.report import render_report
from modelberth_trainer.scoring import choose_threshold, greater_is_better, threshold_scores
from modelberth_trainer.search import SearchResult, all_scores
from modelberth_trainer.settings import TrainerSettings

MAX_EXAMPLES = 200


@dataclass(frozen=True)
class Trained:
    """What one run published: the version (and its local directory), the gate's verdict, the alias moved."""

    published: Resolved
    path: Path
    gate: contract.GateResult
    alias: str

    @property
    def promoted(self) -> bool:
        """True when the version became champion."""
        return self.alias == CHAMPION


@dataclass
class RunContext:
    """What one run publishes into and with: its settings, the store and name, the declared checks, where
    progress goes, its clock (``started`` is a ``time.monotonic()`` value, ``timings`` fills up as it
    goes) and its provenance."""

    settings: TrainerSettings
    store: ModelStore
    name: str
    expectations: Expectations | None
    say: Say
    started: float
    timings: dict[str, float]
    git_sha: str | None
    created_at: datetime


@dataclass
class Fitted:
    """The selected candidate refit on the training part, its scores on the test part (predicted once),
    and what led to it: the prepared data, the search and the leak guard."""

    prep: Prepared
    pipeline: Pipeline
    result: SearchResult
    guard: GuardResult
    test_scores: NDArray[np.float64]


@dataclass
class _Evaluated:
    """The test part's verdict on the fitted model: metrics, threshold, importances, fairness."""

    threshold: contract.Threshold | None
    metrics: contract.Metrics
    importances: dict[str, float]
    fairness: list[contract.FairnessResult]
    target_std: float | None


def build_and_publish(ctx: RunContext, fitted: Fitted) -> Trained:
    """Evaluate on the test part (once), run the promotion gate, write everything into a staging dir,
    publish it atomically and move the alias the gate chose."""
    store, name, timings = ctx.store, ctx.name, ctx.timings
    t0 = time.monotonic()
    evaluated = _evaluate(ctx.settings, fitted)
    timings["evaluate_seconds"] = time.monotonic() - t0
    _say_results(
        ctx.say, fitted.prep.problem.metric, evaluated.metrics, evaluated.threshold, evaluated.fairness
    )

    t0 = time.monotonic()
    contender = gate.Contender(
        pipeline=fitted.pipeline,
        prep=fitted.prep,
        test_scores=fitted.test_scores,
        threshold=evaluated.threshold,
        leak_warnings=fitted.guard.warnings,
        target_std=evaluated.target_std,
    )
    outcome = gate.evaluate(store, name, contender, ctx.settings, ctx.expectations)
    timings["gate_seconds"] = time.monotonic() - t0

    version = store.new_version(name, ctx.created_at)
    with store.staging(name) as staged:
        t0 = time.monotonic()
        model_path = _write_model(staged, fitted)
        timings["write_seconds"] = time.monotonic() - t0
        timings["total_seconds"] = time.monotonic() - ctx.started
        card = _card(ctx, fitted, evaluated, outcome.result, version, contract.sha256_file(model_path))
        t0 = time.monotonic()
        report = render_report(
            card, fitted.prep, fitted.test_scores, evaluated.threshold, fitted.guard, outcome.champion_scores
        )
        (staged / contract.REPORT_FILE).write_text(report, encoding="utf-8")
        timings["report_seconds"] = time.monotonic() - t0
        timings["total_seconds"] = time.monotonic() - ctx.started
        card = card.model_copy(update={"timings": _rounded(timings)})
        published = store.publish(staged, card)
    alias = gate.apply(store, published, outcome)
    final = store.fetch(name, version)
    ctx.say(f"published {final} in {time.monotonic() - ctx.started:.1f}s")
    for line in gate.summary_lines(outcome.result, alias, published):
        ctx.say(line)
    return Trained(published, final, outcome.result, alias)


def _evaluate(settings: TrainerSettings, fitted: Fitted) -> _Evaluated:
    prep, pipeline, test_scores = fitted.prep, fitted.pipeline, fitted.test_scores
    problem = prep.problem
    threshold = _threshold(prep, fitted.result, settings)
    test = all_scores(problem, prep.y_test, test_scores)
    at_threshold: dict[str, float] | None = None
    matrix: list[list[int]] | None = None
    if problem.classification and problem.classes is not None:
        predicted = hard_predictions(test_scores, problem, threshold)
        matrix = confusion_matrix(prep.y_test, predicted, labels=problem.classes).tolist()
        if threshold is not None and problem.positive is not None:
            pos = problem.classes.index(problem.positive)
            at_threshold = threshold_scores(
                prep.y_test == problem.positive, test_scores[:, pos], threshold.value
            )
    metrics = contract.Metrics(
        primary=problem.metric,
        greater_is_better=greater_is_better(problem.metric),
        cv=fitted.result.selected.scores,
        test=test,
        test_at_threshold=at_threshold,
        confusion_matrix=matrix,
    )
    importances = importance(pipeline, prep.x_test, prep.y_test, problem, settings.seed)
    target_std = None if problem.classification else float(np.std(prep.y_train.astype(float)))
    fair = fairness(pipeline, prep.x_test, settings.protected, problem, threshold, target_std)
    return _Evaluated(threshold, metrics, importances, fair, target_std)


def _threshold(prep: Prepared, result: SearchResult, settings: TrainerSettings) -> contract.Threshold | None:
    problem = prep.problem
    if not problem.classification or problem.classes is None or len(problem.classes) != 2:
        return None
    assert problem.positive is not None
    pos = problem.classes.index(problem.positive)
    return choose_threshold(
        prep.y_train == problem.positive, result.selected.oof[:, pos], settings.cost_fp, settings.cost_fn
    )


def _write_model(staged: Path, fitted: Fitted) -> Path:
    """Write ``model.joblib`` (set up for serving) and ``examples.csv``; return the model's path."""
    pipeline = fitted.pipeline
    model_path = staged / contract.MODEL_FILE
    # Serving predicts a few rows per request: threads would cost more than they save there.
    if "n_jobs" in pipeline.steps[-1][1].get_params():
        pipeline.steps[-1][1].set_params(n_jobs=None)
    joblib.dump(pipeline, model_path, compress=("zlib", 3))
    examples = fitted.prep.x_test.head(MAX_EXAMPLES)
    examples.to_csv(staged / contract.EXAMPLES_FILE, index=False)
    return model_path


def _card(
    ctx: RunContext,
    fitted: Fitted,
    evaluated: _Evaluated,
    gate_result: contract.GateResult,
    version: str,
    model_sha256: str,
) -> contract.ModelCard:
    prep, result, guard = fitted.prep, fitted.result, fitted.guard
    problem = prep.problem
    selected = result.selected
    return contract.ModelCard(
        name=ctx.name,
        version=version,
        created_at=ctx.created_at,
        git_sha=ctx.git_sha,
        task=problem.task,
        target=prep.target,
        classes=problem.classes,
        positive_label=problem.positive,
        threshold=evaluated.threshold,
        features=feature_specs(prep.seen, prep.plan),
        dropped_columns=prep.plan.dropped,
        leak_warnings=guard.warnings,
        metrics=evaluated.metrics,
        selected=contract.SelectedInfo(
            candidate=selected.candidate, estimator=selected.estimator, params=selected.params
        ),
        leaderboard=result.leaderboard,
        data=_data_info(prep),
        versions=versions(),
        model_sha256=model_sha256,
        reference_profile=reference_profiles(prep.x_train, prep.plan),
        feature_importance=evaluated.importances,
        fairness=evaluated.fairness,
        timings=_rounded(ctx.timings),
        notes=_notes(fitted),
        gate=gate_result,
    )


def _data_info(prep: Prepared) -> contract.DataInfo:
    class_counts = (
        {str(k): int(v) for k, v in pd.Series(prep.y_train).value_counts().sort_index().items()}
        if prep.problem.classification
        else None
    )
    return contract.DataInfo(
        source=prep.table.source,
        rows=len(prep.table.frame),
        columns=prep.table.frame.shape[1],
        sha256=prep.table.sha256,
        train_rows=len(prep.x_train),
        test_rows=len(prep.x_test),
        test_source=prep.test_table.source if prep.test_table else None,
        class_counts=class_counts,
    )


def _notes(fitted: Fitted) -> list[str]:
    """The data's notes, then the leak guard's findings, then the warnings seen while fitting."""
    notes = list(fitted.prep.notes)
    notes += [f"leak guard: {col!r} {reason}" for col, reason in fitted.guard.reasons.items()]
    if fitted.result.warnings:
        notes.append("warnings during training: " + "; ".join(sorted(fitted.result.warnings)[:5]))
    return notes


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in timings.items()}


def _say_results(
    say: Say,
    metric: str,
    metrics: contract.Metrics,
    threshold: contract.Threshold | None,
    fair: list[contract.FairnessResult],
) -> None:
    shown = {
        k: v
        for k, v in metrics.test.items()
        if k in (metric, "accuracy", "roc_auc", "rmse", "r2", "f1_macro")
    }
    say("test: " + "  ".join(f"{k}={v:.4f}" for k, v in shown.items()))
    if threshold is not None and metrics.test_at_threshold is not None:
        at: dict[str, Any] = metrics.test_at_threshold
        say(
            f"threshold {threshold.value:.3f} ({threshold.strategy}): "
            + "  ".join(f"{k}={v:.4f}" for k, v in at.items())
        )
    for f in fair:
        say(f"fairness: swapping {f.attribute!r} changes {f.flip_rate:.1%} of {f.rows} test predictions")
