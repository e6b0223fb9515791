"""Reading input files and bundled datasets: separators, headers, missing markers, numbers, names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelberth_trainer.data import load_bundled, read_table, sanitise_name, snake_case, sniff_separator
from modelberth_trainer.errors import DataError


@pytest.mark.parametrize(
    ("text", "sep"),
    [
        ('"a";"b";"c"\n1;"x";3\n', ";"),
        ("a,b,c\n1,x,3\n", ","),
        ("a\tb\tc\n1\tx, y\t3\n", "\t"),
        ('"ID","LIMIT_BAL","SEX"\n1,5e+05,2\n', ","),
    ],
)
def test_sniff_separator_picks_the_consistent_one(text: str, sep: str) -> None:
    assert sniff_separator(text) == sep


def test_read_table_quoted_header_missing_markers_and_scientific_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('"age";"job";"limit";"y"\n30;"admin.";5e+05;"no"\n?;NA;1e3;"yes"\n41;;2.5;"no"\n')
    table = read_table(path)
    frame = table.frame
    assert list(frame.columns) == ["age", "job", "limit", "y"]
    assert frame["limit"].tolist() == [500000.0, 1000.0, 2.5]
    assert np.isnan(frame.loc[1, "age"])
    assert frame["job"].isna().tolist() == [False, True, True]
    assert table.default_target == "y"
    assert len(table.sha256) == 64


def test_read_table_without_header_names_columns_and_strips_leading_space(tmp_path: Path) -> None:
    path = tmp_path / "atis.csv"
    path.write_text("atis_flight, i want to fly\natis_airfare, how much is it\n")
    frame = read_table(path, no_header=True, columns=["intent", "text"]).frame
    assert list(frame.columns) == ["intent", "text"]
    assert frame["text"].tolist() == ["i want to fly", "how much is it"]


def test_read_table_wrong_number_of_column_names(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="names 2 columns but the file has 3"):
        read_table(path, no_header=True, columns=["a", "b"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"  \n\n", "empty"),
        (b"a,b\n", "no data rows"),
        ("a,b\n\xe9t\xe9,1\n".encode("latin-1"), "unreadable encoding"),
        ("a,b\n1,2\n".encode("utf-16"), "unreadable encoding"),
    ],
)
def test_read_table_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_bundled_datasets_use_snake_case_features_and_class_names() -> None:
    iris = load_bundled("iris")
    assert list(iris.frame.columns[:4]) == [
        "sepal_length_cm",
        "sepal_width_cm",
        "petal_length_cm",
        "petal_width_cm",
    ]
    assert set(iris.frame["species"]) == {"setosa", "versicolor", "virginica"}
    assert iris.source == "sklearn:iris"
    cancer = load_bundled("breast_cancer")
    assert set(cancer.frame["diagnosis"]) == {"malignant", "benign"}
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_bundled("nope")


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("UCI_Credit_Card", "uci_credit_card"),
        ("bank-full", "bank-full"),
        ("My Data!!", "my-data"),
        ("__", "model"),
    ],
)
def test_sanitise_name_matches_the_contract(raw: str, name: str) -> None:
    assert sanitise_name(raw) == name


def test_snake_case() -> None:
    assert snake_case("sepal length (cm)") == "sepal_length_cm"
    assert snake_case("od280/od315_of_diluted_wines") == "od280_od315_of_diluted_wines"
