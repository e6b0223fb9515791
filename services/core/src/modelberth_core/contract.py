"""The trainer -> inference contract: the model card (`model.json`) and the artifact directory layout.

One model version is one directory ``<model_dir>/<name>/<version>/`` holding ``model.joblib`` (the fitted
scikit-learn Pipeline), ``model.json`` (this module's :class:`ModelCard`), ``report.html`` and
``examples.csv``. Where versions live and which one each alias (``champion``, ``latest``...) names is the
model store's business (:mod:`modelberth_core.store`); the functions at the end of this module that touch
the directory layout are kept for callers written before the store existed and delegate to it.

This module never imports scikit-learn: it reads and writes metadata and files; loading the pickle is the
inference service's job, after it has checked what this module reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from modelberth_core.store import FilesystemStore

SCHEMA_VERSION = 2
"""Bumped on every incompatible change of :class:`ModelCard`; the trainer writes this one.

2: the search's winning candidate is ``selected`` (was ``champion``, which now names only the store alias);
optional ``gate`` (the promotion gate's verdict)."""
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
"""Schema versions readers accept: a version-1 card reads with ``champion`` as ``selected``."""

MODEL_FILE = "model.joblib"
CARD_FILE = "model.json"
REPORT_FILE = "report.html"
EXAMPLES_FILE = "examples.csv"
LATEST_FILE = "latest"

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""Model names: lowercase, usable in URLs, file names, metric labels and image tags."""
VERSION_PATTERN = r"^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?$"
"""Versions are UTC timestamps (``20261122T144500Z``), a ``-N`` suffix when two land in one second."""

Task = Literal["classification", "regression"]
FeatureType = Literal["numeric", "categorical", "text"]


class ContractError(Exception):
    """An artifact does not honour the contract (missing file, bad card, checksum mismatch)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Strict):
    """One input column the model expects, as seen in the training data."""

    name: str
    type: FeatureType
    required: bool = Field(description="False when the training data had missing values: null is accepted")
    categories: list[str] | None = Field(default=None, description="Categories seen in training")
    min: float | None = Field(default=None, description="Smallest training value (numeric)")
    max: float | None = Field(default=None, description="Largest training value (numeric)")
    max_length: int | None = Field(default=None, description="Longest training text, in characters")
    example: str | float | int | None = Field(default=None, description="A typical training value")
    description: str | None = None


class DroppedColumn(_Strict):
    """An input column the trainer left out, and why (identifier, constant, all missing, --drop)."""

    name: str
    reason: str


class LeakWarning(_Strict):
    """A column that alone predicts the target almost perfectly on the training part."""

    column: str
    score: float = Field(description="Single-column CV score on the primary metric")
    metric: str
    dropped: bool = False


class SelectedInfo(_Strict):
    """The candidate the search selected (its best configuration); not to be confused with the store's
    ``champion`` alias, which names the version being served."""

    candidate: str
    estimator: str
    params: dict[str, Any]


ChampionInfo = SelectedInfo
"""The version-1 name of :class:`SelectedInfo`, kept so code written against version 1 still runs."""


class LeaderboardRow(_Strict):
    """One candidate's cross-validated result on the training part."""

    candidate: str
    estimator: str
    cv_score: float | None
    cv_std: float | None
    fit_seconds: float
    n_configs: int
    params: dict[str, Any]
    status: Literal["ok", "failed", "skipped"] = "ok"
    message: str | None = None


class Metrics(_Strict):
    """Scores keyed by scikit-learn scorer names without the ``neg_`` prefix (``rmse``, ``roc_auc``...)."""

    primary: str = Field(description="The metric the selected candidate was chosen on")
    greater_is_better: bool
    cv: dict[str, float]
    test: dict[str, float]
    test_at_threshold: dict[str, float] | None = Field(
        default=None, description="Binary only: scores of hard predictions at the stored threshold"
    )
    confusion_matrix: list[list[int]] | None = None


class DataInfo(_Strict):
    """A fingerprint of the training data."""

    source: str
    rows: int
    columns: int
    sha256: str
    train_rows: int
    test_rows: int
    test_source: str | None = None
    class_counts: dict[str, int] | None = None


class Versions(_Strict):
    """Library versions the artifact was built with; inference refuses another scikit-learn."""

    python: str
    sklearn: str
    pandas: str
    numpy: str
    modelberth: str


