"""Where a run came from: the library versions it used and the git commit of the trainer's checkout."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn

from modelberth_core import contract


def versions() -> contract.Versions:
    """Library versions this run uses."""
    try:
        ours = version("modelberth-trainer")
    except PackageNotFoundError:
        ours = "0+unknown"
    return contract.Versions(
        python=platform.python_version(),
        sklearn=sklearn.__version__,
        pandas=pd.__version__,
        numpy=np.__version__,
        modelberth=ours,
    )


def git_sha() -> str | None:
    """The commit the trainer runs from, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None
