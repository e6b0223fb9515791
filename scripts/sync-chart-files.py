#!/usr/bin/env python3
"""Copy Grafana dashboards and alert rules into the chart, which cannot read files outside itself.

    scripts/sync-chart-files.py          # k8s/dashboards/*.json -> charts/modelberth/files/dashboards/
                                         # k8s/alerts/*.yaml     -> charts/modelberth/files/alerts/
    scripts/sync-chart-files.py --check  # exit 1 and name the files when the copies differ (CI)

The copies are byte-for-byte; copies whose source is gone are removed. charts/tests fails on any drift.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIRS = (
    (ROOT / "k8s" / "dashboards", "*.json", ROOT / "charts" / "modelberth" / "files" / "dashboards"),
    (ROOT / "k8s" / "alerts", "*.yaml", ROOT / "charts" / "modelberth" / "files" / "alerts"),
)


def drift(source: Path, pattern: str, target: Path) -> list[str]:
    """Relative paths that are missing, different or stale in ``target``."""
    wanted = {p.name for p in source.glob(pattern)} if source.is_dir() else set()
    present = {p.name for p in target.glob(pattern)} if target.is_dir() else set()
    out = [f"missing {target / n}" for n in sorted(wanted - present)]
    out += [f"stale {target / n}" for n in sorted(present - wanted)]
    out += [
        f"differs {target / n}"
        for n in sorted(wanted & present)
        if not filecmp.cmp(source / n, target / n, shallow=False)
    ]
    return [line.replace(f"{ROOT}/", "") for line in out]


def sync(source: Path, pattern: str, target: Path) -> None:
    """Make ``target`` hold exactly the ``pattern`` files of ``source``."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in source.glob(pattern)} if source.is_dir() else set()
    for stale in target.glob(pattern):
        if stale.name not in wanted:
            stale.unlink()
    for name in sorted(wanted):
        shutil.copyfile(source / name, target / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift instead of fixing it")
    args = parser.parse_args(argv)
    if args.check:
        problems = [line for pair in PAIRS for line in drift(*pair)]
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("chart files are out of date: run `make chart-files`", file=sys.stderr)
        return 1 if problems else 0
    for pair in PAIRS:
        sync(*pair)
    return 0


if __name__ == "__main__":
    sys.exit(main())
