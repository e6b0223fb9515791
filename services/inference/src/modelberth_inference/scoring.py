"""Offline batch scoring: a CSV or Parquet file in, a file out, in bounded memory (issue 19).

The input is read in chunks with pyarrow; each chunk goes through the API's :class:`Validator` (per row:
a bad row gets an ``error`` naming the field and is not predicted, the others are), the loaded model's
``predict`` and the service's drift bins. The output is written under a hidden temporary name and renamed
when complete, so a killed run never leaves a file that looks whole. ``--shard i/n`` scores one contiguous
slice (Parquet row groups, or a CSV byte range aligned to line starts) into ``part-<i>`` of a directory;
``finalize`` checks the parts, merges their summaries and writes ``_SUCCESS``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelberth_inference.drift import BatchDrift, psi
from modelberth_inference.model import LoadedModel
from modelberth_inference.validation import MISSING, Issue, Validator

log = logging.getLogger("modelberth.inference.scoring")

DEFAULT_CHUNK_ROWS: Final = 100_000
"""Rows per chunk: about 100 MB of Python values for a 20-column table, whatever the file's size."""
ERRORS_IN_SUMMARY: Final = 100
"""Bad rows listed in the summary (all are counted; every one has its ``error`` cell in the output)."""
ERROR_COLUMN: Final = "error"
WARNINGS_COLUMN: Final = "warnings"
PREDICTION_COLUMN: Final = "prediction"
PROBABILITY_PREFIX: Final = "proba_"
SUCCESS_FILE: Final = "_SUCCESS"
CSV_BLOCK_BYTES: Final = 1 << 20
"""Largest CSV block parsed at once. pyarrow's streaming reader reads up to 32 blocks ahead on its I/O
thread (whatever the consumer's pace), so the block size, not the file's, bounds that buffer: 1 MiB blocks
are joined into chunks of ``chunk_rows`` (8 MiB blocks held a 256 MiB read-ahead, the RSS grew with the
file up to that)."""


class ScoreInputError(Exception):
    """The file cannot be scored at all (unreadable, empty, a required column missing): nothing written."""


