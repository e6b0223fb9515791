"""What ``modelberth models`` does (its parser is :mod:`modelberth_cli.models`): each command takes an
open store and the parsed flags and writes text or JSON; :func:`run` maps store errors to exit statuses.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

from modelberth_core.contract import VERSION_PATTERN, ContractError, ModelCard
from modelberth_core.store import (
    CHALLENGER,
    CHAMPION,
    LATEST,
    AliasEvent,
    InvalidReference,
    ModelStore,
    Reference,
    StoreError,
    check_alias,
    default_location,
    open_store,
)

EXIT_ERROR = 1
"""A store or card that cannot be read."""
EXIT_USAGE = 2
"""An unknown model, version or alias, a bad name, or nothing to roll back: nothing was moved."""

Command = Callable[[ModelStore, argparse.Namespace, TextIO], int]


def _version_of(store: ModelStore, name: str, text: str) -> str:
    """A version id as given, or the version an alias names (``promote iris challenger``)."""
    if re.match(VERSION_PATTERN, text):
        return store.resolve(Reference(name, version=text)).version
    return store.resolve(Reference.parse(f"{name}@{text}")).version


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        )


def _event_json(event: AliasEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")


def list_models(store: ModelStore, args: argparse.Namespace, out: TextIO) -> int:
    """Every model with its aliases, version count and its champion's primary test score."""
    listing: list[dict[str, Any]] = []
    rows = [["MODEL", "CHAMPION", "SCORE", "CHALLENGER", "LATEST", "VERSIONS"]]
    for name in store.models():
        versions = store.versions(name)
        aliases = store.aliases(name)
        champion = next((v for v in versions if v.version == aliases.get(CHAMPION)), None)
        listing.append(
            {
                "name": name,
                "versions": len(versions),
                "aliases": aliases,
                "metric": champion.metric if champion else None,
                "champion_score": champion.score if champion else None,
            }
        )
        rows.append(
            [
                name,
                aliases.get(CHAMPION, "–"),
                f"{champion.metric} {_score(champion.score)}" if champion else "–",
                aliases.get(CHALLENGER, "–"),
                aliases.get(LATEST, "–"),
                str(len(versions)),
            ]
        )
    if args.json:
        out.write(json.dumps({"store": store.location, "models": listing}, indent=2) + "\n")
    elif not listing:
        out.write(f"no models in {store.location}\n")
    else:
        _table(rows, out)
    return 0


def history(store: ModelStore, args: argparse.Namespace, out: TextIO) -> int:
    name = args.name
    versions = store.versions(name)
    aliases = store.aliases(name)
    events = store.history(name)
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    if args.json:
        payload = {
            "name": name,
            "store": store.location,
            "aliases": aliases,
            "versions": [
                {
                    "version": v.version,
                    "created_at": v.created_at.isoformat(),
                    "metric": v.metric,
                    "score": v.score,
                    "aliases": sorted(by_version.get(v.version, [])),
                    "digest": v.digest,
                }
                for v in versions
            ],
            "events": [_event_json(e) for e in events],
        }
        out.write(json.dumps(payload, indent=2) + "\n")
        return 0
    out.write(f"{name} in {store.location}\n\nversions (oldest first):\n")
    digests = any(v.digest for v in versions)  # a registry store: the manifest digest pins a version
    rows = [["VERSION", "CREATED (UTC)", "TEST SCORE", "ALIASES", *(["DIGEST"] if digests else [])]]
    for v in versions:
        rows.append(
            [
                v.version,
                v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                f"{v.metric} {_score(v.score)}",
                ", ".join(sorted(by_version.get(v.version, []))) or "–",
                *([v.digest or "–"] if digests else []),
            ]
        )
    _table(rows, out)
    out.write("\nevents (oldest first):\n")
    if not events:
        out.write("  none recorded (a store written before aliases: champion is latest)\n")
        return 0
    rows = [["WHEN (UTC)", "ALIAS", "FROM", "TO", "WHY", "WHO", "DETAIL"]]
    for e in events:
        rows.append(
            [
                e.at.strftime("%Y-%m-%d %H:%M:%S"),
                e.alias,
                e.from_version or "–",
                e.to_version or "(removed)",
                e.reason,
                e.actor,
                (e.detail or "")[:120],
            ]
        )
    _table(rows, out)
    return 0


