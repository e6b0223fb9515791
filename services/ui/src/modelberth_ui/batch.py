"""Batch prediction from an uploaded CSV: check rows against the card, predict in chunks, report bad rows.

Rows are numbered from 1 (the first line after the header). A row that cannot be sent (a required value
missing, text in a number column, the wrong number of cells) is listed with the reason before anything is
sent. A chunk the service rejects with a 422 that names instances is re-sent without them; a 422 that
names none is split in halves until the bad rows are isolated, so one bad row never costs the others.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelberth_core.contract import ModelCard
from modelberth_ui.client import InvalidInputError, ModelberthClient, PayloadTooLargeError
from modelberth_ui.inputs import as_float, convert_value
from modelberth_ui.notices import Notice, notices_by_row
from modelberth_ui.settings import Settings

Row = tuple[int, dict[str, Any]]
"""A 1-based row number and the instance to send for it."""


class BatchRefusedError(Exception):
    """The whole file is refused (too big, not CSV, columns missing); the message says why."""


@dataclass(frozen=True)
class BatchLimits:
    """Limits on one upload and on each prediction request made for it."""

    max_bytes: int
    max_rows: int
    chunk_rows: int
    chunk_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> BatchLimits:
        """The limits configured by ``UI_MAX_UPLOAD_BYTES`` and friends."""
        return cls(
            settings.max_upload_bytes,
            settings.max_batch_rows,
            settings.batch_chunk_rows,
            settings.batch_chunk_bytes,
        )


@dataclass(frozen=True)
class Rejection:
    """A row that was not predicted, the field at fault (if known) and why."""

    row: int
    field: str | None
    reason: str


@dataclass(frozen=True)
class ParsedBatch:
    """A CSV checked against the card."""

    rows: list[Row]
    cells: dict[int, dict[str, str]]
    """The uploaded cells of every data row (feature columns only), by row number."""
    rejected: list[Rejection]
    notes: list[str]


@dataclass(frozen=True)
class RowResult:
    """The service's answer for one row."""

    prediction: Any
    probabilities: dict[str, float] | None
    notices: list[Notice]


@dataclass(frozen=True)
class BatchOutcome:
    """Predictions by row number, rows the service rejected, and how many requests it took."""

    results: dict[int, RowResult]
    rejected: list[Rejection]
    requests: int

    @property
    def predicted(self) -> int:
        """Rows that got a prediction."""
        return len(self.results)


@dataclass(frozen=True)
class BatchTables:
    """Everything the Batch tab shows."""

    message: str
    results: pd.DataFrame
    rejected: pd.DataFrame
    distribution: pd.DataFrame
    csv_path: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)


