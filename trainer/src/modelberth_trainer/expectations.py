"""Behavioural checks a user declares for the promotion gate (``--expectations FILE``), and running them.

The file is YAML::

    examples:                      # known inputs and the output they must get
      - name: a typical setosa
        input: {sepal_length_cm: 5.1, sepal_width_cm: 3.5, petal_length_cm: 1.4, petal_width_cm: 0.2}
        expect: setosa             # a classifier's label; a regressor's value, with `tolerance`
    invariance:                    # swapping a protected column's values must not change predictions
      - column: sex
        max_flip_rate: 0.02        # share of test predictions allowed to change (the fairness flip rate)
    directional:                   # raising a column must not move the score the wrong way
      - column: petal_length_cm
        direction: increasing      # must not lower it (decreasing: must not raise it)
        label: virginica           # classifiers: the class whose probability is the score
        by: 0.5                    # how much to raise it (default: its standard deviation on the test rows)
        max_violation_rate: 0.0    # share of test rows allowed to break the rule

A malformed file, or one that names columns or labels the data does not have, stops the run before
training (exit status 2); a check that fails blocks promotion and says which and by how much.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelberth_core.contract import GateCheck, Threshold
from modelberth_trainer.errors import DataError
from modelberth_trainer.evaluation import fairness, hard_predictions
from modelberth_trainer.prepare import Prepared
from modelberth_trainer.search import predict_scores

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

MAX_FILE_BYTES = 1 << 20
"""An expectations file is a page of checks; anything larger is refused unread."""
DECREASE_EPSILON = 1e-9
"""A score change smaller than this is numerical noise, not a violation."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Example(_Strict):
    """One known input and the output it must get."""

    name: str | None = None
    input: dict[str, str | float | int | bool | None] = Field(min_length=1)
    expect: str | float | int | bool
    tolerance: float | None = Field(default=None, ge=0.0)


class Invariance(_Strict):
    """Swapping a protected column's values must change at most ``max_flip_rate`` of the predictions."""

    column: str
    max_flip_rate: float = Field(ge=0.0, le=1.0)


class Directional(_Strict):
    """Raising ``column`` by ``by`` must not move the score against ``direction`` on more than
    ``max_violation_rate`` of the test rows."""

    column: str
    direction: Literal["increasing", "decreasing"]
    label: str | None = None
    by: float | None = Field(default=None, gt=0.0)
    max_violation_rate: float = Field(default=0.0, ge=0.0, le=1.0)


class Expectations(_Strict):
    """The whole file."""

    examples: list[Example] = []
    invariance: list[Invariance] = []
    directional: list[Directional] = []


