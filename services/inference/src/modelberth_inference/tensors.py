"""V2 input tensors (REST or gRPC, already decoded into :class:`~.types.Tensor`) → the card's columns.

Two layouts, as MLServer's codecs define them through ``parameters.content_type``:

- ``pd`` (a DataFrame, column-wise): one input per feature, named after it, shape ``[n]`` or ``[n, 1]``;
  numeric features take a numeric datatype, text and categorical ones ``BYTES``.
- ``np`` (one array): a single ``[n, F]`` input whose columns are the card's features in order (MLServer's
  and Seldon's examples send ``{"name": "input-0", "shape": [1, 4], "datatype": "FP64", ...}``). FP32,
  FP64, INT*, UINT* and BOOL for an all-numeric card; ``BYTES`` when some features are strings (numbers may
  then come as numbers or as their text).

Without a content type, a single input whose name is not a feature is read as ``np``, anything else as
``pd``. The values are then checked by the card's :class:`~.validation.Validator`, like V1 records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelberth_inference.errors import BadRequest, InvalidInput
from modelberth_inference.types import NUMERIC_DATATYPES, Tensor
from modelberth_inference.validation import (
    Columns,
    InputError,
    Validator,
    input_label,
    invalid_input,
)

CONTENT_TYPES = ("np", "pd")
_NUMBERS = frozenset({int, float})


def content_type(parameters: Mapping[str, Any]) -> str | None:
    """The request's ``parameters.content_type`` (``np``, ``pd``) or None; another value is a 400."""
    value = parameters.get("content_type")
    if value is None:
        return None
    if value not in CONTENT_TYPES:
        raise BadRequest(
            "parameters.content_type must be np (one [n, F] tensor) or pd (one input per feature)"
        )
    return str(value)


def tensor_columns(
    validator: Validator,
    tensors: Sequence[Tensor],
    parameters: Mapping[str, Any],
    max_instances: int,
) -> Columns:
    """The validated columns of a V2 request (400 for a malformed tensor, 422 for values the card refuses)."""
    if not tensors:
        raise BadRequest("inputs must be a non-empty array")
    kind = content_type(parameters)
    if kind is None and len(tensors) == 1:
        kind = tensors[0].parameters.get("content_type") if tensors[0].parameters else None
        if kind is None:
            kind = "pd" if tensors[0].name in validator.name_set else "np"
    try:
        if kind == "np":
            if len(tensors) != 1:
                raise BadRequest("content_type np takes exactly one input: an [n, F] tensor")
            return _matrix(validator, tensors[0], max_instances)
        columns, n = _feature_columns(validator, tensors, max_instances)
        return validator.from_columns(columns, n)
    except InputError as exc:
        raise invalid_input(exc, v2=True) from None


def _rows(n: int, max_instances: int) -> None:
    if n == 0:
        raise BadRequest("inputs have no rows")
    if n > max_instances:
        raise InvalidInput(f"too many rows: {n} in one request, at most {max_instances}")


# --- one [n, F] tensor -------------------------------------------------------------------------------------


def _matrix(validator: Validator, tensor: Tensor, max_instances: int) -> Columns:
    names = validator.names
    k = len(names)
    shape = tensor.shape
    if not (len(shape) == 2 and shape[1] == k) and not (len(shape) == 1 and k == 1):
        raise BadRequest(
            f"{input_label(tensor.name)}: a single tensor must have shape [n, {k}], its columns the model's"
            f" features in order ({', '.join(names)})"
        )
    n = shape[0]
    if len(tensor.data) != n * k:
        raise BadRequest(
            f"{input_label(tensor.name)}: data has {len(tensor.data)} elements, shape says {n * k}"
        )
    _rows(n, max_instances)
    datatype = tensor.datatype
    if datatype == "BYTES":
        return _bytes_matrix(validator, tensor, n)
    if datatype not in NUMERIC_DATATYPES and datatype != "BOOL":
        raise BadRequest(
            f"{input_label(tensor.name)}: datatype must be FP64, FP32, INT*, UINT*, BOOL or BYTES"
        )
    strings = [f.name for f in validator.features if f.type != "numeric"]
    if strings:
        raise BadRequest(
            f"{input_label(tensor.name)}: features {', '.join(strings)} are strings: send a BYTES tensor,"
            " or one input per feature"
        )
    matrix = _numeric_matrix(tensor, n, k)
    if matrix is not None:
        columns = validator.numeric_matrix(matrix)
        if columns is not None:
            return columns
    # Something is wrong with a value: the exact path names each one, column by column.
    data = list(tensor.data.tolist() if isinstance(tensor.data, np.ndarray) else tensor.data)
    return validator.from_columns({name: data[j::k] for j, name in enumerate(names)}, n)


