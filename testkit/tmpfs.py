"""Small real file systems for bad-day tests: a tmpfs mounted for one test, full or read-only.

Mounting needs root: ``.ci/run`` runs as root, GitHub's runners have password-less ``sudo``. A developer
machine with neither skips the tests that need it, but CI never does (``CI`` set): there a test that cannot
mount fails, so the bad day it covers is never skipped silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

Unmount = Callable[[], None]


def mount_tmpfs(path: Path, *options: str) -> Unmount | None:
    """Mount a tmpfs owned by this user at ``path`` (``options`` such as ``size=64k``, ``ro``); the function
    that unmounts it, or None when this machine does not let us mount."""
    if shutil.which("mount") is None:
        return None
    owner = [f"uid={os.getuid()}", f"gid={os.getgid()}"]
    argv = ["mount", "-t", "tmpfs", "-o", ",".join([*options, *owner]), "tmpfs", str(path)]
    prefixes: list[list[str]] = [[]] + ([["sudo", "-n"]] if os.getuid() != 0 and shutil.which("sudo") else [])
    for prefix in prefixes:
        if subprocess.run([*prefix, *argv], capture_output=True, check=False).returncode == 0:

            def unmount(prefix: list[str] = prefix) -> None:
                # lazy: a process the test started may still hold a file open while it is being stopped
                subprocess.run([*prefix, "umount", "-l", str(path)], capture_output=True, check=False)

            return unmount
    return None


def cannot_mount(what: str) -> NoReturn:
    """Skip a test that needs a tmpfs on a machine that may not mount one; fail it in CI, which can."""
    reason = f"{what} needs a tmpfs: mounting needs root or password-less sudo"
    if os.environ.get("CI"):
        pytest.fail(
            f"{reason}, which CI has (root in .ci/run, sudo on GitHub); this test must not be skipped"
        )
    pytest.skip(reason)