class _NoDuplicatesLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _mapping(loader: _NoDuplicatesLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {str(key)[:40]!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_NoDuplicatesLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load(path: Path) -> Expectations:
    """Parse and validate an expectations file; raise :class:`DataError` with one line naming the problem."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the expectations file ({exc.strerror})") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise DataError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; not an expectations file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    try:
        # Anchors and aliases could expand a small file into a huge document: they have no use here.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1 if event.start_mark is not None else "?"
                raise DataError(f"{path}: line {line}: YAML anchors and aliases are not supported here")
        data = yaml.load(text, Loader=_NoDuplicatesLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataError(f"{path}: not valid YAML{where}: {problem}") from exc
    if data is None:
        raise DataError(f"{path}: empty; expected a mapping with examples, invariance and/or directional")
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: expected a mapping with examples, invariance and/or directional,"
            f" got a {type(data).__name__}"
        )
    try:
        expectations = Expectations.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise DataError(f"{path}: {_where(tuple(first['loc']))}: {first['msg']}{more}") from None
    if not (expectations.examples or expectations.invariance or expectations.directional):
        raise DataError(f"{path}: declares no checks (examples, invariance, directional)")
    return expectations


def check_against(expectations: Expectations, prep: Prepared) -> None:
    """Refuse (DataError, before training) what cannot apply to this data: unknown columns, missing
    features in an example, unknown labels, a regression example without tolerance, a categorical
    directional column."""
    columns = set(map(str, prep.raw_test.columns))
    for i, ex in enumerate(expectations.examples):
        _check_example(f"examples[{i}]", ex, columns, prep)
    for i, inv in enumerate(expectations.invariance):
        if inv.column not in columns:
            raise DataError(f"expectations: invariance[{i}].column {inv.column!r} is not in the data")
    for i, d in enumerate(expectations.directional):
        _check_directional(f"directional[{i}]", d, columns, prep)


def _check_example(where: str, ex: Example, columns: set[str], prep: Prepared) -> None:
    problem = prep.problem
    classes = problem.classes or []
    unknown = sorted(set(ex.input) - columns)
    if unknown:
        raise DataError(f"expectations: {where}.input names columns the data does not have: {unknown}")
    missing = sorted(set(prep.plan.features) - set(ex.input))
    if missing:
        raise DataError(f"expectations: {where}.input lacks the model's features {missing}")
    not_numbers = sorted(
        f
        for f in prep.plan.of("numeric")
        if ex.input.get(f) is not None and not isinstance(ex.input[f], int | float)
    )
    if not_numbers:
        raise DataError(f"expectations: {where}.input: numeric features need numbers: {not_numbers}")
    if problem.classification:
        if str(ex.expect) not in classes:
            raise DataError(f"expectations: {where}.expect {str(ex.expect)!r} is not a class ({classes})")
    elif ex.tolerance is None or isinstance(ex.expect, str | bool):
        raise DataError(f"expectations: {where}: a regression example needs a numeric expect and a tolerance")


def _check_directional(where: str, d: Directional, columns: set[str], prep: Prepared) -> None:
    problem = prep.problem
    classes = problem.classes or []
    if d.column not in columns:
        raise DataError(f"expectations: {where}.column {d.column!r} is not in the data")
    if d.column in prep.plan.features and d.column not in prep.plan.of("numeric"):
        raise DataError(
            f"expectations: {where}.column {d.column!r} is not numeric; only numbers can be raised"
        )
    if problem.classification:
        label = d.label or problem.positive
        if label is None:
            raise DataError(f"expectations: {where}: name the class whose probability is the score (label)")
        if label not in classes:
            raise DataError(f"expectations: {where}.label {label!r} is not a class ({classes})")
    elif d.label is not None:
        raise DataError(f"expectations: {where}.label applies to classifiers only")


def run(
    expectations: Expectations,
    pipeline: Pipeline,
    prep: Prepared,
    threshold: Threshold | None,
    target_std: float | None,
) -> list[GateCheck]:
    """Every declared check on the candidate, in file order: examples, invariance, directional."""
    checks = [_example(i, ex, pipeline, prep, threshold) for i, ex in enumerate(expectations.examples)]
    checks += [_invariance(inv, pipeline, prep, threshold, target_std) for inv in expectations.invariance]
    checks += [_directional(d, pipeline, prep) for d in expectations.directional]
    return checks


def _example(
    i: int, ex: Example, pipeline: Pipeline, prep: Prepared, threshold: Threshold | None
) -> GateCheck:
    problem = prep.problem
    frame = example_frame(ex, prep)
    name = ex.name or f"example {i + 1}"
    scores = predict_scores(pipeline, frame, problem)
    if problem.classification:
        assert problem.classes is not None
        predicted = str(hard_predictions(scores, problem, threshold)[0])
        expected = str(ex.expect)
        p_expected = float(scores[0, problem.classes.index(expected)])
        p_predicted = float(scores[0, problem.classes.index(predicted)])
        ok = predicted == expected
        detail = (
            f"predicted {predicted!r} as expected (P={p_expected:.3f})"
            if ok
            else f"predicted {predicted!r} (P={p_predicted:.3f}), expected {expected!r} (P={p_expected:.3f})"
        )
        return GateCheck(
            kind="example",
            name=name,
            passed=ok,
            detail=detail,
            value=p_expected,
            margin=p_expected - (p_predicted if not ok else 0.0),
        )
    assert ex.tolerance is not None
    value, target = float(scores[0, 0]), float(ex.expect)
    off = abs(value - target)
    return GateCheck(
        kind="example",
        name=name,
        passed=off <= ex.tolerance,
        detail=f"predicted {value:.4g}, expected {target:.4g} ± {ex.tolerance:.4g} (off by {off:.4g})",
        value=value,
        limit=ex.tolerance,
        margin=ex.tolerance - off,
    )


def example_frame(ex: Example, prep: Prepared) -> pd.DataFrame:
    """One row holding the example's input, typed like the test rows the model was evaluated on."""
    numeric = set(prep.plan.of("numeric"))
    columns: dict[str, pd.Series] = {}
    for f in prep.plan.features:
        value = ex.input[f]
        if f in numeric:
            cell: Any = np.nan if value is None else float(value)  # check_against refused non-numbers
        else:
            cell = None if value is None else str(value)
        columns[f] = pd.Series([cell]).astype(prep.x_test[f].dtype)
    return pd.DataFrame(columns)


def _invariance(
    inv: Invariance, pipeline: Pipeline, prep: Prepared, threshold: Threshold | None, target_std: float | None
) -> GateCheck:
    name = f"swapping {inv.column!r}"
    if inv.column not in prep.x_test.columns:
        return GateCheck(
            kind="invariance",
            name=name,
            passed=True,
            detail=f"{inv.column!r} is not a feature of this model: its predictions cannot depend on it",
            value=0.0,
            limit=inv.max_flip_rate,
            margin=inv.max_flip_rate,
        )
    (result,) = fairness(pipeline, prep.x_test, [inv.column], prep.problem, threshold, target_std)
    ok = result.flip_rate <= inv.max_flip_rate
    return GateCheck(
        kind="invariance",
        name=name,
        passed=ok,
        detail=f"changes {result.flip_rate:.1%} of {result.rows} test predictions"
        f" (at most {inv.max_flip_rate:.1%} allowed)",
        value=result.flip_rate,
        limit=inv.max_flip_rate,
        margin=inv.max_flip_rate - result.flip_rate,
    )


def _directional(d: Directional, pipeline: Pipeline, prep: Prepared) -> GateCheck:
    problem = prep.problem
    name = f"raising {d.column!r} ({d.direction})"
    if d.column not in prep.x_test.columns:
        return GateCheck(
            kind="directional",
            name=name,
            passed=True,
            detail=f"{d.column!r} is not a feature of this model: raising it changes nothing",
            value=0.0,
            limit=d.max_violation_rate,
            margin=d.max_violation_rate,
        )
    x = prep.x_test
    column = x[d.column].astype(float)
    step = d.by if d.by is not None else float(column.std(ddof=0) or 1.0)
    raised = x.copy()
    raised[d.column] = (column + step).astype(x[d.column].dtype)
    if problem.classification:
        assert problem.classes is not None
        label = d.label or problem.positive
        assert label is not None
        j = problem.classes.index(label)
        what = f"P({label})"
    else:
        j, what = 0, "the prediction"
    before = predict_scores(pipeline, x, problem)[:, j]
    after = predict_scores(pipeline, raised, problem)[:, j]
    change = after - before if d.direction == "increasing" else before - after
    wrong = change < -DECREASE_EPSILON
    rate = float(wrong.mean()) if len(wrong) else 0.0
    worst = float(-change.min()) if wrong.any() else 0.0
    moved = "lowered" if d.direction == "increasing" else "raised"
    return GateCheck(
        kind="directional",
        name=name,
        passed=rate <= d.max_violation_rate,
        detail=f"raising it by {step:.4g} {moved} {what} on {int(wrong.sum())} of {len(wrong)} test rows"
        f" ({rate:.1%}, at most {d.max_violation_rate:.1%} allowed; worst by {worst:.4g})",
        value=rate,
        limit=d.max_violation_rate,
        margin=d.max_violation_rate - rate,
    )
