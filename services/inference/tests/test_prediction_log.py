"""The prediction log never fails a prediction (issue 13, point 3): a full disk is counted, reported once per
interval and shown in /readyz; a path that cannot work is a one-line startup error; the file is 0600, rotates
by size, and records who asked."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from modelberth_inference.app import create_app
from modelberth_inference.prediction_log import (
    MAX_PENDING_ROWS,
    WRITE_EARLY_ROWS,
    PredictionLog,
    PredictionLogError,
    RotatingFile,
    open_prediction_log,
)
from modelberth_inference.settings import Settings
from modelberth_inference.validation import Columns
from testkit.tmpfs import cannot_mount, mount_tmpfs

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
V2 = {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()]}


def _metric(client: TestClient, series: str) -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "the file ends in a whole line"
    return [json.loads(line) for line in text.splitlines()]


def _log(path: Path, **options: Any) -> PredictionLog:
    return open_prediction_log(
        str(path),
        sample_rate=options.pop("sample_rate", 1.0),
        redact=options.pop("redact", frozenset()),
        max_bytes=options.pop("max_bytes", 0),
        backups=options.pop("backups", 3),
        registry=CollectorRegistry(),
    )


def _submit(plog: PredictionLog, rows: int = 1, **fields: Any) -> None:
    columns = Columns(n=rows, data={k: np.full(rows, v) for k, v in ROW.items()})
    plog.submit(
        request_id=fields.get("request_id", "r"),
        model="iris",
        version="v1",
        sub=fields.get("sub", "alice"),
        client_id=fields.get("client_id"),
        columns=columns,
        outputs=["setosa"] * rows,
        latency_seconds=0.001,
    )


# -- the file ---------------------------------------------------------------------------------------


def test_the_file_and_its_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "deeper" / "predictions.jsonl"
    plog = _log(path)
    _submit(plog)
    assert plog.flush()
    plog.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.with_name("predictions.jsonl.lock").stat().st_mode) == 0o600


def test_an_existing_world_readable_file_is_narrowed_to_0600(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"old": 1}\n')
    path.chmod(0o644)
    plog = _log(path)
    plog.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _records(path) == [{"old": 1}]  # appended to, never truncated


def test_rotation_by_size_keeps_whole_lines_in_private_files(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    plog = _log(path, max_bytes=2_000, backups=3)
    for i in range(60):
        _submit(plog, request_id=f"r{i}")
        if i % 7 == 0:
            assert plog.flush()  # several batches, so rotation happens inside and between them
    assert plog.flush()
    plog.close()
    files = sorted(tmp_path.glob("predictions.jsonl*"))
    names = [p.name for p in files]
    assert names == [
        "predictions.jsonl",
        "predictions.jsonl.1",
        "predictions.jsonl.2",
        "predictions.jsonl.3",
        "predictions.jsonl.lock",
    ]
    kept: list[str] = []
    for name in ["predictions.jsonl.3", "predictions.jsonl.2", "predictions.jsonl.1", "predictions.jsonl"]:
        file = tmp_path / name
        assert file.stat().st_size <= 2_000
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        kept += [r["request_id"] for r in _records(file)]
    # The newest records, in order, without a gap: only whole older files were dropped.
    assert kept == [f"r{i}" for i in range(60 - len(kept), 60)]
    assert len(kept) > 20


def test_each_line_records_the_caller(
    make_client: Callable[..., Any], tiny_model_dir: Path, tmp_path: Path, signer: Any
) -> None:
    path = tmp_path / "predictions.jsonl"
    with make_client(tiny_model_dir, prediction_log=str(path)) as client:
        user = signer.headers(sub="alice")
        batch = signer.headers(sub="batch-job", client_id="batch-job")
        assert client.post("/v1/models/iris/predict", json=ROW, headers=user).status_code == 200
        assert client.post("/v2/models/iris/infer", json=V2, headers=batch).status_code == 200
        assert client.post("/v1/models/iris/examples/0/predict", headers=user).status_code == 200
    records = _records(path)
    assert [(r["sub"], r["client_id"]) for r in records] == [
        ("alice", None),
        ("batch-job", "batch-job"),
        ("alice", None),
    ]
    assert records[1]["inputs"] == [ROW]


def test_stdout_target(capfd: pytest.CaptureFixture[str]) -> None:
    plog = open_prediction_log(
        "stdout", sample_rate=1.0, redact=frozenset(), max_bytes=0, backups=1, registry=CollectorRegistry()
    )
    _submit(plog, sub="bob")
    assert plog.flush()
    plog.close()
    assert json.loads(capfd.readouterr().out)["sub"] == "bob"


def test_a_lone_surrogate_in_a_text_value_is_escaped_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    plog = _log(path)
    columns = Columns(n=1, data={"note": np.array(["x\ud800"], dtype=object)})
    plog.submit(
        request_id="r",
        model="m",
        version="v",
        sub="s",
        client_id=None,
        columns=columns,
        outputs=["a"],
        latency_seconds=0.0,
    )
    assert plog.flush()
    plog.close()
    assert _records(path)[0]["inputs"] == [{"note": "x\ud800"}]


# -- a path that cannot work ------------------------------------------------------------------------


def _bad_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("x")
    os.mkfifo(tmp_path / "a-fifo")
    return {
        "directory": (tmp_path / "a-dir", "is a directory; give a file path"),
        "under a regular file": (tmp_path / "a-file" / "predictions.jsonl", "is a file, not a directory"),
        "deeper under a regular file": (tmp_path / "a-file" / "x" / "p.jsonl", "is a file, not a directory"),
        "fifo": (tmp_path / "a-fifo", "is neither a regular file nor a character device"),
    }


@pytest.mark.parametrize("case", ["directory", "under a regular file", "deeper under a regular file", "fifo"])
def test_a_path_that_cannot_work_is_one_clear_error(tmp_path: Path, case: str) -> None:
    path, message = _bad_paths(tmp_path)[case]
    with pytest.raises(PredictionLogError) as error:
        _log(path)
    assert str(error.value).startswith(f"prediction log {path}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_read_only_file_system_is_a_startup_error(tmp_path: Path) -> None:
    mount_dir = tmp_path / "ro"
    mount_dir.mkdir()
    unmount = mount_tmpfs(mount_dir, "size=64k", "ro")
    if unmount is None:
        cannot_mount("a read-only file system")
    try:
        with pytest.raises(PredictionLogError, match="Read-only file system"):
            _log(mount_dir / "predictions.jsonl")
    finally:
        unmount()


def test_a_second_writer_on_the_same_file_is_refused(tmp_path: Path) -> None:
    """Two processes rotating one file would lose records; the lock (flock, per open file) says so."""
    path = tmp_path / "predictions.jsonl"
    first = _log(path)
    with pytest.raises(PredictionLogError, match="another process is writing it"):
        _log(path)
    first.close()
    _log(path).close()  # released on close


def test_create_app_raises_and_the_factory_exits_with_one_line(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(PredictionLogError):
        create_app(Settings(model_dir=tiny_model_dir, prediction_log=str(tmp_path)))
    monkeypatch.setenv("INFERENCE_PREDICTION_LOG", str(tmp_path))
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exited:
        create_app()
    assert exited.value.code == 3
    assert [r.getMessage() for r in caplog.records] == [
        f"prediction log {tmp_path}: is a directory; give a file path, e.g. {tmp_path}/predictions.jsonl "
        "(INFERENCE_PREDICTION_LOG)"
    ]
    monkeypatch.setenv("INFERENCE_PREDICTION_LOG", "")
    monkeypatch.setenv("INFERENCE_PREDICTION_LOG_BACKUPS", "0")
    caplog.clear()
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit):
        create_app()
    assert [r.getMessage() for r in caplog.records] == [
        "invalid settings: INFERENCE_PREDICTION_LOG_BACKUPS: Input should be greater than or equal to 1"
    ]


# -- a bad day --------------------------------------------------------------------------------------


def test_a_full_disk_never_fails_a_prediction(
    make_client: Callable[..., Any], tiny_model_dir: Path, full_disk: Any, signer: Any
) -> None:
    path = full_disk.path / "predictions.jsonl"
    with make_client(tiny_model_dir, prediction_log=str(path)) as client:
        for _ in range(3):
            assert (
                client.post("/v1/models/iris/predict", json=ROW, headers=signer.headers()).status_code == 200
            )
            assert client.post("/v2/models/iris/infer", json=V2, headers=signer.headers()).status_code == 200
        assert client.app.state.dataplane.prediction_log.flush()  # type: ignore[attr-defined]
        ready = client.get("/readyz")
        dropped = _metric(client, 'modelberth_inference_prediction_log_dropped_total{reason="write_error"}')
    assert ready.status_code == 200
    status = ready.json()["prediction_log"]
    assert status["status"] == "failing"
    assert status["last_error"] == "ENOSPC: No space left on device"
    assert str(full_disk.path) not in ready.text
    assert dropped == 6.0


def test_writes_resume_when_space_comes_back_and_the_file_holds_whole_lines(
    make_client: Callable[..., Any], tiny_model_dir: Path, full_disk: Any, signer: Any
) -> None:
    if full_disk.filler is None:
        cannot_mount("freeing space again (/dev/full stays full)")
    path = full_disk.path / "predictions.jsonl"
    full_disk.free()
    # Leave room for a couple of records only, so one write is cut short mid-line by the kernel.
    with (full_disk.path / "filler").open("wb", buffering=0) as fh:
        fh.write(b"\0" * (64 * 1024 - 2 * 4096))
    big = {"instances": [ROW] * 40}
    with make_client(tiny_model_dir, prediction_log=str(path)) as client:
        plog = client.app.state.dataplane.prediction_log  # type: ignore[attr-defined]
        for _ in range(6):
            assert (
                client.post("/v1/models/iris/predict", json=big, headers=signer.headers()).status_code == 200
            )
            assert plog.flush()
        assert client.get("/readyz").json()["prediction_log"]["status"] == "failing"
        kept = _records(path)  # whole lines only, though the disk filled up in the middle of one
        (full_disk.path / "filler").unlink()
        assert client.post("/v1/models/iris/predict", json=ROW, headers=signer.headers()).status_code == 200
        assert plog.flush()
        assert client.get("/readyz").json()["prediction_log"] == {"status": "ok"}
        written = _metric(client, "modelberth_inference_prediction_log_written_total")
        dropped = _metric(client, 'modelberth_inference_prediction_log_dropped_total{reason="write_error"}')
    records = _records(path)
    assert records[: len(kept)] == kept
    assert len(records) == len(kept) + 1
    assert written == len(records)
    assert dropped is not None
    assert written + dropped == 7


def test_failures_are_logged_once_per_interval(full_disk: Any, caplog: pytest.LogCaptureFixture) -> None:
    plog = PredictionLog(
        RotatingFile(full_disk.path / "predictions.jsonl", 0, 1),
        sample_rate=1.0,
        redact=frozenset(),
        registry=CollectorRegistry(),
        failure_log_seconds=0.3,
    )
    with caplog.at_level(logging.ERROR, logger="modelberth.inference.prediction_log"):
        for _ in range(5):
            _submit(plog)
            assert plog.flush()
        first = len(caplog.records)
        time.sleep(0.35)
        _submit(plog)
        assert plog.flush()
    plog.close()
    assert first == 1
    assert len(caplog.records) == 2
    assert caplog.records[1].__dict__["dropped_records"] == 5  # the 4 unreported ones and this one


class _StalledDisk:
    """A sink whose writes hang until released: a disk that stopped answering."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lines = 0

    def write_lines(self, lines: list[bytes]) -> int:
        self.release.wait(10)
        self.lines += len(lines)
        return len(lines)

    def close(self) -> None:
        return