def _moved(event: AliasEvent, args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        out.write(json.dumps(_event_json(event), indent=2) + "\n")
    else:
        out.write(
            f"{event.model}@{event.alias}: {event.from_version or 'nothing'} -> {event.to_version}"
            f" ({event.reason} by {event.actor})\n"
        )
    return 0


def promote(store: ModelStore, args: argparse.Namespace, out: TextIO) -> int:
    alias = check_alias(args.alias)
    if alias == LATEST:
        raise InvalidReference("latest is moved only by publishing a new version; promote another alias")
    version = _version_of(store, args.name, args.version)
    current = store.aliases(args.name).get(alias)
    if current == version:
        if args.json:
            out.write(
                json.dumps({"model": args.name, "alias": alias, "version": version, "moved": False}) + "\n"
            )
        else:
            out.write(f"{args.name}@{alias} already names {version}; nothing moved\n")
        return 0
    challenger = store.aliases(args.name).get(CHALLENGER) if alias == CHAMPION else None
    event = store.move_alias(args.name, alias, version, reason="promote", actor=args.actor, expected=current)
    _moved(event, args, out)
    if challenger == version and not args.json:
        out.write(f"{args.name}@{CHALLENGER}: removed ({version} is the champion now)\n")
    return 0


def rollback(store: ModelStore, args: argparse.Namespace, out: TextIO) -> int:
    return _moved(store.rollback(args.name, actor=args.actor), args, out)


def _changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: {"a": a.get(k), "b": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def diff_cards(a: ModelCard, b: ModelCard) -> dict[str, Any]:
    """What differs between two versions: metrics, selected candidate and params, schema, data."""
    metrics: dict[str, Any] = {}
    for part in ("test", "cv"):
        ma, mb = getattr(a.metrics, part), getattr(b.metrics, part)
        metrics[part] = {
            k: {"a": ma.get(k), "b": mb.get(k), "delta": (mb[k] - ma[k]) if k in ma and k in mb else None}
            for k in sorted(set(ma) | set(mb))
        }
    fa = {f.name: f.type for f in a.features}
    fb = {f.name: f.type for f in b.features}
    return {
        "versions": {"a": a.version, "b": b.version},
        "created_at": {"a": a.created_at.isoformat(), "b": b.created_at.isoformat()},
        "metrics": {"primary": {"a": a.metrics.primary, "b": b.metrics.primary}, **metrics},
        "selected": _changes(
            {"candidate": a.selected.candidate, "estimator": a.selected.estimator},
            {"candidate": b.selected.candidate, "estimator": b.selected.estimator},
        ),
        "params": _changes(a.selected.params, b.selected.params),
        "schema": {
            "features_added": sorted(set(fb) - set(fa)),
            "features_removed": sorted(set(fa) - set(fb)),
            "types_changed": {
                k: {"a": fa[k], "b": fb[k]} for k in sorted(set(fa) & set(fb)) if fa[k] != fb[k]
            },
            **_changes(
                {"task": a.task, "target": a.target, "classes": a.classes},
                {"task": b.task, "target": b.target, "classes": b.classes},
            ),
        },
        "data": _changes(a.data.model_dump(mode="json"), b.data.model_dump(mode="json")),
        "versions_of_libraries": _changes(a.versions.model_dump(), b.versions.model_dump()),
        "gate": {
            "a": a.gate.verdict if a.gate else None,
            "b": b.gate.verdict if b.gate else None,
        },
    }


def _show(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def diff(store: ModelStore, args: argparse.Namespace, out: TextIO) -> int:
    va, vb = _version_of(store, args.name, args.a), _version_of(store, args.name, args.b)
    result = diff_cards(store.card(args.name, va), store.card(args.name, vb))
    if args.json:
        out.write(json.dumps({"name": args.name, **result}, indent=2) + "\n")
        return 0
    out.write(
        f"{args.name}: A = {va}, B = {vb}\n\nmetrics ({result['metrics']['primary']['b']} is primary):\n"
    )
    rows = [["METRIC", "A (test)", "B (test)", "B - A"]]
    for key, item in result["metrics"]["test"].items():
        rows.append([key, _show(item["a"]), _show(item["b"]), _show(item["delta"])])
    _table(rows, out)
    sections = [
        ("selected candidate", result["selected"]),
        ("params", result["params"]),
        ("data", result["data"]),
        ("library versions", result["versions_of_libraries"]),
    ]
    schema = result["schema"]
    out.write("\nschema:\n")
    if schema["features_added"]:
        out.write(f"  features added:   {', '.join(schema['features_added'])}\n")
    if schema["features_removed"]:
        out.write(f"  features removed: {', '.join(schema['features_removed'])}\n")
    for key, item in schema["types_changed"].items():
        out.write(f"  {key}: {item['a']} -> {item['b']}\n")
    for key in ("task", "target", "classes"):
        if key in schema:
            out.write(f"  {key}: {_show(schema[key]['a'])} -> {_show(schema[key]['b'])}\n")
    if not (schema["features_added"] or schema["features_removed"] or schema["types_changed"]) and not any(
        key in schema for key in ("task", "target", "classes")
    ):
        out.write("  same features, target and classes\n")
    for title, changes in sections:
        out.write(f"\n{title}:\n")
        if not changes:
            out.write("  same\n")
        for key, item in changes.items():
            out.write(f"  {key}: {_show(item['a'])} -> {_show(item['b'])}\n")
    gate = result["gate"]
    out.write(f"\ngate verdict: A {_show(gate['a'])}, B {_show(gate['b'])}\n")
    return 0


COMMANDS: dict[str, Command] = {
    "list": list_models,
    "history": history,
    "promote": promote,
    "rollback": rollback,
    "diff": diff,
}


def run(args: argparse.Namespace) -> int:
    """Open the store and run ``args.models_command``; a store error is one line on stderr."""
    try:
        store = open_store(default_location(args.store))
        return COMMANDS[args.models_command](store, args, sys.stdout)
    except StoreError as exc:
        sys.stderr.write(f"modelberth models: error: {exc}\n")
        return EXIT_USAGE
    except ContractError as exc:
        sys.stderr.write(f"modelberth models: error: {exc}\n")
        return EXIT_ERROR
