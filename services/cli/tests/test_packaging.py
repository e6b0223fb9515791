"""What installing a package gives: every member that contributes a command or a service pulls in the
``modelberth`` command (an image built with ``uv sync --package X`` can run ``modelberth serve X``), and
every member is a room the import contracts of ``make lint`` know."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
ROOT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
MEMBERS = ROOT["tool"]["uv"]["workspace"]["members"]
ENTRY_POINT_GROUPS = ("modelberth.commands", "modelberth.services")


def _project(member: str) -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((REPO / member / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"
    ]
    return project


def _import_name(member: str) -> str:
    return str(_project(member)["name"]).replace("-", "_")


def test_the_command_belongs_to_the_cli_package_alone() -> None:
    owners = {
        m: _project(m).get("scripts", {}) for m in MEMBERS if "modelberth" in _project(m).get("scripts", {})
    }
    assert owners == {"services/cli": {"modelberth": "modelberth_cli.main:main"}}


def test_every_member_with_a_command_or_service_installs_the_command_with_it() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text(encoding="utf-8"))
    locked = {p["name"]: {d["name"] for d in p.get("dependencies", [])} for p in lock["package"]}
    contributing = [
        m
        for m in MEMBERS
        if any(group in _project(m).get("entry-points", {}) for group in ENTRY_POINT_GROUPS)
    ]
    assert {"services/auth", "services/inference", "services/ui", "trainer"} <= set(contributing)
    for member in contributing:
        name = _project(member)["name"]
        assert "modelberth-cli" in _project(member)["dependencies"], member
        assert "modelberth-cli" in locked[name], f"uv.lock: {name} does not pull in modelberth-cli (uv lock)"


def test_every_member_is_a_root_of_the_import_contracts() -> None:
    linter = ROOT["tool"]["importlinter"]
    assert {_import_name(m) for m in MEMBERS} <= set(linter["root_packages"])
    # the contract between packages (inference also keeps its route modules independent of each other)
    (independent,) = [
        c for c in linter["contracts"] if c["type"] == "independence" and "modelberth_cli" in c["modules"]
    ]
    assert sorted(independent["modules"]) == sorted(
        _import_name(m) for m in MEMBERS if m != "services/core"
    ), "a new service (or the CLI) must be independent of the others"
    (core,) = [c for c in linter["contracts"] if c.get("source_modules") == ["modelberth_core"]]
    assert sorted(core["forbidden_modules"]) == sorted(independent["modules"])


def test_the_image_build_context_carries_every_member() -> None:
    """docker/Dockerfile syncs members from the lock, which names them all: one left out of the build
    context (.dockerignore is an allow-list) fails every image build, the command's own package included."""
    allowed = {
        line[1:].strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    for member in MEMBERS:
        assert {f"{member}/pyproject.toml", f"{member}/src"} <= allowed, member
