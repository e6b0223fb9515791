"""What the trainer does with columns: types, nulls, identifiers, constants, labels and duplicates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelberth_trainer.columns import plan_columns
from modelberth_trainer.data import normalise_strings
from modelberth_trainer.errors import DataError


def _frame(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    words = np.array(["cheap", "flight", "to", "boston", "from", "denver", "tomorrow", "morning", "fare"])
    return pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + rows),
            "age": rng.integers(18, 80, rows).astype(float),
            "city": rng.choice(["paris", "lyon", "nice"], rows),
            "comment": [" ".join(rng.choice(words, 6)) for _ in range(rows)],
            "const": ["same"] * rows,
            "code": [f"K{i:05d}" for i in range(rows)],
            "y": rng.choice(["a", "b"], rows),
        }
    )


def test_types_identifiers_and_constants() -> None:
    plan = plan_columns(_frame(), "y", [])
    assert plan.types == {"age": "numeric", "city": "categorical", "comment": "text"}
    reasons = {d.name: d.reason for d in plan.dropped}
    assert reasons["customer_id"].startswith("identifier-like")
    assert reasons["code"].startswith("identifier-like")
    assert reasons["const"].startswith("constant")


def test_drop_on_request_and_unknown_drop() -> None:
    plan = plan_columns(_frame(), "y", ["age"])
    assert "age" not in plan.types
    assert any(d.name == "age" and "--drop" in d.reason for d in plan.dropped)
    with pytest.raises(DataError, match="unknown columns"):
        plan_columns(_frame(), "y", ["nope"])


def test_all_missing_column_is_an_error_naming_it() -> None:
    frame = _frame().assign(empty=np.nan)
    with pytest.raises(DataError, match="column 'empty' is empty"):
        plan_columns(frame, "y", [])
    assert "empty" not in plan_columns(frame, "y", ["empty"]).types


def test_missing_markers_inside_quotes_and_numeric_text_are_normalised() -> None:
    frame = pd.DataFrame({"a": ["1", " 2 ", "?", "5e+05"], "b": ["x", " NA", "y ", None]}, dtype=object)
    out = normalise_strings(frame)
    assert out["a"].dtype == float
    assert out["a"].isna().tolist() == [False, False, True, False]
    assert out["a"].iloc[3] == 500000.0
    assert out["b"].tolist()[0] == "x"
    assert out["b"].isna().tolist() == [False, True, False, True]
