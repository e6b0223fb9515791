"""Request validation compiled from the model card: JSON values -> typed numpy columns, or exact errors.

A pydantic model per request would cost more than the prediction itself, so each model gets one
:class:`Validator` built at load time. Two routes lead to the same columns:

- :meth:`Validator.decode` turns a well-formed ``{"instances": [...]}`` body straight into typed msgspec
  structs (one C pass: types, unknown and missing features, no per-row dicts), then one array per feature.
  For a 1000-row body that took about 0.6 of the time of parsing to dicts and checking those (issue 4).
- When that decoder refuses a body, or for the other shapes, the exact path parses to plain JSON values and
  checks whole columns at once (the set of value types, ``np.isfinite`` on the converted array); only when
  that fails does it walk the column to name every offending row and field.

Nothing here echoes an input value back: NaN or 1e400 in an error body would fail to serialise (the FastAPI
default handler's 500, issue 4).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, Final

import msgspec
import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
from msgspec.structs import astuple

from modelberth_core.contract import FeatureSpec
from modelberth_inference.errors import BadRequest, InvalidInput

if TYPE_CHECKING:
    from modelberth_inference.types import Records

MAX_ERRORS: Final = 100
"""Errors reported per request; the rest are summarised, so a 1000-row bad batch stays small."""
MAX_WARNINGS: Final = 1000
"""Warnings listed per request (all are counted in metrics)."""
MAX_ABS_NUMBER: Final = 1e200
"""Largest magnitude a numeric feature may have (422 beyond). No measurement needs more, and it leaves a
factor of 1e108 below the largest double for a pipeline's scaling and sums, so a model computes with every
accepted value; ±1e308 used to come back as NaN probabilities (issue 13). A pipeline that still overflows
(squares of 1e200) is caught on its output: a 422 naming the row."""
RECORDS_MIN_ROWS: Final = 128
"""Batches from this size read their numbers via :class:`NumericRecords`, whose fixed cost (about 15 us, a
dozen numpy calls) smaller batches, such as micro-batched single rows, do not earn back."""


class _Missing:
    """Marks a feature absent from an instance (distinct from an explicit null)."""

    __slots__ = ()


class NonFinite:
    """A JSON constant (NaN, Infinity) or a number too large for a double, kept so we can name it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


MISSING: Final = _Missing()
_NUMBER_TYPES: Final = frozenset({float, int})


class BodyError(Exception):
    """The body is not JSON or not the expected shape (400/422), with a message safe to return."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True, slots=True)
class Issue:
    """One offending value: the row (0-based), the feature, a message and a machine-readable type."""

    row: int | None
    feature: str | None
    msg: str
    type: str


class InputError(Exception):
    """One or more rows do not match the model's feature schema (422)."""

    def __init__(self, issues: list[Issue], total: int) -> None:
        super().__init__(f"{total} invalid value(s)")
        self.issues = issues
        self.total = total


