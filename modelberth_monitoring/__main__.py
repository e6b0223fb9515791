"""``python -m modelberth_monitoring [--check]``: write (or check) the chart's dashboard JSON files.

python -m modelberth_monitoring          # charts/modelberth/files/dashboards/<name>.json from the code
python -m modelberth_monitoring --check  # exit 1 and name the files that differ from the code (CI)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modelberth_monitoring.dashboards import DASHBOARDS, render

TARGET = Path(__file__).resolve().parents[1] / "charts" / "modelberth" / "files" / "dashboards"
"""The chart's files/ folder: Helm reads only files inside the chart, so the generated JSON lives there."""


def drift(target: Path = TARGET) -> list[str]:
    """Dashboard files in ``target`` that are missing, differ from the code, or have no code (stale)."""
    wanted = {f"{name}.json": render(name) for name in DASHBOARDS}
    present = {p.name for p in target.glob("*.json")}
    out = [f"stale {target / n}" for n in sorted(present - set(wanted))]
    for name, text in sorted(wanted.items()):
        path = target / name
        if not path.is_file():
            out.append(f"missing {path}")
        elif path.read_bytes() != text.encode():
            out.append(f"differs {path}")
    return out


def write(target: Path = TARGET) -> None:
    """Make ``target`` hold exactly the generated dashboards."""
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.json"):
        if stale.stem not in DASHBOARDS:
            stale.unlink()
    for name in DASHBOARDS:
        (target / f"{name}.json").write_bytes(render(name).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelberth_monitoring", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="report drift instead of writing")
    args = parser.parse_args(argv)
    if not args.check:
        write()
        return 0
    problems = drift()
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print("dashboards differ from modelberth_monitoring: run `make dashboards`", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