def test_a_stalled_disk_bounds_the_queue_and_counts_what_it_drops() -> None:
    registry = CollectorRegistry()
    disk = _StalledDisk()
    plog = PredictionLog(disk, sample_rate=1.0, redact=frozenset(), registry=registry)
    # The writer holds at most one batch (at most a full queue) while the disk hangs, the queue one more.
    submitted = 2 * (MAX_PENDING_ROWS // 1000) + 50
    started = time.perf_counter()
    for _ in range(submitted):
        _submit(plog, rows=1000)
    assert time.perf_counter() - started < 2.0, "submitting never waits for the disk"
    dropped = registry.get_sample_value(
        "modelberth_inference_prediction_log_dropped_total", {"reason": "queue_full"}
    )
    assert dropped is not None
    assert dropped >= 50
    disk.release.set()
    assert plog.flush()
    plog.close()
    assert disk.lines + dropped == submitted


class _CountingSink:
    """A sink that remembers the size of each write."""

    def __init__(self) -> None:
        self.writes: list[int] = []

    def write_lines(self, lines: list[bytes]) -> int:
        self.writes.append(len(lines))
        return len(lines)

    def close(self) -> None:
        return


def _counted(write_seconds: float) -> tuple[PredictionLog, _CountingSink]:
    sink = _CountingSink()
    plog = PredictionLog(
        sink, sample_rate=1.0, redact=frozenset(), registry=CollectorRegistry(), write_seconds=write_seconds
    )
    return plog, sink


def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_burst_of_records_is_one_write_not_one_wake_up_each() -> None:
    plog, sink = _counted(write_seconds=60.0)
    for _ in range(50):
        _submit(plog)
    time.sleep(0.1)
    assert sink.writes == [], "the writer gathers; requests do not wake it one by one"
    assert plog.flush(timeout=10)
    assert sink.writes == [50]
    plog.close()


def test_records_are_written_within_the_interval_without_a_flush(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    plog = PredictionLog(
        RotatingFile(path, 0, 1),
        sample_rate=1.0,
        redact=frozenset(),
        registry=CollectorRegistry(),
        write_seconds=0.05,
    )
    _submit(plog, request_id="soon")
    assert _eventually(lambda: path.stat().st_size > 0)
    assert [r["request_id"] for r in _records(path)] == ["soon"]
    plog.close()


def test_a_big_queue_wakes_the_writer_before_the_interval() -> None:
    plog, sink = _counted(write_seconds=60.0)
    _submit(plog, rows=WRITE_EARLY_ROWS)
    assert _eventually(lambda: sink.writes == [1])
    plog.close()


def test_close_writes_what_is_gathering_without_waiting_out_the_interval() -> None:
    plog, sink = _counted(write_seconds=60.0)
    for _ in range(3):
        _submit(plog)
    started = time.monotonic()
    plog.close(timeout=30)
    assert time.monotonic() - started < 30
    assert sum(sink.writes) == 3


def test_sampling(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    plog = _log(path, sample_rate=0.0)
    for _ in range(20):
        _submit(plog)
    assert plog.flush()
    plog.close()
    assert _records(path) == []
