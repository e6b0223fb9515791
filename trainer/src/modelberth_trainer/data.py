"""Reading the training data: CSV/TSV files (separator sniffed) or scikit-learn's bundled datasets.

Everything here turns bad input into :class:`DataError` with a one-line message naming the problem.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from modelberth_trainer.errors import DataError
from modelberth_trainer.settings import BUNDLED_DATASETS, TrainerSettings

MISSING_MARKERS = ["?", "NA", "N/A", "n/a", "", "null", "NULL", "None", "nan", "NaN"]
"""Cell values read as missing (on top of pandas' defaults)."""
SEPARATORS = (",", ";", "\t")
SNIFF_LINES = 50

BUNDLED_TARGETS = {
    "iris": "species",
    "wine": "cultivar",
    "breast_cancer": "diagnosis",
    "diabetes": "progression",
}


@dataclass(frozen=True)
class Table:
    """One input table and where it came from."""

    frame: pd.DataFrame
    source: str
    sha256: str
    stem: str
    default_target: str


def snake_case(name: str) -> str:
    """``sepal length (cm)`` -> ``sepal_length_cm``."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def sanitise_name(text: str) -> str:
    """A model name matching the contract's NAME_PATTERN, derived from a dataset name or file stem."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:63]
    return name or "model"


def load_bundled(name: str) -> Table:
    """A bundled scikit-learn dataset as a frame with snake_case feature names and string class names."""
    from sklearn import datasets

    if name not in BUNDLED_DATASETS:
        raise DataError(f"unknown dataset {name!r} (choose from {', '.join(BUNDLED_DATASETS)})")
    loader = getattr(datasets, f"load_{name}")
    bunch = loader(as_frame=True)
    features = bunch.data.rename(columns=snake_case)
    target_name = BUNDLED_TARGETS[name]
    if name == "diabetes":
        target = bunch.target.astype(float)
    else:
        target = pd.Series(np.asarray(bunch.target_names)[bunch.target.to_numpy()], dtype=object)
    frame = features.assign(**{target_name: target.to_numpy()})
    digest = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
    return Table(frame, f"sklearn:{name}", digest, name, target_name)


def _decode(raw: bytes, path: Path) -> str:
    if not raw.strip():
        raise DataError(f"{path}: the file is empty")
    if b"\x00" in raw[:65536]:
        raise DataError(f"{path}: unreadable encoding (binary or UTF-16 data); save it as UTF-8 text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: unreadable encoding (not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start});"
            " save it as UTF-8"
        ) from None


def sniff_separator(text: str) -> str:
    """The separator among ``,`` ``;`` and tab that splits the first lines into the most, equal fields."""
    lines = [line for line in text.splitlines()[:SNIFF_LINES] if line.strip()]
    best, best_key = ",", (False, 0)
    for sep in SEPARATORS:
        counts = [len(row) for row in csv.reader(lines, delimiter=sep)]
        consistent = len(set(counts)) == 1 and counts[0] > 1
        key = (consistent, counts[0] if counts else 0)
        if key > best_key:
            best, best_key = sep, key
    return best


def read_table(path: Path, *, no_header: bool = False, columns: list[str] | None = None) -> Table:
    """Read a CSV/TSV file: sniff the separator, treat ``?``/``NA``/empty as missing, strip blanks."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    text = _decode(raw, path)
    sep = sniff_separator(text)
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=None if no_header else "infer",
            na_values=MISSING_MARKERS,
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot parse as CSV ({first})") from None
    if columns:
        if len(columns) != frame.shape[1]:
            raise DataError(
                f"{path}: --columns names {len(columns)} columns but the file has {frame.shape[1]}"
            )
        frame.columns = pd.Index(columns)
    elif no_header:
        frame.columns = pd.Index([f"column_{i + 1}" for i in range(frame.shape[1])])
    frame.columns = pd.Index([str(c).strip() for c in frame.columns])
    if frame.columns.duplicated().any():
        dupes = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise DataError(f"{path}: duplicate column names {dupes}")
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    frame = normalise_strings(frame)
    return Table(frame, str(path), hashlib.sha256(raw).hexdigest(), path.stem, str(frame.columns[-1]))


def normalise_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Strip blanks in text cells, turn missing markers left inside quotes into NaN, parse numeric text."""
    out = frame.copy()
    for col in out.columns:
        series = out[col]
        if pd.api.types.is_bool_dtype(series):
            out[col] = series.astype(str).astype(object)
            continue
        if pd.api.types.is_numeric_dtype(series):
            continue
        stripped = series.astype(object).where(series.isna(), series.astype(str).str.strip())
        stripped = stripped.where(~stripped.isin(MISSING_MARKERS), np.nan)
        numeric = pd.to_numeric(stripped, errors="coerce")
        if stripped.notna().any() and numeric.notna().sum() == stripped.notna().sum():
            out[col] = numeric.astype(float)
        else:
            out[col] = stripped.astype(object)
    return out


def _checked(path: Path, sha256: str | None) -> Path:
    if sha256 is not None:
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != sha256.lower():
            raise DataError(f"{path}: sha256 {actual} does not match --data-sha256 {sha256.lower()}")
    return path


def load_input(settings: TrainerSettings) -> tuple[Table, Table | None]:
    """The training table and, with ``test_data``, the user's test table (same columns)."""
    if settings.data is not None:
        try:
            path = _checked(settings.data, settings.data_sha256)
        except OSError as exc:
            raise DataError(f"{settings.data}: cannot read ({exc.strerror})") from None
        table = read_table(path, no_header=settings.no_header, columns=settings.columns)
    elif settings.data_url is not None:
        from modelberth_core.download import DownloadError, download, shown

        with tempfile.TemporaryDirectory(prefix="modelberth-data-") as tmp:
            try:
                path = download(settings.data_url, Path(tmp), sha256=settings.data_sha256)
            except DownloadError as exc:
                raise DataError(str(exc)) from None
            table = read_table(path, no_header=settings.no_header, columns=settings.columns)
        table = replace(table, source=shown(settings.data_url))
    else:
        table = load_bundled(settings.dataset)
    test = None
    if settings.test_data is not None:
        test = read_table(settings.test_data, no_header=settings.no_header, columns=settings.columns)
        missing = [c for c in table.frame.columns if c not in test.frame.columns]
        if missing:
            raise DataError(f"{settings.test_data}: test data lacks columns {missing}")
    return table, test
