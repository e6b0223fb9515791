"""A small real model version: a scikit-learn Pipeline fitted on 60 iris rows, published through the store
with a complete card, so inference, the UI and the benchmarks serve what the trainer would publish."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def write_tiny_artifact(
    model_dir: Path | str | Any,
    name: str = "iris",
    rows: int = 60,
    now: datetime | None = None,
    alias: str = "champion",
) -> Path:
    """Fit a small real Pipeline on iris, publish it into the store (a directory, an ``oci://`` location or
    an open ModelStore) and make it champion (like a version the trainer promoted), or point another
    ``alias`` at it (``challenger``: a version the gate refused).

    Fast (well under a second) and complete enough for inference and UI tests; the trainer's own tests
    and the contract test cover artifacts the trainer writes.
    """
    import joblib
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from modelberth_core import contract
    from modelberth_core.store import CHAMPION, ModelStore, open_store
    from modelberth_trainer.provenance import versions

    iris = load_iris(as_frame=True)
    frame = iris.frame.sample(n=rows, random_state=0)
    features = [c.replace(" (cm)", "").replace(" ", "_") for c in iris.feature_names]
    x = frame[iris.feature_names].set_axis(features, axis=1)
    y = np.asarray(iris.target_names)[frame["target"].to_numpy()]
    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    pipeline = Pipeline(
        [
            ("prep", ColumnTransformer([("num", numeric, features)])),
            ("model", LogisticRegression(max_iter=500)),
        ]
    )
    pipeline.fit(x, y)
    store = model_dir if isinstance(model_dir, ModelStore) else open_store(model_dir)
    version = store.new_version(name, now or datetime.now(UTC))
    with store.staging(name) as staged:
        joblib.dump(pipeline, staged / contract.MODEL_FILE)
        x.head(10).to_csv(staged / contract.EXAMPLES_FILE, index=False)
        (staged / contract.REPORT_FILE).write_text("<html><body>tiny</body></html>", encoding="utf-8")
        profile: dict[str, contract.Profile] = {}
        specs = []
        for col in features:
            values = x[col].to_numpy(dtype=float)
            edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)[1:-1])).tolist()
            counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
            profile[col] = contract.NumericProfile(edges=edges, frequencies=(counts / counts.sum()).tolist())
            specs.append(
                contract.FeatureSpec(
                    name=col,
                    type="numeric",
                    required=True,
                    min=float(values.min()),
                    max=float(values.max()),
                    example=float(np.median(values)),
                )
            )
        accuracy = float((pipeline.predict(x) == y).mean())
        card = contract.ModelCard(
            name=name,
            version=version,
            created_at=datetime.now(UTC),
            task="classification",
            target="species",
            classes=[str(c) for c in pipeline.classes_],
            features=specs,
            metrics=contract.Metrics(
                primary="f1_macro",
                greater_is_better=True,
                cv={"f1_macro": accuracy},
                test={"f1_macro": accuracy, "accuracy": accuracy},
            ),
            selected=contract.SelectedInfo(
                candidate="logistic", estimator="LogisticRegression", params={"C": 1.0}
            ),
            leaderboard=[
                contract.LeaderboardRow(
                    candidate="logistic",
                    estimator="LogisticRegression",
                    cv_score=accuracy,
                    cv_std=0.0,
                    fit_seconds=0.01,
                    n_configs=1,
                    params={"C": 1.0},
                )
            ],
            data=contract.DataInfo(
                source="sklearn:iris", rows=rows, columns=5, sha256="0" * 64, train_rows=rows, test_rows=0
            ),
            versions=versions(),  # what the trainer writes into its own cards
            model_sha256=contract.sha256_file(staged / contract.MODEL_FILE),
            reference_profile=profile,
        )
        store.publish(staged, card)
    # Served at once, as a version that passed the promotion gate would be (or the alias asked for).
    store.move_alias(
        name, alias, version, reason="promote" if alias == CHAMPION else "gate", detail="test artifact"
    )
    return store.fetch(name, version)
