"""Batch scoring (issue 19): ``modelberth score`` against the naive way, and two shards against one.

``python -m bench.score`` trains the bank-marketing model once (not timed), generates files of ``--rows``
and ``--rows // 10`` rows with the bank columns (rows of bank-full.csv resampled with jittered numbers,
written in chunks), then, each in its own single-threaded process (OMP, OpenBLAS, MKL and pyarrow threads
set to 1, so the comparison is fair):

- **score**: ``modelberth score`` of the big file and of the small one (rows/s, peak RSS);
- **naive**: ``pd.read_csv`` of the whole file + ``pipeline.predict_proba`` (rows/s, peak RSS);
- **shards**: ``--shard 0/2`` and ``--shard 1/2`` at the same time vs one process (throughput ratio).

Goals (the issue's): score ≥ 0.9× naive rows/s, peak RSS ≤ 0.25× naive, RSS(big) ≤ 1.2× RSS(small), two
shards ≥ 1.7× one. Results, goals and pass/fail go to ``bench/results/score.json`` and ``.md``. Not part
of ``make test``: the default 5M rows run for minutes on both cores.

    python -m bench.score [--rows 5000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
BANK = DATA / "bank_marketing" / "bank-full.csv"
SINGLE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ARROW_NUM_THREADS": "1",  # pyarrow's CPU pool (read by pyarrow at import)
}
NAIVE = """
import sys, time, joblib, pandas as pd, pyarrow as pa
pa.set_cpu_count(1); pa.set_io_thread_count(1)
start = time.perf_counter()
frame = pd.read_csv(sys.argv[1], sep=";")
pipeline = joblib.load(sys.argv[2])
proba = pipeline.predict_proba(frame.drop(columns=["y"]))
pd.DataFrame(proba).to_csv(sys.argv[3], index=False)
print(time.perf_counter() - start)
"""


def _env() -> dict[str, str]:
    return {**os.environ, **SINGLE_THREAD}


def train(store: Path) -> Path:
    argv = [sys.executable, "-m", "modelberth_core.cli", "train", "--store", str(store),
            "--data", str(BANK), "--target", "y", "--drop", "duration", "--name", "bank",
            "--time-budget", "40", "--no-gate"]  # fmt: skip
    subprocess.run(argv, check=True, env=_env(), capture_output=True)
    (version,) = [p for p in (store / "bank").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    return version


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` rows with the bank columns: bank-full.csv resampled, numbers jittered, in 500k-row chunks."""
    import numpy as np
    import pandas as pd

    base = pd.read_csv(BANK, sep=";")
    rng = np.random.default_rng(seed)
    numeric = base.select_dtypes("number").columns
    written = 0
    with path.open("w", encoding="utf-8") as fh:
        while written < rows:
            n = min(500_000, rows - written)
            chunk = base.iloc[rng.integers(0, len(base), n)].reset_index(drop=True)
            jitter = rng.integers(-2, 3, size=(n, len(numeric)))
            chunk[numeric] = chunk[numeric].to_numpy() + jitter
            chunk.to_csv(fh, sep=";", index=False, header=written == 0)
            written += n


def _timed(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[:6]} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return seconds, usage.ru_maxrss * 1024


def score_argv(store: Path, src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "modelberth_core.cli", "score", "--store", str(store), "--model", "bank",
            "--input", str(src), "--output", str(out), "--no-progress", *extra]  # fmt: skip


def shards(store: Path, src: Path, outdir: Path, n: int) -> float:
    """Wall seconds of n single-threaded shard processes run at once."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            score_argv(store, src, outdir, f"--shard={i}/{n}"),
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(n)
    ]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"shards failed: {codes}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp_text:
        tmp = Path(tmp_text)
        store = tmp / "store"
        version = train(store)
        big, small = tmp / "big.csv", tmp / "small.csv"
        generate(big, args.rows)
        generate(small, max(args.rows // 10, 1))
        score_s, score_rss = _timed(score_argv(store, big, tmp / "out.csv"))
        _, small_rss = _timed(score_argv(store, small, tmp / "small-out.csv"))
        naive_s, naive_rss = _timed(
            [sys.executable, "-c", NAIVE, str(big), str(version / "model.joblib"), str(tmp / "naive.csv")]
        )
        two_s = shards(store, big, tmp / "parts", 2)
    rows = args.rows
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": rows,
        "score": {"seconds": round(score_s, 2), "rows_per_s": round(rows / score_s),
                  "peak_rss_mb": score_rss >> 20},
        "score_small": {"rows": max(rows // 10, 1), "peak_rss_mb": small_rss >> 20},
        "naive": {"seconds": round(naive_s, 2), "rows_per_s": round(rows / naive_s),
                  "peak_rss_mb": naive_rss >> 20},
        "two_shards": {"seconds": round(two_s, 2), "rows_per_s": round(rows / two_s)},
    }  # fmt: skip
    ratios = {
        "throughput_vs_naive": round(naive_s / score_s, 3),
        "rss_vs_naive": round(score_rss / naive_rss, 3),
        "rss_big_vs_small": round(score_rss / small_rss, 3),
        "two_shards_vs_one": round(score_s / two_s, 3),
    }
    goals = {"throughput_vs_naive": (">=", 0.9), "rss_vs_naive": ("<=", 0.25),
             "rss_big_vs_small": ("<=", 1.2), "two_shards_vs_one": (">=", 1.7)}  # fmt: skip
    result["ratios"] = ratios
    result["goals"] = {
        k: {"goal": f"{op} {v}", "met": ratios[k] >= v if op == ">=" else ratios[k] <= v}
        for k, (op, v) in goals.items()
    }
    (RESULTS / "score.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [f"# modelberth score, {rows:,} bank-marketing rows ({result['when']})", "",
             "| measure | value | goal | met |", "|---|---|---|---|"]  # fmt: skip
    for k, g in result["goals"].items():
        lines.append(f"| {k} | {ratios[k]} | {g['goal']} | {'yes' if g['met'] else 'NO'} |")
    shown = {k: result[k] for k in ("score", "score_small", "naive", "two_shards")}
    lines += ["", "```json", json.dumps(shown, indent=2), "```", ""]
    (RESULTS / "score.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