@dataclass(slots=True)
class Columns:
    """Validated input: one numpy array per feature (float64 for numbers, object for strings), n rows."""

    n: int
    data: dict[str, npt.NDArray[Any]]
    warnings: list[dict[str, Any]] = field(default_factory=list)
    warning_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    warning_rows: dict[tuple[str, str], npt.NDArray[np.intp]] = field(default_factory=dict)
    """(feature, kind) -> every row it concerns, uncapped (the batch scorer's per-row ``warnings`` cells)."""

    def rows(self) -> list[dict[str, Any]]:
        """The rows as JSON objects again, an absent optional value as null (for the prediction log)."""
        names = list(self.data)
        columns = [
            [None if type(v) is float and math.isnan(v) else v for v in array.tolist()]
            for array in self.data.values()
        ]
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def parse_json(body: bytes) -> Any:
    """Parse a body with orjson; on failure retry with the stdlib parser so NaN/Infinity/1e400 become
    :class:`NonFinite` markers the validator reports per field, rather than one opaque parse error.

    Whatever orjson refuses for another reason is a 400 here: bytes that are not UTF-8 (RFC 8259 §8.1: JSON
    between systems is UTF-8, so neither a byte order mark nor UTF-16 is read), nesting deeper than
    orjson's 1024 levels, numbers no parser can hold. Nothing a client sends may end as a 500 (issue 13).
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        first_error = exc
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, "request body is not valid UTF-8") from None
    if text.startswith("\ufeff"):
        raise BodyError(400, "request body starts with a byte order mark; send UTF-8 JSON without one")
    try:
        return json.loads(text, parse_constant=NonFinite, parse_float=_parse_float)
    except (ValueError, RecursionError):
        msg = str(first_error).split(":", 1)[0]
        raise BodyError(400, f"request body is not valid JSON ({msg})") from None


def _parse_float(text: str) -> float | NonFinite:
    value = float(text)
    return value if math.isfinite(value) else NonFinite(text)


SHOWN_NAME_MAX: Final = 64
"""Longest client-sent name an error message repeats."""


def shown_name(name: str) -> str | None:
    """``name`` if an error may repeat it (at most 64 printable characters: no control character, no lone
    surrogate, which could not even be encoded), else None. A name is echoed only to say which one was
    wrong; anything else a client sends is never repeated."""
    return name if len(name) <= SHOWN_NAME_MAX and name.isprintable() else None


def input_label(name: str) -> str:
    """How an error names a client's V2 input, on REST and gRPC alike: ``input 'x'``, unless the name must
    not be repeated (see :func:`shown_name`)."""
    shown = shown_name(name)
    return (
        f"input {shown!r}"
        if shown is not None
        else "an input whose name is not shown (too long or not printable)"
    )


def unknown_issue(row: int | None, key: str, what: str) -> Issue:
    """An unknown feature (V1) or input (V2), named when the name can be shown."""
    if shown_name(key) is None:
        return Issue(
            row, None, f"unknown {what} (its name is not shown: too long or not printable)", "extra_forbidden"
        )
    return Issue(row, key, f"unknown {what}", "extra_forbidden")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, NonFinite):
        return "a non-finite number"
    if isinstance(value, list):
        return "an array"
    return "an object"


class Validator:
    """Checks instances against one model's features; built once per loaded model version."""

    def __init__(
        self, features: Sequence[FeatureSpec], max_text_length: int, max_warnings: int = MAX_WARNINGS
    ) -> None:
        self.features = list(features)
        self.max_warnings = max_warnings
        self.names = [f.name for f in self.features]
        self.name_set = frozenset(self.names)
        self.max_text_length = max_text_length
        self._getter = itemgetter(*self.names)
        self._categories = {
            f.name: dict.fromkeys(f.categories, 0)
            for f in self.features
            if f.type == "categorical" and f.categories
        }
        self._decoder, instance = _instances_decoder(self.features)
        required_numeric_only = all(f.type == "numeric" and f.required for f in self.features)
        self._records = (
            NumericRecords.build(instance, len(self.features))
            if instance is not None and required_numeric_only
            else None
        )
        self._numeric_only = all(f.type == "numeric" for f in self.features)
        # Training ranges as rows, for checking a whole (finite) matrix of an all-numeric model at once.
        self._lowest = np.array(
            [-math.inf if f.min is None else f.min for f in self.features], dtype=np.float64
        )
        self._highest = np.array(
            [math.inf if f.max is None else f.max for f in self.features], dtype=np.float64
        )
        self._attributes = [attrgetter(f"f{i}") for i in range(len(self.features))]

    # -- the typed fast path --------------------------------------------------------------------------

    def decode(self, body: bytes, max_instances: int) -> Columns | None:
        """Columns for a well-formed ``{"instances": [...]}`` of 1 to ``max_instances`` valid rows, else None.

        None means "use the exact path": it gives the same answer for valid input and names every offending
        row and field for invalid input, so this method never has to explain a refusal.
        """
        if self._decoder is None:
            return None
        try:
            instances = self._decoder.decode(body).instances
        except (msgspec.MsgspecError, ValueError, RecursionError):
            # Not the common shape, or not decodable at all (msgspec raises UnicodeDecodeError for bad
            # UTF-8 in a key it skips, RecursionError for a deep value it skips): the exact path words it.
            return None
        n = len(instances)
        if not 0 < n <= max_instances:
            return None
        if self._records is not None:  # the usual tabular model: every value read into one matrix in C
            columns = self._numeric_columns(self._records, instances)
            return None if columns is None else self._all_numeric(columns)
        out = Columns(n=n, data={})
        for spec, attribute in zip(self.features, self._attributes, strict=True):
            if spec.type == "numeric":
                if spec.required:
                    array = np.fromiter(map(attribute, instances), dtype=np.float64, count=n)
                    accepted = bool((np.abs(array) <= MAX_ABS_NUMBER).all())  # NaN compares False
                else:  # np.array, unlike fromiter, reads an absent optional value (None) as NaN
                    array = np.array(list(map(attribute, instances)), dtype=np.float64)
                    accepted = not bool((np.abs(array) > MAX_ABS_NUMBER).any())  # NaN: null, accepted
                if not accepted:
                    return None  # 1e400 decodes to infinity, 1e300 is too large: the exact path names it
                out.data[spec.name] = array
                continue
            values = list(map(attribute, instances))
            if spec.type == "text" and max(map(len, filter(None, values)), default=0) > self.max_text_length:
                return None
            if not spec.required and None in values:
                values = [math.nan if v is None else v for v in values]
            out.data[spec.name] = np.array(values, dtype=object)
        self._warn(out)
        return out

    @staticmethod
    def _numeric_columns(records: NumericRecords, instances: list[Any]) -> npt.NDArray[np.float64] | None:
        """The (features, rows) matrix of decoded all-numeric instances (see :class:`NumericRecords`)."""
        n, k = len(instances), records.k
        if n >= RECORDS_MIN_ROWS:
            return records.columns(instances)
        flat = np.fromiter(chain.from_iterable(map(astuple, instances)), dtype=np.float64, count=n * k)
        return np.ascontiguousarray(flat.reshape(n, k).T)

    # -- request shapes -------------------------------------------------------------------------------

    def from_instances(self, instances: list[Any]) -> Columns:
        """Validate V1 rows (a list of JSON objects); raise :class:`InputError` naming each bad value."""
        fast = self._all_numeric_fast(instances)
        if fast is not None:
            return fast
        issues: list[Issue] = []
        n = len(instances)
        if not all(type(inst) is dict for inst in instances):
            for row, inst in enumerate(instances):
                if type(inst) is not dict:
                    issues.append(
                        Issue(row, None, f"expected a JSON object, got {_type_name(inst)}", "dict_type")
                    )
            raise InputError(issues[:MAX_ERRORS], len(issues))
        name_set = self.name_set
        for row, inst in enumerate(instances):
            if len(inst) > len(name_set) or not name_set.issuperset(inst):
                issues.extend(unknown_issue(row, key, "feature") for key in inst if key not in name_set)
        columns = {name: [inst.get(name, MISSING) for inst in instances] for name in self.names}
        return self._check(columns, n, issues)

    def _all_numeric_fast(self, instances: list[Any]) -> Columns | None:
        """The common case in one pass of C loops: every row a dict holding exactly the (numeric) features,
        every value a finite int or float. None sends the request down the exact, per-value path."""
        if not self._numeric_only or set(map(type, instances)) != {dict}:
            return None
        if set(map(len, instances)) != {len(self.names)}:
            return None
        try:
            rows = list(map(self._getter, instances))
        except KeyError:
            return None
        if len(self.names) == 1:
            rows = [(v,) for v in rows]
        if not set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES:
            return None
        k = len(self.names)
        try:
            flat = np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=len(rows) * k)
        except OverflowError:
            return None
        columns = np.ascontiguousarray(flat.reshape(len(rows), k).T)  # one contiguous row per feature
        return self._all_numeric(columns)

    def _all_numeric(self, columns: npt.NDArray[np.float64]) -> Columns | None:
        """Columns of an all-numeric model from a (features, rows) matrix, warnings included; None when a
        value is not finite or beyond ±MAX_ABS_NUMBER (the exact path names it)."""
        # Two reductions for the whole batch serve both checks (a NaN makes its min and max NaN, and NaN
        # compares False); the per-feature detail only when something is out of the training range.
        lowest, highest = columns.min(axis=1), columns.max(axis=1)
        if not (lowest.min() >= -MAX_ABS_NUMBER and highest.max() <= MAX_ABS_NUMBER):
            return None
        out = Columns(n=columns.shape[1], data={name: columns[j] for j, name in enumerate(self.names)})
        if (lowest < self._lowest).any() or (highest > self._highest).any():
            self._warn(out)
        return out

    def numeric_matrix(self, columns: npt.NDArray[np.float64]) -> Columns | None:
        """Columns of an all-numeric model from a (features, rows) float64 matrix (a V2 ``[n, F]`` tensor,
        transposed), warnings included; None when a value is not finite or too large (use the exact path)."""
        return self._all_numeric(columns) if self._numeric_only else None

    def from_columns(self, columns: dict[str, list[Any]], n: int) -> Columns:
        """Validate column-wise input (the V2 protocol); a missing column counts as missing in every row."""
        issues = [unknown_issue(None, key, "input") for key in columns if key not in self.name_set]
        full = {name: columns.get(name, [MISSING] * n) for name in self.names}
        return self._check(full, n, issues)

    # -- column checks --------------------------------------------------------------------------------

    def _check(self, columns: dict[str, list[Any]], n: int, issues: list[Issue]) -> Columns:
        out = self.check(columns, n, issues)
        if issues:
            issues.sort(key=lambda i: (-1 if i.row is None else i.row, self._order(i.feature)))
            raise InputError(issues[:MAX_ERRORS], len(issues))
        return out

    def check(self, columns: dict[str, Any], n: int, issues: list[Issue]) -> Columns:
        """Validate full columns (every feature present, ``MISSING`` for an absent value) without raising:
        every offending value is appended to ``issues`` (uncapped, unsorted) and its feature has no array
        in the result; warnings only when nothing was wrong. A numeric column may also be a float64
        array (a NaN in it is an error: missing values come as None in a list). The batch scorer's per-row
        errors come from here, the API's 422 from :meth:`_check` around it."""
        out = Columns(n=n, data={})
        for spec in self.features:
            col = columns[spec.name]
            array: npt.NDArray[Any] | None
            if spec.type == "numeric":
                array = self._numeric(spec, col, issues)
            else:
                array = self._strings(spec, col, issues)
            if array is not None:
                out.data[spec.name] = array
        if not issues:
            self._warn(out)
        return out

    def _order(self, name: str | None) -> int:
        try:
            return self.names.index(name) if name is not None else -1
        except ValueError:
            return len(self.names)

    def _numeric(
        self, spec: FeatureSpec, col: list[Any] | npt.NDArray[np.float64], issues: list[Issue]
    ) -> npt.NDArray[np.float64] | None:
        if isinstance(col, np.ndarray):  # a float64 column already (a file's, read by pyarrow)
            given = np.asarray(col, dtype=np.float64)
            if bool((np.abs(given) <= MAX_ABS_NUMBER).all()):  # one reduction; NaN fails it
                return given
            col = given.tolist()  # the exact path below names each offending row
        types = set(map(type, col))
        if types <= _NUMBER_TYPES:
            try:
                array = np.array(col, dtype=np.float64)
            except OverflowError:
                array = None
            if array is not None and bool((np.abs(array) <= MAX_ABS_NUMBER).all()):
                return array
        elif not spec.required and types <= _NUMBER_TYPES | {type(None), _Missing}:
            values = [math.nan if v is None or v is MISSING else v for v in col]
            try:
                array = np.array(values, dtype=np.float64)
            except OverflowError:
                array = None
            if array is not None and not bool((np.abs(array) > MAX_ABS_NUMBER).any()):
                return array
        before = len(issues)
        for row, value in enumerate(col):
            problem = self._numeric_problem(spec, value)
            if problem is not None:
                issues.append(Issue(row, spec.name, *problem))
        if len(issues) == before:  # every value was acceptable after all (e.g. nulls mixed with numbers)
            return np.array(
                [math.nan if v is None or v is MISSING else float(v) for v in col], dtype=np.float64
            )
        return None

    @staticmethod
    def _numeric_problem(spec: FeatureSpec, value: Any) -> tuple[str, str] | None:
        if value is MISSING or value is None:
            if spec.required:
                return ("field required", "missing") if value is MISSING else ("null is not allowed", "null")
            return None
        kind = type(value)
        if kind is NonFinite:
            return "must be a finite number (NaN, Infinity and overflowing values are not)", "finite_number"
        if kind is not int and kind is not float:
            return f"expected a number, got {_type_name(value)}", "number_type"
        try:
            number = float(value)
        except OverflowError:
            return "must be a finite number (too large for a double)", "finite_number"
        if not math.isfinite(number):
            return "must be a finite number", "finite_number"
        if abs(number) > MAX_ABS_NUMBER:
            return f"must be between -{MAX_ABS_NUMBER:g} and {MAX_ABS_NUMBER:g}", "number_too_large"
        return None

    def _strings(
        self, spec: FeatureSpec, col: list[Any], issues: list[Issue]
    ) -> npt.NDArray[np.object_] | None:
        types = set(map(type, col))
        limit = self.max_text_length
        if types == {str} and (spec.type != "text" or max(map(len, col), default=0) <= limit):
            return np.array(col, dtype=object)
        before = len(issues)
        for row, value in enumerate(col):
            if value is MISSING or value is None:
                if spec.required:
                    msg = (
                        ("field required", "missing") if value is MISSING else ("null is not allowed", "null")
                    )
                    issues.append(Issue(row, spec.name, *msg))
            elif type(value) is not str:
                issues.append(
                    Issue(row, spec.name, f"expected a string, got {_type_name(value)}", "string_type")
                )
            elif spec.type == "text" and len(value) > limit:
                issues.append(
                    Issue(row, spec.name, f"text longer than {limit} characters", "string_too_long")
                )
        if len(issues) > before:
            return None
        return np.array([math.nan if v is None or v is MISSING else v for v in col], dtype=object)

    # -- warnings -------------------------------------------------------------------------------------

    def _warn(self, out: Columns) -> None:
        for spec in self.features:
            array = out.data[spec.name]
            if spec.type == "numeric" and (spec.min is not None or spec.max is not None):
                # One reduction each (fmin/fmax skip NaN); the per-row masks only when something is outside.
                if (spec.min is None or np.fmin.reduce(array) >= spec.min) and (
                    spec.max is None or np.fmax.reduce(array) <= spec.max
                ):
                    continue
                low = array < spec.min if spec.min is not None else np.zeros(out.n, dtype=bool)
                high = array > spec.max if spec.max is not None else np.zeros(out.n, dtype=bool)
                if low.any() or high.any():
                    self._add(
                        out,
                        spec.name,
                        "out_of_range",
                        np.flatnonzero(low | high),
                        f"outside the training range [{spec.min}, {spec.max}]",
                    )
            elif spec.name in self._categories:
                # A known category codes 0, an unseen string -1, a missing value -2.
                unseen = np.flatnonzero(category_codes(array, self._categories[spec.name], -1, -2) == -1)
                if len(unseen):
                    self._add(out, spec.name, "unseen_category", unseen, "a category not seen in training")

    def _add(self, out: Columns, feature: str, kind: str, rows: npt.NDArray[np.intp], detail: str) -> None:
        out.warning_counts[(feature, kind)] = len(rows)
        out.warning_rows[(feature, kind)] = rows
        room = max(self.max_warnings - len(out.warnings), 0)
        out.warnings.extend(
            {"row": row, "feature": feature, "kind": kind, "detail": detail} for row in rows[:room].tolist()
        )