def _numeric_matrix(tensor: Tensor, n: int, k: int) -> npt.NDArray[np.float64] | None:
    """The (features, rows) float64 matrix of a numeric or BOOL tensor, None when a value is not of its
    datatype (the exact path words it)."""
    data = tensor.data
    if isinstance(data, np.ndarray):
        if tensor.datatype == "BOOL" and data.dtype != np.bool_:
            return None
        if data.dtype.kind not in "biuf":
            return None
        array = data.astype(np.float64, copy=False)
    else:
        types = set(map(type, data))
        if tensor.datatype == "BOOL":
            if types != {bool}:
                return None
        elif not types <= _NUMBERS:
            return None
        try:
            array = np.array(data, dtype=np.float64)
        except OverflowError:
            return None
    return np.ascontiguousarray(array.reshape(n, k).T)


def _bytes_matrix(validator: Validator, tensor: Tensor, n: int) -> Columns:
    """A BYTES ``[n, F]`` tensor: strings for string features, numbers (or their text) for numeric ones."""
    data = list(tensor.data.tolist() if isinstance(tensor.data, np.ndarray) else tensor.data)
    k = len(validator.names)
    columns: dict[str, list[Any]] = {}
    for j, spec in enumerate(validator.features):
        column = [_text(tensor.name, v) for v in data[j::k]]
        if spec.type == "numeric":
            column = [_number(v) for v in column]
        columns[spec.name] = column
    return validator.from_columns(columns, n)


def _text(name: str, value: Any) -> Any:
    if type(value) is bytes:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"{input_label(name)}: BYTES data is not valid UTF-8") from None
    return value


def _number(value: Any) -> Any:
    """A number sent as text in a BYTES tensor, as a float (a text that is no number stays text: refused)."""
    if type(value) is not str:
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


# --- one input per feature ----------------------------------------------------------------------------------


def _feature_columns(
    validator: Validator, tensors: Sequence[Tensor], max_instances: int
) -> tuple[dict[str, list[Any]], int]:
    specs = {f.name: f for f in validator.features}
    columns: dict[str, list[Any]] = {}
    n: int | None = None
    for tensor in tensors:
        name = tensor.name
        _feature_shape(tensor)
        spec = specs.get(name)
        if spec is not None:
            _feature_datatype(tensor, spec.type == "numeric")
        if name in columns:
            raise BadRequest(f"{input_label(name)} given twice")
        data = tensor.data
        column = data.tolist() if isinstance(data, np.ndarray) else list(data)
        if len(column) != tensor.shape[0]:
            raise BadRequest(
                f"{input_label(name)}: data has {len(column)} elements, shape says {tensor.shape[0]}"
            )
        if n is None:
            n = len(column)
        elif len(column) != n:
            raise BadRequest(f"{input_label(name)}: {len(column)} rows, other inputs have {n}")
        if tensor.datatype == "BYTES":
            column = [_text(name, v) for v in column]
        columns[name] = column
    assert n is not None
    _rows(n, max_instances)
    return columns, n


def _feature_shape(tensor: Tensor) -> None:
    shape = tensor.shape
    if not 1 <= len(shape) <= 2:
        raise BadRequest(f"{input_label(tensor.name)}: shape must be [n] or [n, 1]")
    if len(shape) == 2 and shape[1] != 1:
        raise BadRequest(f"{input_label(tensor.name)}: one column per input; expected shape [n] or [n, 1]")


def _feature_datatype(tensor: Tensor, numeric: bool) -> None:
    datatype = tensor.datatype
    shown = datatype if datatype in NUMERIC_DATATYPES | {"BOOL", "BYTES"} else "(not an OIP datatype)"
    if numeric and datatype not in NUMERIC_DATATYPES:
        raise BadRequest(
            f"{input_label(tensor.name)}: datatype {shown} is not numeric (use FP64, FP32 or INT64)"
        )
    if not numeric and datatype != "BYTES":
        raise BadRequest(
            f"{input_label(tensor.name)}: datatype {shown} is not BYTES (this feature is a string)"
        )
