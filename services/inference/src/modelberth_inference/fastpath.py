"""A faster route through a fitted ``Pipeline(ColumnTransformer, ...)`` for already-validated columns.

For a small batch, most of ``pipeline.predict_proba(frame)`` is scikit-learn's per-call bookkeeping: pandas
column indexing in the ColumnTransformer, then feature-name and dtype checks on DataFrames in every
sub-transformer (issue 4 measured ~4x the cost of the actual arithmetic on iris). Our validator has already
produced one typed numpy array per feature, so this module feeds each fitted sub-transformer its columns as a
numpy array and runs the rest of the pipeline on the stacked result: the same fitted objects, the same
arithmetic, less overhead.

It is used only when it provably gives the pipeline's own output: :func:`build_fast_path` returns None for
any structure it does not know (pandas output, unusual column selectors), and the loader compares both
routes on sample rows and keeps the fast one only if the results are identical.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import sklearn

FastPredict = Callable[[dict[str, npt.NDArray[Any]]], Any]

_FEATURE_NAME_WARNING = ".*does not have valid feature names.*"


def _output_config(estimator: Any) -> Any:
    return getattr(estimator, "_sklearn_output_config", {}).get("transform", "default")


def build_fast_path(
    pipeline: Any, features: Sequence[str], method: str, numeric: frozenset[str] = frozenset()
) -> FastPredict | None:
    """``fn(columns) -> output of pipeline.<method>`` for ``Pipeline(ColumnTransformer, ...)``, else None.

    Sub-transformers over ``numeric`` columns made only of SimpleImputer/StandardScaler, and a final
    LogisticRegression, are replaced by the same numpy arithmetic (the loader still checks the output).
    """
    prep = _column_transformer(pipeline, features)
    if prep is None:
        return None
    parts = _parts(prep, numeric)
    if not parts:
        return None
    sparse_output = bool(getattr(prep, "sparse_output_", False))
    tail = pipeline[1:] if len(pipeline.steps) > 2 else pipeline.steps[-1][1]
    compiled_final = _compile_final(tail, method)
    if compiled_final is not None and not sparse_output and all(_all_numeric(p, numeric) for p in parts):
        return _feature_major(parts, compiled_final)
    final = compiled_final.rows if compiled_final is not None else getattr(tail, method)
    run = _row_major(parts, final, sparse_output)
    calls_sklearn = compiled_final is None or any(
        t is not None and not isinstance(t, _Compiled) for t, _ in parts
    )
    if not calls_sklearn:
        return run  # plain numpy: no sklearn config or warning filters to set up per call

    def predict(columns: dict[str, npt.NDArray[Any]]) -> Any:
        # Inputs were validated (finite, typed) by our own validator, so sklearn's repeated checks are waste.
        with (
            warnings.catch_warnings(),
            sklearn.config_context(assume_finite=True, skip_parameter_validation=True),
        ):
            # Sub-transformers were fitted on DataFrames; the numpy input holds the same columns in order.
            warnings.filterwarnings("ignore", message=_FEATURE_NAME_WARNING, category=UserWarning)
            return run(columns)

    return predict


def _column_transformer(pipeline: Any, features: Sequence[str]) -> Any:
    """The pipeline's fitted leading ColumnTransformer over exactly ``features``, with default output
    (numpy) everywhere; None for any other pipeline."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) < 2:
        return None
    prep = pipeline.steps[0][1]
    if not isinstance(prep, ColumnTransformer) or not hasattr(prep, "transformers_"):
        return None
    if any(_output_config(step) not in ("default", None) for _, step in pipeline.steps):
        return None
    if sorted(getattr(prep, "feature_names_in_", [])) != sorted(features):
        return None
    return prep


def _parts(prep: Any, numeric: frozenset[str]) -> list[tuple[Any, list[str] | str]] | None:
    """(transformer or None for passthrough, its columns) per kept sub-transformer, numeric ones compiled
    when they can be; None when a column selection or transformer cannot be followed."""
    fitted_names = list(prep.feature_names_in_)
    parts: list[tuple[Any, list[str] | str]] = []
    for _, transformer, columns in prep.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        selected = _column_names(columns, fitted_names)
        if selected is None or (isinstance(transformer, str) and transformer != "passthrough"):
            return None
        step = None if isinstance(transformer, str) else transformer
        if selected == []:
            continue
        if step is not None and not isinstance(selected, str) and set(selected) <= numeric:
            step = _compile_numeric(step) or step
        parts.append((step, selected))
    return parts


def _all_numeric(part: tuple[Any, list[str] | str], numeric: frozenset[str]) -> bool:
    transformer, selected = part
    return (
        not isinstance(selected, str)
        and set(selected) <= numeric
        and (transformer is None or isinstance(transformer, _Compiled))
    )


def _row_major(parts: list[tuple[Any, list[str] | str]], final: Fn, sparse_output: bool) -> FastPredict:
    """Each part's block (rows, columns) transformed, stacked, then ``final``: like the ColumnTransformer."""

    def run(columns: dict[str, npt.NDArray[Any]]) -> Any:
        blocks = []
        for transformer, selected in parts:
            if isinstance(selected, str):
                block: Any = columns[selected]
            else:
                block = _stack([columns[name] for name in selected])
            if transformer is None:
                blocks.append(block)
            elif isinstance(transformer, _Compiled):
                blocks.append(transformer.rows(block))
            else:
                blocks.append(transformer.transform(block))
        if sparse_output:
            stacked: Any = sp.hstack([b if sp.issparse(b) else sp.csr_matrix(b) for b in blocks]).tocsr()
        else:
            dense = [b.toarray() if sp.issparse(b) else np.asarray(b) for b in blocks]
            stacked = dense[0] if len(dense) == 1 else np.hstack(dense)
        return final(stacked)

    return run