FACTORIZE_FROM: Final = 64
"""Rows from which :func:`category_codes` hashes each distinct value once (pandas' factorize) instead of
looking every value up in Python: below it (an API request) the fixed cost of factorize is the larger."""


def category_codes(
    values: npt.NDArray[Any], index: dict[str, int], other: int, missing: int
) -> npt.NDArray[np.intp]:
    """Per value of an object array: ``index[value]`` for a known string, ``other`` for any other string,
    ``missing`` for anything else (None, NaN). Large arrays are factorized, so Python sees only the few
    distinct values; the result is the same."""

    def code(value: Any) -> int:
        return index.get(value, other) if type(value) is str else missing

    if len(values) < FACTORIZE_FROM:
        return np.fromiter(map(code, values.tolist()), dtype=np.intp, count=len(values))
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.fromiter(chain(map(code, uniques.tolist()), (missing,)), dtype=np.intp, count=len(uniques) + 1)
    return table[codes]  # a NaN/None codes -1: the table's last entry, ``missing``


def renamed_struct(
    name: str, fields: Sequence[tuple[str, Any] | tuple[str, Any, Any]], **options: Any
) -> type[msgspec.Struct] | None:
    """A msgspec struct whose i-th field is ``f{i}`` in Python and ``fields[i][0]`` in JSON, or None when
    msgspec cannot take a name (a quote, a backslash or a control character). ``fields`` are
    ``(json name, type)`` or ``(json name, type, default)``; ``options`` go to ``msgspec.defstruct``."""
    internal = [(f"f{i}", *spec) for i, (_, *spec) in enumerate(fields)]
    rename = {f"f{i}": field[0] for i, field in enumerate(fields)}
    try:
        return msgspec.defstruct(name, internal, rename=rename, **options)
    except (TypeError, ValueError):
        return None


