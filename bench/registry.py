"""The registry store against the directory store (issue 15), for iris and the bank-marketing model.

``python -m bench.registry`` trains both models once into a directory (not timed), starts a real registry
(Debian's docker-registry, testkit/registry.py) and, interleaved round by round so both sides see the same
machine load:

- **push**: publishing one version (card checked, files written) into a fresh directory store vs into a
  fresh registry namespace (image built, every blob uploaded, manifest, event, ``latest`` tag); and a
  re-push of the same version, which uploads nothing;
- **cold start**: ``modelberth serve inference`` from process start to ``/readyz`` 200, reading the
  directory vs the registry with an empty cache (the tag resolved, the artifact layer pulled, its digest
  checked, unpacked, then loaded as from a directory).

Medians over ``--rounds`` and their ratio (registry / directory) go to ``bench/results/registry.json`` and
``.md``. Datasets are read in place from ``<repo>/../shared/data``.

    python -m bench.registry [--rounds 5] [--only iris bank]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
MODELS = {
    "iris": ["--dataset", "iris", "--time-budget", "10"],
    "bank": [
        "--data", str(DATA / "bank_marketing" / "bank-full.csv"), "--target", "y", "--drop", "duration",
        "--name", "bank", "--time-budget", "40",
    ],
}  # fmt: skip


def _train(store: Path, name: str) -> None:
    argv = [sys.executable, "-m", "modelberth_cli", "train", "--store", str(store), *MODELS[name]]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode not in (0, 3):
        raise SystemExit(f"training {name} failed ({done.returncode}): {done.stderr[-2000:]}")


def _publish_seconds(store: Any, source: Path) -> float:
    """Publish a copy of ``source`` (a version dir) into ``store``; wall seconds of ``publish`` alone."""
    from modelberth_core import contract

    card = contract.read_card(source)
    with store.staging(card.name) as staged:
        for path in source.iterdir():
            if path.is_file() and not path.name.startswith("."):
                shutil.copy2(path, staged / path.name)
        t0 = time.perf_counter()
        store.publish(staged, card)
        return time.perf_counter() - t0


def _cold_start(location: str, env: dict[str, str], port: int) -> float:
    """Seconds from process start to /readyz 200 for ``serve inference`` on ``location``."""
    full = {**env, "INFERENCE_STORE": location, "INFERENCE_PORT": str(port), "INFERENCE_POLL_SECONDS": "0"}
    full["INFERENCE_GRPC_PORT"] = "0"  # REST only: 8012 may be taken (a local stack, another bench)
    t0 = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "modelberth_cli", "serve", "inference", "--port", str(port)],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"inference on {location} exited {process.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            if time.perf_counter() - t0 > 180:
                raise SystemExit(f"inference on {location} not ready after 180 s")
            time.sleep(0.02)
    finally:
        process.terminate()
        process.wait(30)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are kept")
    parser.add_argument("--only", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args(argv)
    from bench.inference import make_keys
    from modelberth_core.store import FilesystemStore, open_store
    from testkit.registry import available, start_registry
    from testkit.services import free_port

    if not available():
        print("docker-registry not found: apt-get install -y docker-registry", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rounds": args.rounds,
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="modelberth-bench-registry-") as tmp:
        work = Path(tmp)
        trained = work / "trained"
        for name in args.only:
            _train(trained, name)
        registry = start_registry(work / "registry")
        _, jwks_site = make_keys(work)
        jwks_port = free_port()
        jwks = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(jwks_port), "--bind", "127.0.0.1", "--directory",
             str(jwks_site)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("INFERENCE_", "MODELBERTH_", "AUTH_"))
        }
        env["INFERENCE_AUTH_JWKS_URL"] = f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json"
        env["MODELBERTH_STATE_DIR"] = str(work / "state")
        try:
            source = FilesystemStore(trained)
            for name in args.only:
                version_dir = source.fetch(name, source.versions(name)[-1].version)
                size = sum(p.stat().st_size for p in version_dir.iterdir() if p.is_file())
                rows: dict[str, list[float]] = {
                    k: [] for k in ("push_dir", "push_oci", "repush_oci", "cold_dir", "cold_oci")
                }
                for r in range(args.rounds):
                    directory = FilesystemStore(work / f"dir-{name}-{r}")
                    rows["push_dir"].append(_publish_seconds(directory, version_dir))
                    directory.move_alias(name, "champion", version_dir.name, reason="promote")
                    location = registry.location(f"bench/{name}-{r}")
                    oci = open_store(location, cache_dir=work / f"push-cache-{name}-{r}")
                    rows["push_oci"].append(_publish_seconds(oci, version_dir))
                    oci.move_alias(name, "champion", version_dir.name, reason="promote")
                    again = open_store(location, cache_dir=work / f"repush-cache-{name}-{r}")
                    rows["repush_oci"].append(_publish_seconds(again, version_dir))
                    # Cold starts, interleaved; the registry side starts with an empty cache every time.
                    rows["cold_dir"].append(_cold_start(str(directory.root), env, free_port()))
                    cold_env = {**env, "INFERENCE_CACHE_DIR": str(work / f"serve-cache-{name}-{r}")}
                    rows["cold_oci"].append(_cold_start(location, cold_env, free_port()))
                medians = {k: statistics.median(v) for k, v in rows.items()}
                results["models"][name] = {
                    "version": version_dir.name,
                    "artifact_bytes": size,
                    "median_seconds": {k: round(v, 4) for k, v in medians.items()},
                    "rounds_seconds": {k: [round(x, 4) for x in v] for k, v in rows.items()},
                    "ratio_push_registry_to_directory": round(medians["push_oci"] / medians["push_dir"], 2),
                    "ratio_cold_start_registry_to_directory": round(
                        medians["cold_oci"] / medians["cold_dir"], 3
                    ),
                }
                print(json.dumps({name: results["models"][name]["median_seconds"]}), flush=True)
        finally:
            jwks.terminate()
            jwks.wait(10)
            registry.stop()
    (RESULTS / "registry.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Registry store vs directory store (`python -m bench.registry`)",
        "",
        f"{results['when']}, {results['machine']['cpus']} CPUs shared with other work, median of"
        f" {args.rounds} interleaved rounds. Push = `publish()` of one version (registry: image built"
        " and every blob uploaded to a fresh namespace); re-push = the same version again (nothing"
        " uploaded); cold start = `modelberth serve inference` process start to `/readyz` 200"
        " (registry: empty cache).",
        "",
        "| model | artifact | push dir | push registry | ratio | re-push"
        " | cold start dir | cold start registry | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["models"].items():
        m = row["median_seconds"]
        lines.append(
            f"| {name} | {row['artifact_bytes'] / 1e6:.2f} MB | {m['push_dir'] * 1000:.0f} ms |"
            f" {m['push_oci'] * 1000:.0f} ms | {row['ratio_push_registry_to_directory']}x |"
            f" {m['repush_oci'] * 1000:.0f} ms | {m['cold_dir']:.2f} s | {m['cold_oci']:.2f} s |"
            f" {row['ratio_cold_start_registry_to_directory']}x |"
        )
    (RESULTS / "registry.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