@dataclass(slots=True)
class Shard:
    """Part ``index`` of ``count`` (0-based, as a Kubernetes Indexed Job counts)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``i/n`` with ``0 <= i < n``."""
        head, sep, tail = text.partition("/")
        try:
            index, count = int(head), int(tail)
        except ValueError:
            index, count = -1, 0
        if not sep or count < 1 or not 0 <= index < count:
            raise ValueError(f"expected i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
        return cls(index, count)


@dataclass(slots=True)
class Summary:
    """What a run did; written as ``<output>.summary.json`` (or ``part-<i>.summary.json``)."""

    model: str
    version: str
    digest: str | None
    """The registry's manifest digest of the version (None in a directory store)."""
    input: str
    output: str
    model_sha256: str | None = None
    """The SHA-256 of the artifact that scored, from its card (any store)."""
    shard: str | None = None
    rows: int = 0
    errors: int = 0
    skipped_lines: int = 0
    warnings: int = 0
    seconds: float = 0.0
    status: str = "ok"
    drift_psi: dict[str, float] = field(default_factory=dict)
    drift_rows: int = 0
    drift_counts: dict[str, list[int]] = field(default_factory=dict)
    drift_expected: dict[str, list[float]] = field(default_factory=dict)
    first_errors: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The summary's JSON object."""
        return {name: getattr(self, name) for name in self.__slots__}


# -- reading -------------------------------------------------------------------------------------------


class _RangeReader(io.RawIOBase):
    """The CSV header line followed by bytes ``[start, end)`` of a file: what one shard parses."""

    def __init__(self, path: Path, header: bytes, start: int, end: int) -> None:
        self._fh = path.open("rb")
        self._fh.seek(start)
        self._header = header
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._header:
            n = min(len(view), len(self._header))
            view[:n] = self._header[:n]
            self._header = self._header[n:]
            return n
        if self._left <= 0:
            return 0
        data = self._fh.read(min(len(view), self._left))
        self._left -= len(data)
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._fh.close()
        super().close()


def _line_start_at_or_after(fh: BinaryIO, offset: int, size: int) -> int:
    """The first line start at or after ``offset`` (``size`` if none)."""
    if offset <= 0:
        return 0
    fh.seek(offset - 1)
    while True:
        block = fh.read(1 << 16)
        if not block:
            return size
        at = block.find(b"\n")
        if at >= 0:
            return fh.tell() - len(block) + at + 1


def csv_byte_range(path: Path, shard: Shard) -> tuple[bytes, int, int]:
    """The header line and the ``[start, end)`` byte range of ``shard``'s rows: the file's body split in
    ``count`` equal parts, each moved to the next line start, so parts in index order are the whole file.
    (A quoted value holding a newline can break that alignment; such files are scored without --shard.)"""
    size = path.stat().st_size
    with path.open("rb") as fh:
        header = fh.readline()
        body = fh.tell()
        span = size - body

        def cut(k: int) -> int:
            return _line_start_at_or_after(fh, body + span * k // shard.count, size) if k else body

        start = cut(shard.index)
        end = cut(shard.index + 1) if shard.index + 1 < shard.count else size
    if header and not header.endswith(b"\n"):
        header += b"\n"
    return header, start, max(start, end)


@dataclass(slots=True)
class _Source:
    batches: Iterator[pa.RecordBatch]
    total_rows: int | None
    skipped: list[int]
    estimated: bool = False
    """``total_rows`` is an estimate (a CSV: its bytes over the first MiB's bytes per line)."""


DELIMITERS: Final = (b",", b";", b"\t")


def sniff_delimiter(path: Path) -> str:
    """``,``, ``;`` or tab: whichever the header line holds most of (``,`` on a tie), as the trainer reads."""
    with path.open("rb") as fh:
        first = fh.readline(1 << 20)
    best = max(DELIMITERS, key=lambda d: (first.count(d), d == b","))
    return best.decode()


def _csv_header(path: Path, delimiter: str) -> list[str]:
    """The column names of the header line (parsed alone: the rows' faults are per-row errors later)."""
    with path.open("rb") as fh:
        first = fh.readline(1 << 20)
    if not first.strip():
        raise ScoreInputError(f"{path}: the file is empty (no header row)")
    try:
        first.decode("utf-8")
        table = pacsv.read_csv(
            io.BytesIO(first),
            read_options=pacsv.ReadOptions(autogenerate_column_names=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
        )
    except UnicodeDecodeError:
        raise ScoreInputError(f"{path}: the header row is not valid UTF-8") from None
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise ScoreInputError(f"{path}: the file is empty (no header row)") from None
        raise ScoreInputError(f"{path}: not a readable CSV file ({_arrow_message(exc)})") from None
    return list(table.column_names)


def _arrow_message(exc: Exception) -> str:
    """The kind of error pyarrow saw, without the rest of its message, which can quote the input's bytes
    ("Expected 5 columns, got 3: <the row>"): nothing from the file is repeated."""
    lines = str(exc).splitlines()
    return ": ".join(lines[0].split(": ")[:2])[:200] if lines else type(exc).__name__


def open_source(
    path: Path,
    fmt: str,
    needed: list[str],
    chunk_rows: int,
    shard: Shard | None,
    delimiter: str | None = None,
) -> tuple[_Source, list[str]]:
    """Batches of ``needed`` columns (CSV: as bytes, decoded per value later) and the file's column names."""
    if fmt == "parquet":
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise ScoreInputError(f"{path}: not a readable Parquet file ({_arrow_message(exc)})") from None
        names = list(pf.schema_arrow.names)
        present = [c for c in needed if c in names]
        groups = list(range(pf.num_row_groups))
        if shard is not None:  # contiguous row groups, so parts in index order are the input's order
            n = len(groups)
            groups = groups[n * shard.index // shard.count : n * (shard.index + 1) // shard.count]
        total = sum(pf.metadata.row_group(g).num_rows for g in groups)
        batches = _parquet_batches(path, pf, chunk_rows, groups, present) if groups else iter(())
        return _Source(batches, total, []), names
    delimiter = delimiter or sniff_delimiter(path)
    names = _csv_header(path, delimiter)
    present = [c for c in needed if c in names]
    skipped: list[int] = []

    def ragged(row: Any) -> str:
        skipped.append(row.number if row.number is not None else -1)  # in a shard: within its range
        return "skip"

    with path.open("rb") as fh:  # the CSV block that holds about chunk_rows rows, at most CSV_BLOCK_BYTES
        sample = fh.read(1 << 20)
    lines = max(sample.count(b"\n"), 1)
    block = max(1 << 16, min(CSV_BLOCK_BYTES, int(len(sample) / lines * chunk_rows)))
    stream: Any = path
    span = path.stat().st_size - len(sample.split(b"\n", 1)[0])
    if shard is not None:
        header, start, end = csv_byte_range(path, shard)
        stream = io.BufferedReader(_RangeReader(path, header, start, end), 1 << 20)
        span = end - start
    estimate = round(span / (len(sample) / lines)) if sample else 0
    try:
        reader = pacsv.open_csv(
            stream,
            # One thread: the parse knows each skipped line's number, and Indexed Job pods get one core each.
            read_options=pacsv.ReadOptions(block_size=block, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=ragged),
            convert_options=pacsv.ConvertOptions(
                include_columns=present,
                column_types={c: pa.binary() for c in present},
                null_values=[""],  # only an empty cell is missing: "NA" may be a category
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):  # a shard whose range holds no row
            return _Source(iter(()), 0, skipped), names
        raise ScoreInputError(f"{path}: not a readable CSV file ({_arrow_message(exc)})") from None
    return _Source(_csv_batches(path, reader, chunk_rows), estimate, skipped, estimated=True), names


def _parquet_batches(
    path: Path, pf: pq.ParquetFile, chunk_rows: int, groups: list[int], columns: list[str]
) -> Iterator[pa.RecordBatch]:
    try:
        yield from pf.iter_batches(batch_size=chunk_rows, row_groups=groups, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ScoreInputError(f"{path}: Parquet read error ({_arrow_message(exc)})") from None


def _csv_batches(path: Path, reader: pacsv.CSVStreamingReader, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """The parsed blocks joined into chunks of about ``chunk_rows`` rows."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as exc:
            raise ScoreInputError(f"{path}: CSV parse error ({_arrow_message(exc)})") from None
        pending.append(batch)
        rows += batch.num_rows
        if rows >= chunk_rows:
            yield pa.concat_batches(pending)
            pending, rows = [], 0
    if pending:
        yield pa.concat_batches(pending)


def _decode(array: pa.Array) -> tuple[list[Any], list[int]]:
    """Python values of one column; binary (CSV) cells decoded as UTF-8, rows that are not UTF-8 as None
    and listed."""
    if not pa.types.is_binary(array.type):
        return array.to_pylist(), []
    try:
        return array.cast(pa.string()).to_pylist(), []
    except pa.ArrowInvalid:
        values: list[Any] = []
        bad: list[int] = []
        for i, raw in enumerate(array.to_pylist()):
            try:
                values.append(None if raw is None else raw.decode("utf-8"))
            except UnicodeDecodeError:
                values.append(None)
                bad.append(i)
        return values, bad


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


def _text_column(array: pa.Array) -> tuple[npt.NDArray[np.object_], list[int]] | None:
    """A text column (CSV bytes, Parquet strings or dictionary) as an object array in which equal values
    are one ``str`` object, None for an empty cell: each distinct value is decoded once, and hashing the
    column later (the validator's category check, drift bins, the model's encoder) costs once per distinct
    value. Also the rows whose bytes are not UTF-8 (None there). None for a column that is not text."""
    if pa.types.is_dictionary(array.type):
        encoded = array
    elif _is_text(array.type):
        encoded = pc.dictionary_encode(array)
    else:
        return None
    dictionary = encoded.dictionary
    if not _is_text(dictionary.type):
        return None
    objects = np.empty(len(dictionary) + 1, dtype=object)  # the last entry (None) stands for an empty cell
    bad: list[int] = []
    for i, raw in enumerate(dictionary.to_pylist()):
        if type(raw) is bytes:
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(i)
                raw = None
        objects[i] = raw
    indices = encoded.indices.fill_null(len(dictionary)).to_numpy(zero_copy_only=False)
    values: npt.NDArray[np.object_] = objects[indices]
    rows = np.flatnonzero(np.isin(indices, bad)).tolist() if bad else []
    return values, rows


def _numbers(values: list[Any]) -> list[Any]:
    """CSV text of a numeric feature as numbers; text that is not a number stays text (the validator
    then names the row), an empty cell is null."""
    out: list[Any] = []
    for v in values:
        if type(v) is str:
            try:
                out.append(float(v))
            except ValueError:
                out.append(v)
        else:
            out.append(v)
    return out


def _numeric_column(array: pa.Array) -> Any:
    """A whole column of numbers as a float64 array (values, with no empty cell) or a list (None for an
    empty cell); None when a cell is not a number (the caller then converts value by value)."""
    if pa.types.is_binary(array.type):
        try:
            array = pc.cast(array.cast(pa.string()), pa.float64())
        except pa.ArrowException:
            return None
    elif not (pa.types.is_floating(array.type) or pa.types.is_integer(array.type)):
        return None
    if array.null_count:
        return array.to_pylist()
    return array.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


# -- scoring -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ScoreOptions:
    """What ``modelberth score`` was asked for."""

    input: Path
    output: Path
    shown_input: str | None = None
    """What the summary calls the input (a URL without its query, not the downloaded file)."""
    keep: list[str] = field(default_factory=list)
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    max_error_rate: float = 1.0
    shard: Shard | None = None
    input_format: str | None = None
    output_format: str | None = None
    delimiter: str | None = None
    """The input CSV's separator; None sniffs ``,``, ``;`` or tab from the header. The output uses ``,``."""
    progress: bool = False


def file_format(path: Path, explicit: str | None) -> str:
    """``csv`` or ``parquet``: the flag, else the suffix (``.parquet``/``.pq``), else CSV."""
    if explicit:
        return explicit
    return "parquet" if path.suffix.lower() in {".parquet", ".pq"} else "csv"


class Scorer:
    """Scores chunks of one file with one loaded model version."""

    def __init__(self, model: LoadedModel, options: ScoreOptions) -> None:
        self.model = model
        self.options = options
        card = model.card
        # The API's validator; each row's warnings come from its uncapped ``warning_rows``, so it builds
        # none of the per-warning objects a response lists.
        self.validator = Validator(card.features, model.validator.max_text_length, max_warnings=0)
        self.specs = {f.name: f for f in card.features}
        self.drift = BatchDrift(card.features, card.reference_profile)
        self.classes = list(model.classes) if card.task != "regression" else []
        self.proba_columns = [f"{PROBABILITY_PREFIX}{c}" for c in self.classes] if model.has_proba else []

    def output_schema(self, keep_types: dict[str, pa.DataType]) -> pa.Schema:
        """Passthrough columns, prediction, probabilities, warnings, error."""
        regression = self.model.card.task == "regression"
        fields = [pa.field(name, keep_types[name]) for name in self.options.keep]
        fields.append(pa.field(PREDICTION_COLUMN, pa.float64() if regression else pa.string()))
        fields += [pa.field(name, pa.float64()) for name in self.proba_columns]
        fields += [pa.field(WARNINGS_COLUMN, pa.string()), pa.field(ERROR_COLUMN, pa.string())]
        return pa.schema(fields)

    def score(self, batch: pa.RecordBatch, first_row: int, summary: Summary) -> pa.RecordBatch:
        """One chunk's output rows, in input order. The happy path is whole-column work; only rows with a
        problem (an error or a warning) cost Python per row."""
        n = batch.num_rows
        row_errors: dict[int, list[str]] = {}
        undecoded: set[tuple[int, str]] = set()  # (row, feature) cells already reported as not UTF-8
        columns = self._feature_columns(batch, row_errors, undecoded)
        keep = {name: self._keep_column(batch.column(name), name, row_errors) for name in self.options.keep}
        issues: list[Issue] = []
        validated = self.validator.check(columns, n, issues)
        for issue in issues:
            if issue.row is not None and (issue.row, issue.feature) not in undecoded:
                row_errors.setdefault(issue.row, []).append(f"{issue.feature}: {issue.msg}")
        index: npt.NDArray[np.intp] | None = None  # the rows predicted, when not all of them
        if row_errors:  # validate and predict the other rows; never predict on unchecked rows
            good = np.ones(n, dtype=bool)
            good[list(row_errors)] = False
            index = np.flatnonzero(good)
            subset = {k: _take(v, index) for k, v in columns.items()}
            validated = self.validator.check(subset, len(index), issues := [])
            if issues:  # cannot happen: the rows that failed were removed
                raise RuntimeError("validation of the remaining rows failed")
        m = n if index is None else len(index)
        prediction: pa.Array = pa.nulls(m, self._prediction_type())
        proba = np.full((m, len(self.proba_columns)), np.nan)
        warnings: pa.Array = pa.nulls(m, pa.string())
        if m:
            out = self.model.predict(validated.data)
            prediction = pa.array(out.predictions, self._prediction_type())
            if out.proba is not None and self.proba_columns:
                proba = out.proba
            if out.invalid_rows is not None:
                rows = out.invalid_rows if index is None else index[out.invalid_rows]
                for i in rows.tolist():
                    row_errors.setdefault(i, []).append("the model's output is not a finite number")
            self.drift.update(validated.data, m)
            warnings, warned = _warning_cells(validated.warning_rows, m)
            summary.warnings += warned
        errors: list[str | None] = [None] * n if row_errors else []
        for i in sorted(row_errors):
            errors[i] = "; ".join(row_errors[i])
            if len(summary.first_errors) < ERRORS_IN_SUMMARY:
                summary.first_errors.append({"row": first_row + i, "error": errors[i]})
        summary.errors += len(row_errors)
        summary.rows += n
        # Back to one entry per input row: the predicted rows' outputs, null for a row with an error.
        position = np.full(n, -1, dtype=np.int64)
        position[np.arange(n) if index is None else index] = np.arange(m)
        if row_errors:
            position[list(row_errors)] = -1
        arrays: list[pa.Array] = [keep[name] for name in self.options.keep]
        arrays += _spread([prediction, *_proba_arrays(proba), warnings], position, m)
        arrays.append(pa.array(errors, pa.string()) if row_errors else pa.nulls(n, pa.string()))
        return pa.RecordBatch.from_arrays(arrays, schema=self.output_schema({k: keep[k].type for k in keep}))

    def _prediction_type(self) -> pa.DataType:
        return pa.float64() if self.model.card.task == "regression" else pa.string()

    def _feature_columns(
        self, batch: pa.RecordBatch, row_errors: dict[int, list[str]], undecoded: set[tuple[int, str]]
    ) -> dict[str, Any]:
        """Each feature's column as the validator takes it: a float64 array of numbers, an object array
        of strings, or values one by one where a cell needs a per-row verdict."""
        columns: dict[str, Any] = {}
        present = set(batch.schema.names)
        for name, spec in self.specs.items():
            if name not in present:
                columns[name] = [MISSING] * batch.num_rows
                continue
            array = batch.column(name)
            values: Any = _numeric_column(array) if spec.type == "numeric" else _text_column(array)
            if values is None:
                values, bad = _decode(array)
                if spec.type == "numeric" and pa.types.is_binary(array.type):
                    values = _numbers(values)
            elif spec.type != "numeric":
                values, bad = values
            else:
                bad = []
            for i in bad:
                row_errors.setdefault(i, []).append(f"{name}: not valid UTF-8")
                undecoded.add((i, name))
            columns[name] = values
        return columns

    @staticmethod
    def _keep_column(array: pa.Array, name: str, row_errors: dict[int, list[str]]) -> pa.Array:
        """A passthrough column unchanged; CSV bytes as UTF-8 text (a row that is not UTF-8: null there,
        and an error naming the column)."""
        if not pa.types.is_binary(array.type):
            return array
        try:
            return array.cast(pa.string())
        except pa.ArrowInvalid:
            values, bad = _decode(array)
            for i in bad:
                row_errors.setdefault(i, []).append(f"{name}: not valid UTF-8")
            return pa.array(values, pa.string())


def _take(values: Any, index: npt.NDArray[np.intp]) -> Any:
    if isinstance(values, np.ndarray):
        return values[index]
    return [values[i] for i in index.tolist()]


def _proba_arrays(proba: npt.NDArray[np.float64]) -> list[pa.Array]:
    return [pa.array(np.ascontiguousarray(proba[:, j])) for j in range(proba.shape[1])]


def _spread(arrays: list[pa.Array], position: npt.NDArray[np.int64], m: int) -> list[pa.Array]:
    """Arrays of ``m`` predicted rows as arrays of every input row: row ``i`` takes entry ``position[i]``,
    null where that is -1 (a row with an error). Unchanged when every row was predicted, in order."""
    if len(position) == m and (m == 0 or bool((position == np.arange(m)).all())):
        return arrays
    take = pa.array(position, mask=position < 0)
    return [array.take(take) for array in arrays]


def _warning_cells(rows: dict[tuple[str, str], npt.NDArray[np.intp]], n: int) -> tuple[pa.Array, int]:
    """The ``warnings`` cell of each of ``n`` rows ("age: out_of_range; job: unseen_category", in feature
    order; null without a warning) and how many rows have one. Each row's set of warnings is a bit
    pattern; one string is built per distinct pattern, not per row."""
    if not rows:
        return pa.nulls(n, pa.string()), 0
    keys = list(rows)
    words = (len(keys) + 61) // 62
    bits = np.zeros((n, words), dtype=np.int64)
    for j, key in enumerate(keys):
        bits[rows[key], j // 62] |= np.int64(1) << (j % 62)
    if words == 1:  # one integer per row (up to 62 kinds of warning): a plain, fast unique
        flat, inverse = np.unique(bits[:, 0], return_inverse=True)
        patterns = flat.reshape(-1, 1)
    else:
        patterns, inverse = np.unique(bits, axis=0, return_inverse=True)
    texts: list[str | None] = []
    for pattern in patterns.tolist():
        found = [f"{f}: {k}" for j, (f, k) in enumerate(keys) if pattern[j // 62] >> (j % 62) & 1]
        texts.append("; ".join(found) or None)
    cells = pa.array(texts, pa.string()).take(pa.array(inverse.reshape(-1)))
    return cells, int(bits.any(axis=1).sum())


class _Writer:
    """CSV or Parquet, to a hidden temporary file next to the target; :meth:`commit` renames it."""

    def __init__(self, target: Path, fmt: str) -> None:
        self.target = target
        self.fmt = fmt
        self.tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        self._writer: Any = None
        self._schema: pa.Schema | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._schema = batch.schema
            _create_private(self.tmp)
            if self.fmt == "parquet":
                self._writer = pq.ParquetWriter(self.tmp, batch.schema)
            else:
                self._writer = pacsv.CSVWriter(
                    self.tmp, batch.schema, write_options=pacsv.WriteOptions(quoting_style="needed")
                )
        self._writer.write_batch(batch)

    def commit(self, schema: pa.Schema) -> None:
        if self._writer is None:  # no row at all: still a well-formed file with the header
            self.write(pa.RecordBatch.from_pylist([], schema))
        self._writer.close()
        with self.tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.target)
        _fsync_dir(self.target.parent)

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the file is removed whatever closing it raised
                self._writer.close()
        self.tmp.unlink(missing_ok=True)


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (the output repeats input columns); writers keep the mode."""
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, written under a temporary name and renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.unlink(missing_ok=True)
    _create_private(tmp)
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class _Progress:
    """A progress bar on stderr (a terminal): rows, rows/s and ETA; else a JSON log line every ~10 s."""

    WIDTH: Final = 24

    def __init__(self, tty: bool, total: int | None, estimated: bool = False) -> None:
        self.tty = tty
        self.total = total
        self.estimated = estimated
        self.start = self.last = time.perf_counter()

    def line(self, rows: int, rate: float, final: bool) -> str:
        """``[#####-------] 42% 2,100,000 / ~5,000,000 rows, 61,000 rows/s, ETA 47 s``."""
        if not self.total:
            return f"{rows:,} rows, {rate:,.0f} rows/s"
        share = 1.0 if final else min(rows / self.total, 0.99)
        filled = round(share * self.WIDTH)
        total = rows if final else self.total
        eta = "done" if final else f"ETA {max(self.total - rows, 0) / max(rate, 1e-9):,.0f} s"
        approx = "~" if self.estimated and not final else ""
        return (
            f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] {share:4.0%} {rows:,} / {approx}{total:,} rows, "
            f"{rate:,.0f} rows/s, {eta}"
        )

    def update(self, rows: int, final: bool = False) -> None:
        now = time.perf_counter()
        rate = rows / max(now - self.start, 1e-9)
        if self.tty:
            if not final and now - self.last < 0.2:
                return
            sys.stderr.write(f"\r{self.line(rows, rate, final)}\x1b[K")  # erase what a longer line left
            if final:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif final or now - self.last >= 10:
            extra: dict[str, Any] = {"rows": rows, "rows_per_second": round(rate)}
            extra["total"] = rows if final else self.total
            if self.total and not final:
                extra["eta_seconds"] = round(max(self.total - rows, 0) / max(rate, 1e-9))
                extra["total_is_estimate"] = self.estimated
            log.info("done" if final else "progress", extra=extra)
        self.last = now


def run(model: LoadedModel, digest: str | None, options: ScoreOptions) -> tuple[Summary, bool]:
    """Score ``options.input`` into ``options.output`` (or ``part-<i>`` of it); the summary, and whether
    the error rate stayed within ``max_error_rate`` (else the output is not published)."""
    start = time.perf_counter()
    in_fmt = file_format(options.input, options.input_format)
    shard = options.shard
    if shard is not None:
        options.output.mkdir(parents=True, exist_ok=True)
        out_fmt = options.output_format or in_fmt
        target = options.output / f"part-{shard.index:05d}.{'parquet' if out_fmt == 'parquet' else 'csv'}"
    else:
        out_fmt = file_format(options.output, options.output_format)
        target = options.output
    summary = Summary(
        model=model.name,
        version=model.version,
        digest=digest,
        input=options.shown_input or str(options.input),
        output=str(target),
        model_sha256=model.card.model_sha256,
        shard=f"{shard.index}/{shard.count}" if shard else None,
    )
    if not options.input.is_file():
        raise ScoreInputError(f"{options.input}: no such file")
    scorer = Scorer(model, options)
    features = [f.name for f in model.card.features]
    source, names = open_source(
        options.input,
        in_fmt,
        [*features, *[k for k in options.keep if k not in features]],
        options.chunk_rows,
        shard,
        options.delimiter,
    )
    missing_keep = [k for k in options.keep if k not in names]
    if missing_keep:
        raise ScoreInputError(f"{options.input}: no column {', '.join(map(repr, missing_keep))} to --keep")
    missing = [f.name for f in model.card.features if f.required and f.name not in names]
    if missing:
        shown = ", ".join(map(repr, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ScoreInputError(f"{options.input}: required column(s) missing: {shown}")
    writer = _Writer(target, out_fmt)
    progress = _Progress(options.progress, source.total_rows, source.estimated)
    keep_types: dict[str, pa.DataType] = {}
    try:
        for batch in source.batches:
            if batch.num_rows == 0:
                continue
            out = scorer.score(batch, summary.rows, summary)
            keep_types = {k: out.schema.field(k).type for k in options.keep}
            writer.write(out)
            progress.update(summary.rows)
        progress.update(summary.rows, final=True)
        summary.skipped_lines = len(source.skipped)
        for line in source.skipped[: max(ERRORS_IN_SUMMARY - len(summary.first_errors), 0)]:
            summary.first_errors.append({"line": line, "error": "wrong number of fields; row skipped"})
        summary.drift_psi = {k: round(v, 6) for k, v in scorer.drift.values().items()}
        summary.drift_rows = scorer.drift.rows
        summary.drift_counts = scorer.drift.counts()
        summary.drift_expected = scorer.drift.expected()
        bad = summary.errors + summary.skipped_lines
        total = summary.rows + summary.skipped_lines
        within = not total or bad / total <= options.max_error_rate
        summary.seconds = round(time.perf_counter() - start, 3)
        if not within:
            summary.status = "too_many_errors"
            writer.abort()
        else:
            if not keep_types:
                keep_types = {k: pa.string() for k in options.keep}
            writer.commit(scorer.output_schema(keep_types))
    except BaseException:
        writer.abort()
        raise
    write_json_atomic(target.with_name(target.name + ".summary.json"), summary.as_json())
    return summary, within


def finalize(directory: Path, shards: int) -> dict[str, Any]:
    """Check that every part and its summary are there and complete, merge the summaries into
    ``_summary.json`` and write ``_SUCCESS``; raise :class:`ScoreInputError` naming what is missing."""
    parts: list[dict[str, Any]] = []
    problems: list[str] = []
    for i in range(shards):
        found = sorted(directory.glob(f"part-{i:05d}.*.summary.json"))
        if len(found) != 1:
            problems.append(f"part {i}: {'no summary' if not found else 'several summaries'}")
            continue
        data = json.loads(found[0].read_text(encoding="utf-8"))
        if data.get("status") != "ok" or data.get("shard") != f"{i}/{shards}":
            problems.append(f"part {i}: status {data.get('status')!r}, shard {data.get('shard')!r}")
        elif not Path(data["output"]).is_file():
            problems.append(f"part {i}: {data['output']} is missing")
        parts.append(data)
    if problems:
        raise ScoreInputError("; ".join(problems))
    first = parts[0]
    if len({(p["model"], p["version"], p["input"]) for p in parts}) != 1:
        raise ScoreInputError("the parts were scored from different models or inputs")
    merged: dict[str, Any] = {
        "model": first["model"],
        "version": first["version"],
        "digest": first["digest"],
        "model_sha256": first.get("model_sha256"),
        "input": first["input"],
        "parts": [p["output"] for p in parts],
        "rows": sum(p["rows"] for p in parts),
        "errors": sum(p["errors"] for p in parts),
        "skipped_lines": sum(p["skipped_lines"] for p in parts),
        "warnings": sum(p["warnings"] for p in parts),
        "seconds": round(max(p["seconds"] for p in parts), 3),
    }
    drift: dict[str, list[int]] = {}
    for p in parts:
        for name, counts in p["drift_counts"].items():
            drift[name] = [a + b for a, b in zip(drift.get(name, [0] * len(counts)), counts, strict=True)]
    rows = sum(p["drift_rows"] for p in parts)
    expected = first["drift_expected"]
    merged["drift_rows"] = rows
    merged["drift_psi"] = {
        name: round(psi(np.asarray(c, dtype=np.int64), rows, np.asarray(expected[name])), 6)
        for name, c in drift.items()
        if rows and name in expected
    }
    write_json_atomic(directory / "_summary.json", merged)
    (directory / SUCCESS_FILE).write_bytes(b"")
    return merged