def _feature_major(parts: list[tuple[Any, list[str] | str]], final: _Compiled) -> FastPredict:
    """Every step compiled, every column numeric: run on a (features, rows) matrix.

    Each feature's values are then contiguous, so broadcasting a per-feature statistic and the softmax's
    reductions run along whole rows of the batch instead of along 3 or 4 values at a time.
    """

    def predict(columns: dict[str, npt.NDArray[Any]]) -> Any:
        blocks = []
        for transformer, selected in parts:
            block = np.stack([columns[name] for name in selected])
            blocks.append(block if transformer is None else transformer.features(block))
        return final.features(blocks[0] if len(blocks) == 1 else np.vstack(blocks))

    return predict


Fn = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]


class _Compiled:
    """A fitted step as plain numpy arithmetic, for a (rows, features) or a (features, rows) float matrix."""

    def __init__(self, rows: Fn, features: Fn) -> None:
        self.rows = rows
        self.features = features


def _chain(fns: list[Fn]) -> Fn:
    def composed(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        for fn in fns:
            x = fn(x)
        return x

    return composed


def _compile_numeric(step: Any) -> _Compiled | None:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(step, Pipeline):
        compiled = [_compile_numeric(s) for _, s in step.steps]
        steps = [c for c in compiled if c is not None]
        if len(steps) != len(compiled):
            return None
        return _Compiled(_chain([c.rows for c in steps]), _chain([c.features for c in steps]))
    if type(step) is SimpleImputer:
        missing = step.missing_values
        stats = np.asarray(getattr(step, "statistics_", []), dtype=np.float64)
        if step.add_indicator or not (isinstance(missing, float) and np.isnan(missing)):
            return None
        if not bool(np.isfinite(stats).all()):
            return None  # an all-missing column is dropped by sklearn: leave that to sklearn
        stats_t = stats[:, None]
        return _Compiled(
            lambda x: np.where(np.isnan(x), stats, x), lambda xt: np.where(np.isnan(xt), stats_t, xt)
        )
    if type(step) is StandardScaler:
        return _Compiled(
            _scaler(step.mean_ if step.with_mean else None, step.scale_ if step.with_std else None),
            _scaler(
                step.mean_[:, None] if step.with_mean else None,
                step.scale_[:, None] if step.with_std else None,
            ),
        )
    return None


def _scaler(mean: npt.NDArray[np.float64] | None, scale: npt.NDArray[np.float64] | None) -> Fn:
    def scaled(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if mean is not None:
            x = x - mean
        if scale is not None:
            x = x / scale
        return x

    return scaled


def _compile_final(estimator: Any, method: str) -> _Compiled | None:
    from scipy.special import expit
    from sklearn.linear_model import LogisticRegression

    if type(estimator) is not LogisticRegression or method != "predict_proba":
        return None
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    intercept = np.asarray(estimator.intercept_, dtype=np.float64)
    intercept_t = intercept[:, None]

    def rows(x: Any) -> npt.NDArray[np.float64]:
        if sp.issparse(x):
            x = x.toarray()
        if coef.shape[0] == 1:
            positive = expit(x @ coef[0] + intercept[0])
            return np.column_stack([1.0 - positive, positive])
        return features(np.asarray(x, dtype=np.float64).T)

    def features(xt: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if coef.shape[0] == 1:
            positive = expit(coef[0] @ xt + intercept[0])
            return np.column_stack([1.0 - positive, positive])
        # scipy's softmax in place, along the class axis of a (classes, rows) matrix; returned (rows, classes)
        z = coef @ xt + intercept_t
        z -= z.max(axis=0)
        np.exp(z, out=z)
        z /= z.sum(axis=0)
        return np.asarray(z.T)

    return _Compiled(rows, features)


def _column_names(columns: Any, fitted: list[str]) -> list[str] | str | None:
    if isinstance(columns, str):
        return columns if columns in fitted else None
    if isinstance(columns, slice) or callable(columns):
        return None
    out: list[str] = []
    for column in list(columns):
        if isinstance(column, str) and column in fitted:
            out.append(column)
        elif (
            isinstance(column, int | np.integer)
            and not isinstance(column, bool)
            and 0 <= column < len(fitted)
        ):
            out.append(fitted[int(column)])
        else:
            return None  # boolean masks and the like: leave them to scikit-learn
    return out


def _stack(arrays: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    if all(a.dtype == np.float64 for a in arrays):
        return np.column_stack(arrays)
    out = np.empty((len(arrays[0]), len(arrays)), dtype=object)
    for i, array in enumerate(arrays):
        out[:, i] = array
    return out


def same_output(a: Any, b: Any) -> bool:
    """True when two prediction outputs are identical (floats to 1e-12, labels exactly)."""
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    if a_arr.shape != b_arr.shape:
        return False
    if a_arr.dtype.kind == "f" and b_arr.dtype.kind == "f":
        return bool(np.allclose(a_arr, b_arr, rtol=1e-12, atol=1e-12, equal_nan=True))
    return bool(np.array_equal(a_arr, b_arr))
