"""The typed request and answer every transport speaks to the data plane (:mod:`.dataplane`).

A codec at the edge turns its wire format into an :class:`InferRequest` (V1 JSON records stay bytes, so
the card's compiled decoder reads them in one C pass; V2 REST and gRPC tensors become :class:`Tensor`) and
turns the :class:`InferResponse` back into its own format. Nothing here knows HTTP or gRPC.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from modelberth_inference.model import LoadedModel

Protocol = Literal["v1", "v2", "grpc"]
"""Which transport a request came by (a bounded metrics label)."""

MAX_ID_LENGTH: Final = 256
"""Longest request ``id``: the protocol returns it in the answer, so it is bounded (REST and gRPC)."""
OUTPUTS: Final = ("predict", "predict_proba")
"""The outputs a request may ask for: labels (or values) and, for classifiers, class probabilities."""
NUMERIC_DATATYPES: Final = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64"}
)
DATATYPES: Final = NUMERIC_DATATYPES | {"BOOL", "BYTES"}
"""The Open Inference Protocol's tensor datatypes (an error repeats a client's datatype only if it is one)."""


@dataclass(frozen=True, slots=True)
class Tensor:
    """One V2 input tensor as decoded by its codec: ``data`` is flat in row-major order (a list, or a numpy
    array from a binary or gRPC payload), and ``len(data)`` equals the product of ``shape``.

    Either one tensor per feature (named after it, shape ``[n]`` or ``[n, 1]``) or a single ``[n, F]``
    tensor whose columns are the card's features in order; :mod:`.tensors` tells them apart.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Sequence[Any] | npt.NDArray[Any]
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Records:
    """V1 rows: the raw JSON body (``{"instances": [...]}`` or one object), or rows already parsed (a held-out
    example). The card's validator decodes the body, so the common shape costs one C pass."""

    body: bytes | None = None
    instances: list[Any] | None = None


@dataclass(slots=True)
class InferRequest:
    """One inference call, whatever the transport.

    ``version`` is a version id or an alias (``challenger``); None means the version the model serves.
    ``parameters`` are the request's V2 parameters (``content_type``: ``np`` for one ``[n, F]`` tensor,
    ``pd`` for one tensor per feature, as MLServer defines them). ``outputs`` lists what to answer.
    """

    model: str
    inputs: Records | Sequence[Tensor]
    version: str | None = None
    id: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ("predict",)
    protocol: Protocol = "v1"
    started: float = field(default_factory=time.perf_counter)
    """When the transport received the request (``time.perf_counter``): latency is measured from here."""


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """One output as a V2 tensor: flat ``data`` in row-major order."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list[Any]


@dataclass(slots=True)
class InferResponse:
    """What the model answered for one request."""

    model: LoadedModel
    """The version that answered (name, version, task, classes)."""
    predictions: list[Any]
    """One label (classifiers) or value (regression) per row."""
    probabilities: npt.NDArray[np.float64] | None
    """(rows, classes) probabilities for classifiers, else None."""
    warnings: list[dict[str, Any]]
    """``{"row", "feature", "kind", "detail"}`` per value outside the training data (its row is predicted)."""
    id: str | None = None
    outputs: tuple[str, ...] = ("predict",)

    @property
    def model_name(self) -> str:
        """The model's name."""
        return self.model.name

    @property
    def model_version(self) -> str:
        """The version that answered."""
        return self.model.version

    def probability_rows(self) -> list[Any]:
        """V1's ``[{class: p, ...}, ...]`` (msgspec structs, encoded in C); empty for regression."""
        if self.probabilities is None:
            return []
        return self.model.probabilities(self.probabilities)

    def tensors(self) -> list[OutputTensor]:
        """The requested outputs as V2 tensors (``predict``: BYTES labels or FP64 values; ``predict_proba``:
        FP64 ``[n, classes]``)."""
        n = len(self.predictions)
        out: list[OutputTensor] = []
        for name in self.outputs:
            if name == "predict":
                datatype = "FP64" if self.model.card.task == "regression" else "BYTES"
                out.append(OutputTensor("predict", datatype, (n,), self.predictions))
            else:
                proba = self.probabilities if self.probabilities is not None else np.zeros((n, 0))
                out.append(OutputTensor("predict_proba", "FP64", (n, proba.shape[1]), proba.ravel().tolist()))
        return out


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    """An input or output as the V2 model metadata describes it."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """V2 model metadata: one input per feature (the card's order), the outputs, and the version."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    """One model (or held version) in the V2 repository index."""

    name: str
    version: str | None
    state: Literal["READY", "UNAVAILABLE", "LOADING"]
    reason: str = ""