def _instances_decoder(
    features: Sequence[FeatureSpec],
) -> tuple[msgspec.json.Decoder[Any] | None, type[msgspec.Struct] | None]:
    """A decoder for ``{"instances": [{feature: value}, ...]}`` that enforces the feature schema's types, and
    the struct type of one instance.

    Numbers accept JSON integers and floats (never booleans, strings or null) and always decode to floats;
    optional features may be null or absent (None). Unknown features are refused. (None, None) when a feature
    name cannot be a msgspec field name: those models take the exact path only.
    """
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for spec in features:
        kind: Any = float if spec.type == "numeric" else str
        fields.append((spec.name, kind) if spec.required else (spec.name, kind | None, None))
    # gc=False: the fields are floats, strings and None, which can never form a reference cycle.
    instance = renamed_struct("Instance", fields, kw_only=True, forbid_unknown_fields=True, gc=False)
    if instance is None:
        return None, None
    request = msgspec.defstruct("Instances", [("instances", list[instance])])  # type: ignore[valid-type]
    return msgspec.json.Decoder(request), instance


_FLOAT64: Final = b"\xcb"
"""msgpack's marker for a float64, which is followed by the value's 8 bytes, big-endian."""


class NumericRecords:
    """Reads every value of decoded all-numeric instances into a (features, rows) matrix, in C.

    msgspec encodes a list of instance structs as a msgpack array of maps that all look alike: the same keys
    in field order, each value as the float64 marker and 8 big-endian bytes (the decoder made every value a
    float). After the array header the encoding is therefore n equal records, and a structured numpy dtype
    reads each feature's values without a Python object per value: for a 1000-row batch about a third of
    the time of ``np.fromiter`` over the struct fields (issue 4). The layout is learnt from a probe instance
    at load, and each request's markers and length are checked, so a value encoded any other way is never
    misread: :meth:`columns` returns None instead.
    """

    def __init__(self, dtype: np.dtype[Any], k: int) -> None:
        self.dtype = dtype
        self.k = k
        self._encoder = msgspec.msgpack.Encoder()
        self._fields = [(f"m{i}", f"v{i}") for i in range(k)]

    @classmethod
    def build(cls, instance: type[msgspec.Struct], k: int) -> NumericRecords | None:
        """The reader for ``instance`` structs of ``k`` floats; None if they are not laid out as above."""
        probe = msgspec.msgpack.encode(instance(**{f"f{i}": float(i + 1) for i in range(k)}))
        names: list[str] = []
        formats: list[str] = []
        offsets: list[int] = []
        for i in range(k):
            value = _FLOAT64 + struct.pack(">d", float(i + 1))
            if probe.count(value) != 1:
                return None
            at = probe.index(value)
            names += [f"m{i}", f"v{i}"]
            formats += ["u1", ">f8"]
            offsets += [at, at + 1]
        dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": len(probe)})
        return cls(dtype, k)

    def columns(self, instances: list[Any]) -> npt.NDArray[np.float64] | None:
        """One row per feature, one column per instance; None if the encoding is not the expected one."""
        n = len(instances)
        encoded = self._encoder.encode(instances)
        start = len(encoded) - n * self.dtype.itemsize
        if start != _msgpack_array_header_size(n):
            return None
        records = np.frombuffer(encoded, dtype=self.dtype, offset=start, count=n)
        out = np.empty((self.k, n), dtype=np.float64)
        for i, (marker, value) in enumerate(self._fields):
            if not bool((records[marker] == _FLOAT64[0]).all()):
                return None
            out[i] = records[value]
        return out


