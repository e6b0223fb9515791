"""Inference test fixtures: an ES256 signer standing in for the auth service's keys, and app clients."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from modelberth_core.security import StaticKeySource
from modelberth_inference.app import create_app
from modelberth_inference.settings import Settings
from testkit.tmpfs import mount_tmpfs

ISSUER = "http://127.0.0.1:8001"
AUDIENCE = "modelberth"
ALL_SCOPES = "predict models:read models:admin"


@dataclass
class Signer:
    """Mints tokens like the auth service (ES256, kid, typ at+jwt, iss/aud/sub/exp/iat/nbf/jti/scope)."""

    key: ECKey
    keys: KeySet

    def token(self, scope: Any = ALL_SCOPES, *, key: ECKey | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "tester",
            "iat": now,
            "nbf": now,
            "exp": now + 900,
            "jti": uuid.uuid4().hex,
            "scope": scope,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        signing = key or self.key
        header = {"alg": "ES256", "kid": signing.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, signing)

    def headers(self, scope: str = ALL_SCOPES, **overrides: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(scope, **overrides)}"}


@pytest.fixture(scope="session")
def signer() -> Signer:
    key = ECKey.generate_key("P-256", parameters={"kid": "test-key-1"})
    return Signer(key, KeySet([key]))


def wait_until_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.02)
    raise TimeoutError(client.get("/readyz").json())


@pytest.fixture
def make_client(signer: Signer) -> Callable[..., Any]:
    """``with make_client(model_dir, **settings) as client:`` an in-process app, ready, with static keys."""

    @contextmanager
    def make(model_dir: Path, ready: bool = True, **overrides: Any) -> Iterator[TestClient]:
        settings = Settings(model_dir=model_dir, poll_seconds=overrides.pop("poll_seconds", 0), **overrides)
        app = create_app(settings, keys=StaticKeySource(signer.keys))
        with TestClient(app) as client:
            if ready:
                wait_until_ready(client)
            yield client

    return make


@pytest.fixture
def client(make_client: Callable[..., Any], tiny_model_dir: Path) -> Iterator[TestClient]:
    with make_client(tiny_model_dir) as c:
        yield c


def publish_mixed_artifact(
    model_dir: Path,
    name: str,
    task: str,
    *,
    binary_threshold: float | None = None,
    text_feature: bool = False,
) -> Path:
    """Publish a real Pipeline over numeric + categorical (+ text) features through the contract.

    ``task`` is "regression" or "classification"; with ``binary_threshold`` the classifier is binary and its
    card carries that threshold on P(positive label).
    """
    from datetime import UTC, datetime

    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from modelberth_core import contract
    from modelberth_trainer.provenance import versions

    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, n).round(1),
            "income": rng.normal(50_000, 10_000, n).round(0),
            "city": rng.choice(["paris", "lyon", "nice"], n),
        }
    )
    frame.loc[frame.index[:10], "income"] = np.nan  # optional feature: nulls accepted
    if text_feature:
        frame["note"] = rng.choice(["short", "a longer note", "medium one"], n)
    score = frame["age"] / 10 + frame["income"].fillna(50_000) / 20_000 + (frame["city"] == "paris") * 2
    transformers = [
        ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), ["age", "income"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
    ]
    pipeline_steps: list[tuple[str, Any]] = [("prep", ColumnTransformer(transformers))]
    classes: list[str] | None = None
    threshold = None
    if task == "regression":
        target = score.to_numpy()
        pipeline_steps.append(("model", LinearRegression()))
    else:
        target = np.where(score > score.median(), "yes", "no")
        classes = ["no", "yes"]
        pipeline_steps.append(("model", LogisticRegression(max_iter=500)))
        if binary_threshold is not None:
            threshold = contract.Threshold(value=binary_threshold, strategy="max_f1")
    pipeline = Pipeline(pipeline_steps)
    pipeline.fit(frame, target)
    specs = [
        contract.FeatureSpec(name="age", type="numeric", required=True, min=18.0, max=80.0, example=40.0),
        contract.FeatureSpec(name="income", type="numeric", required=False, min=20_000.0, max=80_000.0),
        contract.FeatureSpec(
            name="city",
            type="categorical",
            required=True,
            categories=["lyon", "nice", "paris"],
            example="paris",
        ),
    ]
    profile: dict[str, contract.Profile] = {
        "age": contract.NumericProfile(edges=[30.0, 50.0, 70.0], frequencies=[0.2, 0.35, 0.3, 0.15]),
        "income": contract.NumericProfile(edges=[50_000.0], frequencies=[0.5, 0.5], missing=0.05),
        "city": contract.CategoricalProfile(frequencies={"paris": 0.34, "lyon": 0.33, "nice": 0.33}),
    }
    if text_feature:
        specs.append(contract.FeatureSpec(name="note", type="text", required=True, max_length=13))
        profile["note"] = contract.NumericProfile(edges=[6.0, 11.0], frequencies=[0.33, 0.33, 0.34])
    version = contract.unique_version(model_dir, name, datetime.now(UTC))
    with contract.staging_dir(model_dir, name) as staged:
        joblib.dump(pipeline, staged / contract.MODEL_FILE)
        frame.head(5).to_csv(staged / contract.EXAMPLES_FILE, index=False)
        card = contract.ModelCard(
            name=name,
            version=version,
            created_at=datetime.now(UTC),
            task=task,  # type: ignore[arg-type]
            target="score" if task == "regression" else "label",
            classes=classes,
            positive_label="yes" if classes else None,
            threshold=threshold,
            features=specs,
            metrics=contract.Metrics(
                primary="r2" if task == "regression" else "f1", greater_is_better=True, cv={}, test={}
            ),
            champion=contract.ChampionInfo(
                candidate="linear", estimator=type(pipeline[-1]).__name__, params={}
            ),
            leaderboard=[],
            data=contract.DataInfo(
                source="synthetic", rows=n, columns=4, sha256="0" * 64, train_rows=n, test_rows=0
            ),
            versions=versions(),  # what the trainer writes into its own cards
            model_sha256=contract.sha256_file(staged / contract.MODEL_FILE),
            reference_profile=profile,
        )
        return contract.publish(model_dir, staged, card)


@pytest.fixture(scope="session")
def mixed_artifact() -> Callable[..., Path]:
    """``mixed_artifact(model_dir, name, task, binary_threshold=None)``: a numeric+categorical model."""
    return publish_mixed_artifact


@pytest.fixture(scope="module")
def shared_client(
    signer: Signer, tmp_path_factory: pytest.TempPathFactory, artifact_factory: Callable[..., Path]
) -> Iterator[TestClient]:
    """One ready app over one iris artifact for a whole module (tests that only read)."""
    model_dir = tmp_path_factory.mktemp("shared") / "models"
    artifact_factory(model_dir)
    app = create_app(Settings(model_dir=model_dir, poll_seconds=0), keys=StaticKeySource(signer.keys))
    with TestClient(app) as client:
        wait_until_ready(client)
        yield client


@dataclass
class FullDisk:
    """A directory on a file system with no free space left (see the ``full_disk`` fixture)."""

    path: Path
    filler: Path | None
    """The file taking all the space (None on /dev/full, which can never be freed)."""

    def free(self) -> None:
        """Give the space back (tmpfs only)."""
        assert self.filler is not None, "only a tmpfs can be freed"
        self.filler.unlink()


def _fill(fh: Any) -> None:
    while True:
        fh.write(b"\0" * 4096)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[FullDisk]:
    """A real full disk: a 64 KiB tmpfs mounted here and filled until the kernel answers ENOSPC.

    Where this machine may not mount (see ``testkit.tmpfs``) the fallback is still the kernel's own ENOSPC:
    ``<dir>/predictions.jsonl`` is a symlink to ``/dev/full``, where every write fails so; only the tests
    that free space again need the tmpfs (``filler`` is None then).
    """
    import errno

    mount_dir = tmp_path / "full"
    mount_dir.mkdir()
    unmount = mount_tmpfs(mount_dir, "size=64k", "mode=0755")
    if unmount is None:
        (mount_dir / "predictions.jsonl").symlink_to("/dev/full")
        yield FullDisk(mount_dir, None)
        return
    try:
        filler = mount_dir / "filler"
        with filler.open("wb", buffering=0) as fh, pytest.raises(OSError, match="No space left") as full:
            _fill(fh)
        assert full.value.errno == errno.ENOSPC
        yield FullDisk(mount_dir, filler)
    finally:
        unmount()


@pytest.fixture(scope="module")
def jwks_url(signer: Signer) -> Iterator[str]:
    """The signer's public keys served over real HTTP, as auth's ``/.well-known/jwks.json`` would be."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = json.dumps({"keys": [signer.key.as_dict(private=False)]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def publish_variant(
    model_dir: Path,
    base: Path,
    estimator: Any,
    *,
    alias: str | None = "challenger",
    features: list[str] | None = None,
) -> Path:
    """Publish another version of ``base``'s iris model: ``Pipeline(prep, estimator)`` fitted on all of
    iris, over ``features`` only when given (like ``modelberth train --drop``), and point ``alias`` at it.

    The card is ``base``'s with the new version, checksum and feature list, so tests can shape a challenger
    exactly (a ``DummyClassifier`` that always answers one class gives a known agreement)."""
    from datetime import UTC, datetime

    import joblib
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from modelberth_core import contract
    from modelberth_core.store import FilesystemStore

    card = contract.read_card(base)
    iris = load_iris(as_frame=True)
    names = [c.replace(" (cm)", "").replace(" ", "_") for c in iris.feature_names]
    x = iris.frame[iris.feature_names].set_axis(names, axis=1)
    y = np.asarray(iris.target_names)[iris.frame["target"].to_numpy()]
    kept = features or card.feature_names
    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    pipeline = Pipeline([("prep", ColumnTransformer([("num", numeric, kept)])), ("model", estimator)])
    pipeline.fit(x[kept], y)
    store = FilesystemStore(model_dir)
    version = store.new_version(card.name, datetime.now(UTC))
    with store.staging(card.name) as staged:
        joblib.dump(pipeline, staged / contract.MODEL_FILE)
        x[kept].head(10).to_csv(staged / contract.EXAMPLES_FILE, index=False)
        new = card.model_copy(
            update={
                "version": version,
                "created_at": datetime.now(UTC),
                "features": [f for f in card.features if f.name in kept],
                "reference_profile": {k: v for k, v in card.reference_profile.items() if k in kept},
                "model_sha256": contract.sha256_file(staged / contract.MODEL_FILE),
            }
        )
        store.publish(staged, new)
    if alias is not None:
        store.move_alias(card.name, alias, version, reason="gate", detail="test variant")
    return store.fetch(card.name, version)


@pytest.fixture(scope="session")
def variant_factory() -> Callable[..., Path]:
    """``variant_factory(model_dir, base_dir, estimator, alias="challenger", features=None)``."""
    return publish_variant


@pytest.fixture
def store_dir(
    tmp_path: Path, artifact_factory: Callable[..., Path], variant_factory: Callable[..., Path]
) -> Path:
    """A store with iris: a champion (logistic regression) and a challenger that always answers setosa."""
    from sklearn.dummy import DummyClassifier

    model_dir = tmp_path / "models"
    champion = artifact_factory(model_dir)
    variant_factory(model_dir, champion, DummyClassifier(strategy="constant", constant="setosa"))
    return model_dir
