"""``modelberth score``: a file in, a file out, per-row errors, atomic output, shards (issue 19)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_iris

from modelberth_cli import main as cli
from modelberth_core.store import open_store
from modelberth_inference import score_command

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(autouse=True)
def _no_log_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    # The command sends JSON logs to stderr by replacing the root handlers; in-process tests keep pytest's.
    monkeypatch.setattr(score_command, "configure_logging", lambda *_a, **_k: None)


@pytest.fixture
def iris_frame() -> pd.DataFrame:
    frame = load_iris(as_frame=True).frame
    frame.columns = [*FEATURES, "target"]
    frame.insert(0, "id", [f"c{i:04d}" for i in range(len(frame))])
    return frame


def score(store: Path, *args: str) -> int:
    return cli.main(["score", "--store", str(store), "--model", "iris", "--no-progress", *args])


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pandas()
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"id": str})


def pipeline(store: Path) -> Any:
    s = open_store(store)
    resolved = s.resolve("iris")
    return joblib.load(s.fetch(resolved.name, resolved.version) / "model.joblib")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_scores_every_row_like_the_pipeline(
    tiny_model_dir: Path, tmp_path: Path, iris_frame: pd.DataFrame, suffix: str
) -> None:
    src = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        iris_frame.to_csv(src, index=False)
    else:
        iris_frame.to_parquet(src, row_group_size=40)
    out = tmp_path / f"out{suffix}"
    assert score(tiny_model_dir, "--input", str(src), "--output", str(out), "--keep", "id") == 0
    got = read(out)
    model = pipeline(tiny_model_dir)
    proba = model.predict_proba(iris_frame[FEATURES])
    assert list(got.columns) == [
        "id",
        "prediction",
        *[f"proba_{c}" for c in model.classes_],
        "warnings",
        "error",
    ]
    assert got["id"].tolist() == iris_frame["id"].tolist()
    assert got["prediction"].tolist() == model.classes_[proba.argmax(axis=1)].tolist()
    np.testing.assert_allclose(got[[f"proba_{c}" for c in model.classes_]].to_numpy(), proba, rtol=1e-12)
    assert got["error"].isna().all()
    summary = json.loads((tmp_path / f"out{suffix}.summary.json").read_text())
    assert summary["rows"] == 150
    assert summary["errors"] == 0
    assert summary["status"] == "ok"
    # the output repeats input columns: only its owner reads it, like every file holding inputs
    assert out.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / f"out{suffix}.summary.json").stat().st_mode & 0o777 == 0o600
    assert summary["model"] == "iris"
    assert summary["version"]
    assert set(summary["drift_psi"]) == set(FEATURES)
    # iris rows outside the 60 training rows' range are flagged per row, as the API warns
    assert summary["warnings"] == got["warnings"].notna().sum() > 0
    assert got["warnings"].dropna().str.contains("out_of_range").all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_same_bytes_whatever_the_run_and_chunk_size(
    tiny_model_dir: Path, tmp_path: Path, iris_frame: pd.DataFrame, suffix: str
) -> None:
    src = tmp_path / f"in{suffix}"
    iris_frame.to_csv(src, index=False) if suffix == ".csv" else iris_frame.to_parquet(src)
    outs = []
    for run, chunk in enumerate(["100000", "100000", "7"]):
        out = tmp_path / f"out{run}{suffix}"
        assert score(tiny_model_dir, "--input", str(src), "--output", str(out), "--chunk-rows", chunk) == 0
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert read(outs[0]).equals(read(outs[2]))
    if suffix == ".csv":
        assert outs[0].read_bytes() == outs[2].read_bytes()


def test_bad_rows_get_an_error_naming_the_field_and_the_rest_is_scored(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    good = "5.1,3.5,1.4,0.2"
    lines = [
        "id,sepal_length,sepal_width,petal_length,petal_width",
        f"a,{good}",
        "b,abc,3.5,1.4,0.2",  # not a number
        "c,5.1,,1.4,0.2",  # required value empty
        "d,5.1,3.5,nan,0.2",  # not finite
        "e,5.1,3.5,1.4,1e400",  # overflows a double
        "f,1,2",  # ragged: too few fields
        f"g,{good},extra",  # ragged: too many
        f"h,{good}",
    ]
    src = tmp_path / "in.csv"
    body = ("\n".join(lines) + "\n").encode()
    body = body.replace(b"\nh,", b"\n\xffh,")  # bad UTF-8 in a passthrough cell
    body += b"i,5.1,3.5,1.4,\xc3\x28\n"  # bad UTF-8 in a feature
    src.write_bytes(body)
    out = tmp_path / "out.csv"
    assert score(tiny_model_dir, "--input", str(src), "--output", str(out), "--keep", "id") == 0
    got = read(out)
    errors = dict(zip(got["id"].fillna("?"), got["error"], strict=True))
    assert pd.isna(errors["a"])
    assert errors["b"].startswith("sepal_length: expected a number")
    assert errors["c"].startswith("sepal_width: null is not allowed")
    assert errors["d"].startswith("petal_length: must be a finite number")
    assert errors["e"].startswith("petal_width: must be a finite number")
    assert errors["?"] == "id: not valid UTF-8"  # a passthrough cell too: the row cannot be matched
    assert errors["i"] == "petal_width: not valid UTF-8"
    assert got.loc[got["error"].notna(), "prediction"].isna().all()  # a row with an error has no prediction
    assert got.loc[got["error"].isna(), "prediction"].notna().all()
    assert got["id"].fillna("?").tolist() == ["a", "b", "c", "d", "e", "?", "i"]
    summary = json.loads((tmp_path / "out.csv.summary.json").read_text())
    assert summary["rows"] == 7
    assert summary["errors"] == 6
    assert summary["skipped_lines"] == 2
    assert {e.get("line") for e in summary["first_errors"] if "line" in e} == {7, 8}
    # nothing of the input's values is echoed into an error
    assert "abc" not in " ".join(got["error"].dropna())
    assert "1e400" not in out.read_text()


def test_max_error_rate_fails_the_job_without_publishing(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("sepal_length,sepal_width,petal_length,petal_width\n5,3,1,0.2\nx,3,1,0.2\n")
    out = tmp_path / "out.csv"
    assert score(tiny_model_dir, "--input", str(src), "--output", str(out), "--max-error-rate", "0.4") == 3
    assert not out.exists()
    summary = json.loads((tmp_path / "out.csv.summary.json").read_text())
    assert summary["status"] == "too_many_errors"
    assert summary["errors"] == 1
    assert score(tiny_model_dir, "--input", str(src), "--output", str(out), "--max-error-rate", "0.5") == 0
    assert out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_a_column_that_turns_to_text_in_the_middle_gives_row_errors(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = ["5.1,3.5,1.4,0.2"] * 50 + ["5.1,3.5,1.4,high"] * 50
    src = tmp_path / "in.csv"
    src.write_text("sepal_length,sepal_width,petal_length,petal_width\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out.csv"
    assert score(tiny_model_dir, "--input", str(src), "--output", str(out), "--chunk-rows", "10") == 0
    got = read(out)
    assert got["error"].iloc[:50].isna().all()
    assert got["error"].iloc[50:].str.startswith("petal_width: expected a number").all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"sepal_length,sepal_width,petal_length\n1,2,3\n", "required column(s) missing: 'petal_width'"),
        (b"\xff\xfe\x00s\x00e\x00p\n", "header row is not valid UTF-8"),
        (b'"unterminated\n1,2,3,4\n', "empty"),
    ],
)
def test_files_that_cannot_be_scored_say_why(
    tiny_model_dir: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    content: bytes,
    message: str,
) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    out = tmp_path / "out.csv"
    assert score(tiny_model_dir, "--input", str(src), "--output", str(out)) == 2
    err = capfd.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert list(tmp_path.glob("out*")) == []
    assert list(tmp_path.glob(".out*")) == []


def test_header_only_file_gives_an_empty_output(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,sepal_length,sepal_width,petal_length,petal_width\n")
    out = tmp_path / "out.parquet"
    assert score(tiny_model_dir, "--input", str(src), "--output", str(out), "--keep", "id") == 0
    table = pq.read_table(out)
    assert table.num_rows == 0
    assert "prediction" in table.column_names


def test_every_truncation_of_a_parquet_file_is_a_clear_error(
    tiny_model_dir: Path, tmp_path: Path, iris_frame: pd.DataFrame, capfd: pytest.CaptureFixture[str]
) -> None:
    whole = tmp_path / "whole.parquet"
    iris_frame.to_parquet(whole, row_group_size=30)
    data = whole.read_bytes()
    src = tmp_path / "in.parquet"
    out = tmp_path / "out.parquet"
    for cut in sorted({*range(0, len(data), max(len(data) // 40, 1)), len(data) - 1}):
        src.write_bytes(data[:cut])
        assert score(tiny_model_dir, "--input", str(src), "--output", str(out)) == 2, cut
        err = capfd.readouterr().err
        assert "Parquet" in err, (cut, err)  # an exception would have failed the call above
        assert not out.exists()
    # flipped bytes inside the data pages: an error or per-row results, never a traceback or a half file
    for at in range(4, len(data) - 8, max(len(data) // 40, 1)):
        src.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
        code = score(tiny_model_dir, "--input", str(src), "--output", str(out))
        err = capfd.readouterr().err
        assert code in (0, 2), (at, err)
        assert out.exists() == (code == 0)
        out.unlink(missing_ok=True)


def test_usage_errors(tiny_model_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.csv"
    src.write_text("sepal_length,sepal_width,petal_length,petal_width\n1,2,3,4\n")
    out = str(tmp_path / "out.csv")
    assert score(tiny_model_dir, "--input", str(tmp_path / "nope.csv"), "--output", out) == 2
    assert "no such file" in capfd.readouterr().err
    assert cli.main(["score", "--store", str(tiny_model_dir), "--model", "nope", "--input", str(src),
                     "--output", out]) == 2  # fmt: skip
    assert "nope" in capfd.readouterr().err
    assert score(tiny_model_dir, "--input", str(src), "--output", out, "--keep", "id") == 2
    assert "--keep" in capfd.readouterr().err
    for shard in ["2/2", "-1/2", "a/b", "1", "0/0"]:
        assert score(tiny_model_dir, "--input", str(src), "--output", out, f"--shard={shard}") == 2
        assert "--shard" in capfd.readouterr().err


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_shards_concatenated_are_the_one_shot_run(
    tiny_model_dir: Path, tmp_path: Path, iris_frame: pd.DataFrame, suffix: str, shards: int
) -> None:
    src = tmp_path / f"in{suffix}"
    iris_frame.to_csv(src, index=False) if suffix == ".csv" else iris_frame.to_parquet(src, row_group_size=20)
    one = tmp_path / f"one{suffix}"
    assert score(tiny_model_dir, "--input", str(src), "--output", str(one), "--keep", "id") == 0
    parts = tmp_path / "parts"
    for i in range(shards):
        assert score(tiny_model_dir, "--input", str(src), "--output", str(parts), "--keep", "id",
                     "--shard", f"{i}/{shards}") == 0  # fmt: skip
        assert not (parts / "_SUCCESS").exists()
    assert cli.main(["score", "--finalize", str(parts), "--shards", str(shards)]) == 0
    assert (parts / "_SUCCESS").exists()
    files = sorted(parts.glob(f"part-*{suffix}"))
    assert len(files) == shards
    joined = pd.concat([read(f) for f in files], ignore_index=True)
    pd.testing.assert_frame_equal(joined, read(one), check_dtype=False)  # an all-empty part column is untyped
    merged = json.loads((parts / "_summary.json").read_text())
    single = json.loads((tmp_path / f"one{suffix}.summary.json").read_text())
    assert merged["rows"] == 150
    assert merged["drift_psi"] == pytest.approx(single["drift_psi"], abs=1e-5)


def test_finalize_refuses_missing_or_failed_parts(
    tiny_model_dir: Path, tmp_path: Path, iris_frame: pd.DataFrame, capfd: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.csv"
    iris_frame.to_csv(src, index=False)
    parts = tmp_path / "parts"
    assert score(tiny_model_dir, "--input", str(src), "--output", str(parts), "--shard", "0/2") == 0
    assert cli.main(["score", "--finalize", str(parts), "--shards", "2"]) == 1
    assert "part 1: no summary" in capfd.readouterr().err
    assert not (parts / "_SUCCESS").exists()
    assert score(tiny_model_dir, "--input", str(src), "--output", str(parts), "--shard", "1/2") == 0
    next(parts.glob("part-00001.csv")).unlink()  # a part lost after its summary was written
    assert cli.main(["score", "--finalize", str(parts), "--shards", "2"]) == 1
    assert "is missing" in capfd.readouterr().err
    assert not (parts / "_SUCCESS").exists()


def test_drift_flags_a_batch_from_another_population(
    tiny_model_dir: Path, tmp_path: Path, iris_frame: pd.DataFrame
) -> None:
    same, other = tmp_path / "same.csv", tmp_path / "other.csv"
    iris_frame.to_csv(same, index=False)
    shifted = iris_frame.copy()
    shifted[FEATURES] = shifted[FEATURES] * 1.8
    shifted.to_csv(other, index=False)
    for path in (same, other):
        assert score(tiny_model_dir, "--input", str(path), "--output", str(path.with_suffix(".out.csv"))) == 0
    psi_same = json.loads(same.with_suffix(".out.csv.summary.json").read_text())["drift_psi"]
    psi_other = json.loads(other.with_suffix(".out.csv.summary.json").read_text())["drift_psi"]
    assert max(psi_same.values()) < 0.25 < min(psi_other.values())


@pytest.mark.integration
def test_a_killed_run_leaves_no_file_that_looks_complete(tiny_model_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.uniform(0.1, 7.0, size=(400_000, 4)), columns=FEATURES)
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "out.csv"
    env = {**os.environ, "MODELBERTH_STORE": str(tiny_model_dir)}
    cmd = [sys.executable, "-m", "modelberth_cli", "score", "--model", "iris", "--input", str(src),
           "--output", str(out), "--chunk-rows", "2000", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".out.csv.*.partial")) and time.monotonic() < deadline:
            assert proc.poll() is None, "finished before it could be killed; make the file bigger"
            time.sleep(0.01)
        time.sleep(0.2)
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    assert not (tmp_path / "out.csv.summary.json").exists()
    partial = list(tmp_path.glob(".out.csv.*.partial"))
    assert len(partial) == 1
    assert partial[0].name.startswith(".")
    # the same command again completes and publishes the whole file
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
    with out.open() as fh:
        assert sum(1 for _ in fh) == 400_001


@pytest.mark.integration
def test_an_input_url_is_downloaded_and_its_query_never_shown(
    tiny_model_dir: Path, tmp_path: Path, iris_frame: pd.DataFrame, capfd: pytest.CaptureFixture[str]
) -> None:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    site = tmp_path / "site"
    site.mkdir()
    iris_frame.to_parquet(site / "customers.parquet")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        out = tmp_path / "out.csv"
        url = f"{base}/customers.parquet?sig=secret-signature"
        assert score(tiny_model_dir, "--input", url, "--output", str(out), "--keep", "id") == 0
        assert read(out)["id"].tolist() == iris_frame["id"].tolist()
        summary = (tmp_path / "out.csv.summary.json").read_text()
        assert json.loads(summary)["input"] == f"{base}/customers.parquet"
        assert score(tiny_model_dir, "--input", f"{base}/nope.csv?sig=x", "--output", str(out)) == 2
        text = capfd.readouterr()
        assert "HTTP 404" in text.err
        assert "secret-signature" not in text.out + text.err + summary
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("sep", [";", "\t"])
def test_semicolon_and_tab_files_are_read_like_the_trainer_reads_them(
    tiny_model_dir: Path, tmp_path: Path, iris_frame: pd.DataFrame, sep: str
) -> None:
    src = tmp_path / "in.csv"
    iris_frame.to_csv(src, index=False, sep=sep)  # the bank-marketing file is ';'-separated
    out = tmp_path / "out.csv"
    assert score(tiny_model_dir, "--input", str(src), "--output", str(out), "--keep", "id") == 0
    got = read(out)
    assert got["error"].isna().all()
    assert got["id"].tolist() == iris_frame["id"].tolist()
    parts = tmp_path / "parts"
    for i in range(2):
        assert score(tiny_model_dir, "--input", str(src), "--output", str(parts), f"--shard={i}/2") == 0
    joined = pd.concat([read(p) for p in sorted(parts.glob("part-*.csv"))], ignore_index=True)
    assert joined["prediction"].tolist() == got["prediction"].tolist()


def test_without_pyarrow_the_command_says_in_one_line_how_to_install_it(
    tiny_model_dir: Path, tmp_path: Path, iris_frame: pd.DataFrame
) -> None:
    # pyarrow is the `scoring` extra, not in the serving image: hide it as if it were not installed.
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    iris_frame.to_csv(src, index=False)
    code = "import sys; sys.modules['pyarrow'] = None; from modelberth_cli.main import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, "score", "--store", str(tiny_model_dir), "--model", "iris",
            "--input", str(src), "--output", str(out)]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "pip install 'modelberth-inference[scoring]'" in line
    assert not out.exists()


def test_each_row_lists_all_its_warnings_in_feature_order(tiny_model_dir: Path, tmp_path: Path) -> None:
    # One string per distinct set of warnings is built, then repeated: the cells must still be per row.
    rows = [[5.1, 3.5, 1.4, 0.2], [99.0, 3.5, 1.4, 0.2], [99.0, 3.5, 1.4, 99.0], [5.1, 3.5, 1.4, 99.0]]
    frame = pd.DataFrame(rows * 50, columns=FEATURES)
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    frame.to_csv(src, index=False)
    assert score(tiny_model_dir, "--input", str(src), "--output", str(out), "--chunk-rows", "64") == 0
    got = read(out)["warnings"].tolist()
    expected = [
        None,
        "sepal_length: out_of_range",
        "sepal_length: out_of_range; petal_width: out_of_range",
        "petal_width: out_of_range",
    ]
    assert [None if v != v else v for v in got] == expected * 50
    summary = json.loads((tmp_path / "out.csv.summary.json").read_text())
    assert summary["warnings"] == 150


def test_reading_a_csv_buffers_a_bounded_amount_whatever_its_size(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # pyarrow's streaming reader reads up to 32 blocks ahead: with blocks sized by --chunk-rows it held most
    # of a file in memory. The block is capped; the reader's buffer must not grow with the file.
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from modelberth_inference import scoring

    monkeypatch.setattr(scoring, "CSV_BLOCK_BYTES", 1 << 16)
    rng = np.random.default_rng(0)
    table = pa.table({f: np.round(rng.uniform(0, 9, 1_000_000), 2) for f in FEATURES})
    src = tmp_path / "big.csv"
    pacsv.write_csv(table, src)
    del table
    assert src.stat().st_size > 18_000_000
    before = pa.total_allocated_bytes()
    source, _ = scoring.open_source(src, "csv", FEATURES, 50_000, None)
    peak, rows = 0, 0
    for batch in source.batches:
        rows += batch.num_rows
        assert batch.num_rows < 60_000
        peak = max(peak, pa.total_allocated_bytes() - before)
        del batch
    assert rows == 1_000_000
    assert peak < 8_000_000, f"{peak / 1e6:.0f} MB held while reading"


def test_a_terminal_gets_a_progress_bar_with_rate_and_eta(capsys: pytest.CaptureFixture[str]) -> None:
    from modelberth_inference.scoring import _Progress

    bar = _Progress(tty=True, total=5_000_000, estimated=True)
    line = bar.line(2_100_000, 61_000.0, final=False)
    assert line.startswith("[##########--------------]  42% 2,100,000 / ~5,000,000 rows, 61,000 rows/s, ETA ")
    assert line.endswith(" 48 s")
    assert bar.line(5_000_123, 61_000.0, final=True).endswith(
        "100% 5,000,123 / 5,000,123 rows, 61,000 rows/s, done"
    )
    assert "99%" in bar.line(5_200_000, 61_000.0, final=False)  # past an estimate: not done before it is
    bar.update(5_000_123, final=True)
    err = capsys.readouterr().err
    assert err.startswith("\r[")
    assert err.endswith("done\x1b[K\n")


def test_the_summary_names_the_artifact_that_scored(
    tiny_model_dir: Path, tmp_path: Path, iris_frame: pd.DataFrame
) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    iris_frame.to_csv(src, index=False)
    assert score(tiny_model_dir, "--input", str(src), "--output", str(out)) == 0
    summary = json.loads((tmp_path / "out.csv.summary.json").read_text())
    (card,) = tiny_model_dir.glob("iris/*/model.json")
    assert summary["model_sha256"] == json.loads(card.read_text())["model_sha256"]
    assert summary["version"] == card.parent.name


@pytest.mark.integration
def test_a_reader_that_stops_early_is_not_an_error(
    tiny_model_dir: Path, tmp_path: Path, iris_frame: pd.DataFrame
) -> None:
    # `modelberth score ... | head -1`: stdout closes before the summary is printed; the files are complete.
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    iris_frame.to_csv(src, index=False)
    cmd = [sys.executable, "-m", "modelberth_cli", "score", "--store", str(tiny_model_dir),
           "--model", "iris", "--input", str(src), "--output", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert len(read(out)) == 150