class NumericProfile(_Strict):
    """Reference distribution of a numeric feature: quantile bin edges and the training share per bin."""

    kind: Literal["numeric"] = "numeric"
    edges: list[float] = Field(description="Inner bin edges; n edges make n+1 bins")
    frequencies: list[float]
    missing: float = 0.0

    @model_validator(mode="after")
    def _bins_match(self) -> NumericProfile:
        if len(self.frequencies) != len(self.edges) + 1:
            raise ValueError("a numeric profile needs one more frequency than edges")
        return self


class CategoricalProfile(_Strict):
    """Reference distribution of a categorical (or text-length) feature."""

    kind: Literal["categorical"] = "categorical"
    frequencies: dict[str, float] = Field(description="Share per category; unseen values go to __other__")
    missing: float = 0.0


Profile = NumericProfile | CategoricalProfile


class FairnessResult(_Strict):
    """Share of test predictions that change when a protected attribute's value is swapped."""

    attribute: str
    flip_rate: float
    swaps: dict[str, str]
    rows: int


class Threshold(_Strict):
    """Binary decision threshold on P(positive label) and how it was chosen."""

    value: float = Field(ge=0.0, le=1.0)
    strategy: Literal["max_f1", "min_cost", "default"]
    cost_fp: float | None = None
    cost_fn: float | None = None


GateVerdict = Literal["promoted", "refused", "skipped"]
GateCheckKind = Literal["comparable", "metric", "leaks", "example", "invariance", "directional"]


class GateCheck(_Strict):
    """One check of the promotion gate: what was measured, against which limit, and by how much it passed
    (``margin`` >= 0) or failed (``margin`` < 0)."""

    kind: GateCheckKind
    name: str
    passed: bool
    detail: str = Field(description="One line a person reads: what was checked and what came out")
    value: float | None = Field(default=None, description="What was measured")
    limit: float | None = Field(default=None, description="The bound the value was held to")
    margin: float | None = Field(default=None, description="Distance to the limit; negative when failed")


class GateResult(_Strict):
    """The promotion gate's verdict: the candidate against the champion it was compared with."""

    verdict: GateVerdict = Field(
        description="promoted (to champion), refused (published as challenger) or skipped (--no-gate)"
    )
    champion_version: str | None = Field(
        default=None, description="The champion compared against (None: there was no champion)"
    )
    metric: str
    greater_is_better: bool
    candidate_score: float | None = None
    champion_score: float | None = None
    tolerance: float = Field(ge=0.0, description="How much worse than the champion the candidate may be")
    rows: int = Field(ge=0, description="Test rows both models were scored on")
    checks: list[GateCheck] = []
    reasons: list[str] = Field(default=[], description="Why the gate refused (empty when promoted)")