def _msgpack_array_header_size(n: int) -> int:
    """Bytes before the first item of a msgpack array of ``n`` items (fixarray, array 16, array 32)."""
    return 1 if n < 16 else 3 if n < 1 << 16 else 5


def issues_detail(
    error: InputError, prefix: Sequence[str | int] = ("body", "instances")
) -> list[dict[str, Any]]:
    """The 422 ``detail``: one ``{"loc", "msg", "type"}`` entry per offending value, like FastAPI's."""
    detail: list[dict[str, Any]] = []
    for issue in error.issues:
        loc: list[str | int] = list(prefix)
        if issue.row is not None:
            loc.append(issue.row)
        if issue.feature is not None:
            loc.append(issue.feature)
        detail.append({"loc": loc, "msg": issue.msg, "type": issue.type})
    if error.total > len(error.issues):
        detail.append(
            {
                "loc": list(prefix),
                "msg": f"{error.total - len(error.issues)} more errors not shown",
                "type": "too_many_errors",
            }
        )
    return detail


def issues_text(error: InputError) -> str:
    """The same errors as one line, for the V2 protocol's ``{"error": "..."}``."""
    parts = []
    for issue in error.issues:
        where = f"input {issue.feature!r}" if issue.feature is not None else "request"
        if issue.row is not None:
            where += f" row {issue.row}"
        parts.append(f"{where}: {issue.msg}")
    if error.total > len(error.issues):
        parts.append(f"{error.total - len(error.issues)} more errors not shown")
    return "; ".join(parts)


