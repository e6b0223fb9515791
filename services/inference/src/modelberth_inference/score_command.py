"""The handler of ``modelberth score`` (see :mod:`modelberth_inference.cli` for the flags)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from modelberth_core.arguments import EXIT_ERROR, EXIT_USAGE
from modelberth_core.download import DownloadError, download, shown
from modelberth_core.logging import configure_logging
from modelberth_core.store import Reference, StoreError, default_location, open_store
from modelberth_inference.model import LoadedModel, LoadError, load_model
from modelberth_inference.scoring import (
    DEFAULT_CHUNK_ROWS,
    ScoreInputError,
    ScoreOptions,
    Shard,
    finalize,
)
from modelberth_inference.scoring import (
    run as score_run,
)
from modelberth_inference.settings import Settings

log = logging.getLogger("modelberth.inference.score")

EXIT_TOO_MANY_ERRORS = 3
"""Exit status when more rows were invalid than --max-error-rate allows (output not published)."""

MAX_INPUT_BYTES = 1 << 40
"""Largest --input URL download: the pod's temporary volume is the real bound (the chart's sizeLimit)."""


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"modelberth score: {message}", file=sys.stderr)
    return code


def _print_json(data: dict[str, Any]) -> None:
    """The summary on stdout; a reader that stopped early (``| head``) is not an error: the files are
    written already, and Python's exit flush must not raise again on the closed pipe."""
    try:
        print(json.dumps(data, indent=2, sort_keys=True), flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def run(args: argparse.Namespace) -> int:
    """Score, or finalize a sharded run; the exit status of ``modelberth score``."""
    configure_logging("score", os.environ.get("SCORE_LOG_LEVEL", "info"))
    if args.finalize:
        if not args.shards:
            return _fail("--finalize needs --shards N")
        try:
            merged = finalize(Path(args.finalize), args.shards)
        except (ScoreInputError, OSError, ValueError, KeyError) as exc:
            return _fail(f"finalize failed: {exc}", EXIT_ERROR)
        _print_json(merged)
        return 0
    for flag in ("model", "input", "output"):
        if not getattr(args, flag):
            return _fail(f"--{flag} is required")
    shard = None
    if args.shard:
        try:
            shard = Shard.parse(args.shard)
        except ValueError as exc:
            return _fail(f"--shard: {exc}")
    try:
        ref = Reference.parse(args.model)
        store = open_store(default_location(args.store))
        resolved = store.resolve(ref)
        version_dir = store.fetch(resolved.name, resolved.version)
    except StoreError as exc:
        return _fail(str(exc))
    # The service's default text limit (its Settings need a service environment to construct).
    max_text_length: int = Settings.model_fields["max_text_length"].default
    try:
        model = load_model(
            version_dir.parent.parent,
            resolved.name,
            resolved.version,
            max_text_length=max_text_length,
        )
    except LoadError as exc:
        return _fail(f"cannot load {resolved.name}:{resolved.version}: {exc}", EXIT_ERROR)
    with tempfile.TemporaryDirectory(prefix="modelberth-score-") as tmp:
        if "://" in args.input:
            try:
                source = download(args.input, Path(tmp), max_bytes=MAX_INPUT_BYTES, flag="--input")
            except DownloadError as exc:
                return _fail(str(exc))
            return _score(args, model, resolved.digest, source, shown(args.input), shard)
        return _score(args, model, resolved.digest, Path(args.input), args.input, shard)


def _score(
    args: argparse.Namespace,
    model: LoadedModel,
    digest: str | None,
    source: Path,
    shown_input: str,
    shard: Shard | None,
) -> int:
    options = ScoreOptions(
        input=source,
        shown_input=shown_input,
        output=Path(args.output),
        keep=list(args.keep),
        chunk_rows=args.chunk_rows or DEFAULT_CHUNK_ROWS,
        max_error_rate=args.max_error_rate,
        shard=shard,
        input_format=args.input_format,
        output_format=args.output_format,
        delimiter="\t" if args.delimiter == "tab" else args.delimiter,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    try:
        summary, within = score_run(model, digest, options)
    except ScoreInputError as exc:
        return _fail(str(exc))
    data = summary.as_json()
    shown = {k: v for k, v in data.items() if k not in {"drift_counts", "drift_expected", "first_errors"}}
    _print_json(shown)
    if not within:
        return _fail(
            f"{summary.errors + summary.skipped_lines} of {summary.rows + summary.skipped_lines} "
            "rows invalid, "
            f"more than --max-error-rate {options.max_error_rate}; output not published",
            EXIT_TOO_MANY_ERRORS,
        )
    return 0