def human_bytes(size: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def read_csv(path: Path, card: ModelCard, limits: BatchLimits) -> ParsedBatch:
    """Read and check an uploaded CSV; raise :class:`BatchRefusedError` when the whole file is unusable."""
    reader = csv.reader(io.StringIO(_read_text(path, limits), newline=""))
    header = _read_header(reader)
    notes = _check_header(header, card)
    rows: list[Row] = []
    cells: dict[int, dict[str, str]] = {}
    rejected: list[Rejection] = []
    number = 0
    try:
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue  # blank lines are not rows
            number += 1
            if number > limits.max_rows:
                raise BatchRefusedError(
                    f"The file has more than {limits.max_rows} rows. Split it into smaller files."
                )
            values = dict(zip(header, record, strict=False))
            cells[number] = {f.name: values.get(f.name, "") for f in card.features}
            if len(record) != len(header):
                reason = f"has {len(record)} values, the header has {len(header)}"
                rejected.append(Rejection(number, None, reason))
                continue
            instance, problems = _convert_row(number, values, card)
            if problems:
                rejected.extend(problems)
            else:
                rows.append((number, instance))
    except csv.Error as exc:
        raise BatchRefusedError(f"Line {reader.line_num} is not valid CSV ({exc}).") from exc
    if number == 0:
        raise BatchRefusedError("The file has a header but no rows.")
    return ParsedBatch(rows, cells, rejected, notes)


def _read_text(path: Path, limits: BatchLimits) -> str:
    """The file's text, refused when it is too large or not UTF-8 (a BOM is dropped)."""
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise BatchRefusedError(
            f"The file is {human_bytes(size)}, above the {human_bytes(limits.max_bytes)} limit. "
            "Split it into smaller files."
        )
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchRefusedError("The file is not UTF-8 text. Save it as CSV (UTF-8) and try again.") from exc


def _read_header(reader: Iterator[list[str]]) -> list[str]:
    try:
        return [name.strip() for name in next(reader)]
    except StopIteration as exc:
        raise BatchRefusedError("The file is empty.") from exc
    except csv.Error as exc:
        raise BatchRefusedError(f"The header line is not valid CSV ({exc}).") from exc


def _check_header(header: list[str], card: ModelCard) -> list[str]:
    """Refuse a header without every required feature or with a column twice; notes on the others."""
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise BatchRefusedError(f"Columns appear twice: {', '.join(duplicates)}.")
    missing = [f.name for f in card.features if f.name not in header]
    required_missing = [f.name for f in card.features if f.required and f.name in missing]
    if required_missing:
        raise BatchRefusedError(
            f"Missing column(s): {', '.join(required_missing)}. The header must name the model's "
            f"features: {', '.join(card.feature_names)}."
        )
    notes: list[str] = []
    if missing:
        notes.append(f"Optional column(s) not in the file, sent as empty: {', '.join(missing)}.")
    ignored = [name for name in header if name not in card.feature_names]
    if ignored:
        notes.append(f"Ignored column(s): {', '.join(ignored)}.")
    return notes


def _convert_row(
    number: int, values: dict[str, str], card: ModelCard
) -> tuple[dict[str, Any], list[Rejection]]:
    """One row's instance, and a rejection per value that does not fit its feature."""
    instance: dict[str, Any] = {}
    problems: list[Rejection] = []
    for feature in card.features:
        value, problem = convert_value(feature, values.get(feature.name))
        if problem:
            problems.append(Rejection(number, feature.name, problem))
        instance[feature.name] = value
    return instance, problems


def chunks(rows: list[Row], limits: BatchLimits) -> Iterator[list[Row]]:
    """Consecutive groups of at most ``chunk_rows`` rows and about ``chunk_bytes`` of JSON."""
    chunk: list[Row] = []
    size = 0
    for row in rows:
        row_size = len(json.dumps(row[1], default=str)) + 1
        if chunk and (len(chunk) >= limits.chunk_rows or size + row_size > limits.chunk_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += row_size
    if chunk:
        yield chunk


def predict_rows(
    client: ModelberthClient, token: str, card: ModelCard, rows: list[Row], limits: BatchLimits
) -> BatchOutcome:
    """Predict ``rows`` chunk by chunk; rows the service rejects are listed, the rest predicted."""
    results: dict[int, RowResult] = {}
    rejected: list[Rejection] = []
    pending = list(chunks(rows, limits))
    requests = 0
    while pending:
        chunk = pending.pop(0)
        requests += 1
        try:
            response = client.predict(token, card.name, [instance for _, instance in chunk])
        except InvalidInputError as exc:
            located: dict[int, list[Rejection]] = {}
            for problem in exc.problems:
                if problem.row is not None and 0 <= problem.row < len(chunk):
                    rejection = Rejection(chunk[problem.row][0], problem.field, problem.message)
                    located.setdefault(problem.row, []).append(rejection)
            if located:
                for found in located.values():
                    rejected.extend(found)
                rest = [row for i, row in enumerate(chunk) if i not in located]
                if rest:
                    pending.insert(0, rest)
            elif len(chunk) == 1:
                fields = [p.field for p in exc.problems if p.field]
                rejected.append(Rejection(chunk[0][0], fields[0] if fields else None, exc.message))
            else:
                half = len(chunk) // 2
                pending[0:0] = [chunk[:half], chunk[half:]]
            continue
        except PayloadTooLargeError:
            if len(chunk) == 1:
                rejected.append(Rejection(chunk[0][0], None, "the row is too large for the service"))
            else:
                half = len(chunk) // 2
                pending[0:0] = [chunk[:half], chunk[half:]]
            continue
        notices = notices_by_row(response.warnings, len(chunk), card.feature_names)
        probabilities = response.probabilities or []
        for i, (number, _) in enumerate(chunk):
            probs = probabilities[i] if i < len(probabilities) else None
            results[number] = RowResult(response.predictions[i], probs, notices[i])
    return BatchOutcome(results, rejected, requests)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection)."""
PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A decimal number as text: a spreadsheet reads it as that number, never as a formula."""


def spreadsheet_safe(value: Any) -> Any:
    """``value`` as a spreadsheet cell that cannot run: text starting with ``= + - @``, a tab or a carriage
    return gets a leading ``'`` (OWASP); numbers, also ``"-1.5"`` as text, stay numbers (issue 13, point 6).
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


PREVIEW_ROWS = 1000
"""Rows of results shown in the page; the download holds all of them."""
RESULTS_MAX_AGE_SECONDS = 3600
"""Result files older than this are deleted when a new one is written."""


def prune_old_files(directory: Path, max_age_seconds: float = RESULTS_MAX_AGE_SECONDS) -> None:
    """Delete result CSVs older than ``max_age_seconds`` (the pod's /tmp is a size-limited emptyDir)."""
    cutoff = time.time() - max_age_seconds
    for path in directory.glob("*-predictions-*.csv"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            continue  # another request removed it first


def present(card: ModelCard, parsed: ParsedBatch, outcome: BatchOutcome, out_dir: Path) -> BatchTables:
    """The results table, the rejected rows, the class distribution and a CSV of every row."""
    rejected = sorted([*parsed.rejected, *outcome.rejected], key=lambda r: (r.row, r.field or ""))
    classes = list(card.classes or [])
    records: list[dict[str, Any]] = []
    for number in sorted(parsed.cells):
        result = outcome.results.get(number)
        record: dict[str, Any] = {"row": number}
        if result is not None:
            record["prediction"] = result.prediction
            for name in classes:
                p = (result.probabilities or {}).get(name)
                record[f"p({name})"] = round(p, 6) if p is not None else None
            record["warnings"] = "; ".join(
                f"{n.feature}: {n.message}" if n.feature else n.message for n in result.notices
            )
            record["error"] = ""
        else:
            reasons = [f"{r.field}: {r.reason}" if r.field else r.reason for r in rejected if r.row == number]
            record["error"] = "; ".join(reasons) or "not predicted"
        record.update(parsed.cells[number])
        records.append(record)
    columns = ["row", "prediction", *[f"p({c})" for c in classes], "warnings", "error", *card.feature_names]
    everything = pd.DataFrame.from_records(records, columns=columns)
    predicted = everything[everything["error"] == ""].drop(columns=["error"])
    rejected_frame = pd.DataFrame(
        {
            "row": [r.row for r in rejected],
            "field": [r.field or "" for r in rejected],
            "reason": [r.reason for r in rejected],
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    prune_old_files(out_dir)
    # A random name: the results folder is one gradio may serve from, so no name may be guessable.
    csv_path = out_dir / f"{card.name}-{card.version}-predictions-{uuid.uuid4().hex}.csv"
    # Every cell, the header too: uploaded cells, feature names, class labels and messages all come from
    # outside and end up in a spreadsheet. CRLF line ends (RFC 4180) also make the writer quote a cell
    # holding a lone CR, which would otherwise start a new row (and a formula) in the middle of a cell.
    safe = everything.rename(columns=spreadsheet_safe).map(spreadsheet_safe)
    safe.to_csv(csv_path, index=False, lineterminator="\r\n")
    bad_rows = len({r.row for r in rejected})
    total = len(parsed.cells)
    lines = [f"**Predicted {outcome.predicted} of {total} rows.**"]
    if bad_rows:
        lines.append(f"{bad_rows} row(s) could not be predicted: see *Rejected rows* below.")
    if outcome.predicted > PREVIEW_ROWS:
        lines.append(f"The table shows the first {PREVIEW_ROWS} predictions; the download has them all.")
    lines.extend(parsed.notes)
    return BatchTables(
        "\n\n".join(lines),
        predicted.head(PREVIEW_ROWS),
        rejected_frame,
        distribution(card, [r.prediction for r in outcome.results.values()]),
        csv_path,
        {"rows": total, "predicted": outcome.predicted, "rejected": bad_rows},
    )


def distribution(card: ModelCard, predictions: list[Any]) -> pd.DataFrame:
    """Rows per predicted class (every class, in model order), or a 10-bin histogram for regression."""
    if card.task == "classification":
        classes = list(card.classes or [])
        counts = dict.fromkeys(classes, 0)
        for prediction in predictions:
            counts[str(prediction)] = counts.get(str(prediction), 0) + 1
        return pd.DataFrame({"class": list(counts), "rows": list(counts.values())})
    values = [v for v in (as_float(p) for p in predictions) if v is not None]
    if not values:
        return pd.DataFrame({"class": [], "rows": []})
    counts_array, edges = np.histogram(np.asarray(values), bins=10)
    labels = [f"{edges[i]:.4g} – {edges[i + 1]:.4g}" for i in range(len(counts_array))]
    return pd.DataFrame({"class": labels, "rows": [int(c) for c in counts_array]})