# --- V1 records -------------------------------------------------------------------------------------------


def instances_of(payload: Any, max_instances: int) -> list[Any]:
    """``{"instances": [...]}`` or one instance object -> a non-empty list of at most ``max_instances``."""
    if type(payload) is not dict:
        raise InvalidInput('expected {"instances": [{...}, ...]} or one instance object')
    instances = payload.get("instances", [payload])
    if type(instances) is not list:
        raise InvalidInput([{"loc": ["body", "instances"], "msg": "must be a list", "type": "list_type"}])
    if not instances:
        raise InvalidInput([{"loc": ["body", "instances"], "msg": "must not be empty", "type": "too_short"}])
    if len(instances) > max_instances:  # 422, not 413: the body may be small; its content is over a limit
        raise InvalidInput(
            [
                {
                    "loc": ["body", "instances"],
                    "msg": f"too many instances: {len(instances)} in one request, at most {max_instances}",
                    "type": "too_long",
                }
            ]
        )
    return instances


def parse_body(body: bytes) -> Any:
    """A body parsed as JSON (400 if it is not JSON)."""
    try:
        return parse_json(body)
    except BodyError as exc:
        raise BadRequest(exc.message) from None


def invalid_input(error: InputError, *, v2: bool = False) -> InvalidInput:
    """The 422 of an :class:`InputError`: V1's ``{loc, msg, type}`` list, and V2's one-line text."""
    prefix: tuple[str, ...] = ("body", "inputs") if v2 else ("body", "instances")
    return InvalidInput(issues_detail(error, prefix), text=issues_text(error))


def record_columns(validator: Validator, records: Records, max_instances: int) -> Columns:
    """The validated columns of V1 records (a :class:`~.types.Records`): the raw body through the card's
    compiled decoder when it is the common shape, else parsed and checked exactly (422 naming each value)."""
    body = records.body
    if body is not None:
        columns = validator.decode(body, max_instances)
        if columns is not None:
            return columns
        instances = instances_of(parse_body(body), max_instances)
    else:
        instances = records.instances or []
    try:
        return validator.from_instances(instances)
    except InputError as exc:
        raise invalid_input(exc) from None
