"""The verified fast path gives exactly the pipeline's own output, and is refused when it would not."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelberth_core import contract
from modelberth_inference.fastpath import build_fast_path, same_output
from modelberth_inference.model import load_model


@pytest.mark.parametrize(("task", "threshold"), [("regression", None), ("classification", 0.3)])
def test_fast_path_matches_the_pipeline_on_random_rows_with_nulls_and_unseen_categories(
    tmp_path: Path, mixed_artifact: Callable[..., Path], task: str, threshold: float | None
) -> None:
    version_dir = mixed_artifact(tmp_path, "mixed", task, binary_threshold=threshold)
    model = load_model(tmp_path, "mixed", version_dir.name, max_text_length=100)
    assert model.fast is not None
    rng = np.random.default_rng(3)
    n = 300
    income = rng.normal(50_000, 20_000, n)
    income[::7] = np.nan
    data = {
        "age": rng.uniform(0, 120, n),
        "income": income,
        "city": np.array(rng.choice(["paris", "lyon", "nice", "berlin"], n), dtype=object),
    }
    expected = getattr(model.pipeline, model.method)(pd.DataFrame(data))
    assert same_output(model.fast(data), expected)


def test_compiled_numeric_pipeline_matches(tiny_model_dir: Path) -> None:
    version = str(contract.resolve_latest(tiny_model_dir, "iris"))
    model = load_model(tiny_model_dir, "iris", version, max_text_length=100)
    assert model.fast is not None
    rng = np.random.default_rng(0)
    data = {name: rng.uniform(0, 8, 500) for name in model.validator.names}
    data["petal_width"][::5] = np.nan  # the imputer's statistics fill these
    expected = model.pipeline.predict_proba(pd.DataFrame(data))
    np.testing.assert_allclose(model.fast(data), expected, rtol=1e-12, atol=1e-15)


def test_unknown_structures_are_left_to_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.array([[0.0], [1.0]]), ["a", "b"])
    assert build_fast_path(model, ["x"], "predict_proba") is None


@pytest.mark.parametrize("classes", [2, 3, 5])
@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_all_numeric_pipelines_match_in_the_feature_major_layout(classes: int, rows: int) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(classes)
    names = ["a", "b", "c", "d"]
    train = pd.DataFrame(rng.normal(size=(200, 4)) * [1, 10, 100, 0.1], columns=names)
    train.loc[::9, "b"] = np.nan
    target = rng.integers(0, classes, 200).astype(str)
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        (
                            "scaled",
                            Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]),
                            ["b", "a"],
                        ),
                        ("imputed", SimpleImputer(strategy="median"), ["d"]),
                        ("raw", "passthrough", ["c"]),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=1000)),
        ]
    ).fit(train, target)
    fast = build_fast_path(pipeline, names, "predict_proba", frozenset(names))
    assert fast is not None
    data = {name: rng.normal(size=rows) * 10 for name in names}
    data["b"][::2] = np.nan
    data["d"][1::3] = np.nan
    expected = pipeline.predict_proba(pd.DataFrame(data))
    got = fast(data)
    assert got.shape == (rows, classes)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