class ModelCard(_Strict):
    """The content of ``model.json``: everything inference and a person need to know about one version."""

    schema_version: int = SCHEMA_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=VERSION_PATTERN)
    created_at: datetime
    git_sha: str | None = None
    task: Task
    target: str
    classes: list[str] | None = Field(default=None, description="Class labels as strings, model order")
    positive_label: str | None = None
    threshold: Threshold | None = None
    features: list[FeatureSpec]
    dropped_columns: list[DroppedColumn] = []
    leak_warnings: list[LeakWarning] = []
    metrics: Metrics
    selected: SelectedInfo = Field(validation_alias=AliasChoices("selected", "champion"))
    leaderboard: list[LeaderboardRow]
    data: DataInfo
    versions: Versions
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    reference_profile: dict[str, Profile]
    feature_importance: dict[str, float] = {}
    fairness: list[FairnessResult] = []
    timings: dict[str, float] = {}
    notes: list[str] = []
    gate: GateResult | None = None

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, value: int) -> int:
        if value not in SUPPORTED_SCHEMA_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
            raise ValueError(f"schema_version {value} is not supported (this version reads {supported})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        if self.task == "classification":
            if not self.classes or len(self.classes) < 2:
                raise ValueError("a classifier needs at least two classes")
            if self.positive_label is not None and self.positive_label not in self.classes:
                raise ValueError("positive_label must be one of classes")
            if self.threshold is not None and len(self.classes) != 2:
                raise ValueError("a threshold is only meaningful for a binary classifier")
        elif self.classes or self.threshold is not None:
            raise ValueError("a regressor has no classes and no threshold")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        return self

    @property
    def feature_names(self) -> list[str]:
        """Input column names in the order the pipeline was fitted with."""
        return [f.name for f in self.features]

    @property
    def is_binary(self) -> bool:
        """True for a two-class classifier."""
        return self.task == "classification" and self.classes is not None and len(self.classes) == 2


def new_version(now: datetime | None = None) -> str:
    """A version string for a model trained at ``now`` (UTC)."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``model.json``, as checked into ``services/core/model.schema.json``."""
    return ModelCard.model_json_schema(mode="serialization")


def read_card(version_dir: Path) -> ModelCard:
    """Parse and validate ``model.json`` in a version directory; raise :class:`ContractError` if not valid."""
    path = version_dir / CARD_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ContractError(f"{path}: cannot read the model card ({exc.strerror})") from exc
    try:
        return ModelCard.model_validate_json(raw)
    except ValueError as exc:
        raise ContractError(f"{path}: not a valid model card: {exc}") from exc


def verify_checksum(version_dir: Path, card: ModelCard) -> Path:
    """Return the model file path once its SHA-256 matches the card's; raise :class:`ContractError` if not."""
    model_path = version_dir / MODEL_FILE
    if not model_path.is_file():
        raise ContractError(f"{model_path}: model file missing")
    actual = sha256_file(model_path)
    if actual != card.model_sha256:
        raise ContractError(
            f"{model_path}: sha256 {actual[:12]}… does not match the card's {card.model_sha256[:12]}…"
        )
    return model_path


# --- the directory layout, for callers written before the store ------------------------------------------
# New code opens a store (modelberth_core.store.open_store) and calls its methods; these keep the
# pre-store functions working by delegating to the filesystem store, so the layout lives in one place.


def _store(model_dir: Path) -> FilesystemStore:
    from modelberth_core.store import FilesystemStore

    return FilesystemStore(model_dir)


def list_models(model_dir: Path) -> list[str]:
    """Names of the models under ``model_dir`` (directories whose names are valid model names)."""
    return _store(model_dir).models()


def list_versions(model_dir: Path, name: str) -> list[str]:
    """Complete versions of one model, oldest first (a version counts once its card exists)."""
    from modelberth_core.store import ModelNotFound

    try:
        return [v.version for v in _store(model_dir).versions(name)]
    except ModelNotFound:
        return []


def resolve_latest(model_dir: Path, name: str) -> str | None:
    """The version the ``latest`` pointer names, else the newest complete version, else None."""
    from modelberth_core.store import LATEST, StoreError

    try:
        return _store(model_dir).aliases(name).get(LATEST)
    except StoreError:
        return None


def set_latest(model_dir: Path, name: str, version: str) -> None:
    """Serve ``version``, as moving ``latest`` did before the store: moves ``latest`` and ``champion``."""
    from modelberth_core.store import CHAMPION, LATEST, StoreError

    store = _store(model_dir)
    try:
        store.move_alias(name, LATEST, version, reason="publish", detail="contract.set_latest")
        store.move_alias(name, CHAMPION, version, reason="promote", detail="contract.set_latest")
    except StoreError as exc:
        raise ContractError(f"cannot point latest at {name}/{version}: {exc}") from exc


@contextmanager
def staging_dir(model_dir: Path, name: str) -> Iterator[Path]:
    """A temporary directory beside the final one; removed if the block raises (nothing half-written)."""
    with _store(model_dir).staging(name) as staged:
        yield staged


def publish(model_dir: Path, staged: Path, card: ModelCard, *, update_latest: bool = True) -> Path:
    """Publish ``staged`` and serve it, as before the store: moves ``latest`` and then ``champion``.

    New code calls :meth:`ModelStore.publish` (``latest`` only) and lets the promotion gate move aliases.
    """
    from modelberth_core.store import CHAMPION, StoreError

    del update_latest  # publishing always moves latest now
    store = _store(model_dir)
    try:
        resolved = store.publish(staged, card)
        store.move_alias(
            card.name, CHAMPION, resolved.version, reason="promote", detail="contract.publish (no gate)"
        )
    except StoreError as exc:
        raise ContractError(str(exc)) from exc
    return store.fetch(card.name, resolved.version)


def unique_version(model_dir: Path, name: str, now: datetime | None = None) -> str:
    """A fresh version for ``name``: the timestamp, with ``-2``, ``-3``... when that one is taken."""
    return _store(model_dir).new_version(name, now)
