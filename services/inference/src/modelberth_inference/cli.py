"""``modelberth score``: offline batch scoring of a CSV or Parquet file. Import-light: pyarrow, pandas and
scikit-learn load in the handler only.

Exit status: 0 scored and published; 2 bad usage or input (unknown model, unreadable file, a required
column missing: nothing written); 3 more rows were invalid than ``--max-error-rate`` allows (the output is
not published; the summary says how many and which); 1 any other error.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from modelberth_core.arguments import EXIT_USAGE, add_store_option, column_names


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``modelberth score`` to the CLI."""
    score = subparsers.add_parser(
        "score",
        help="score a CSV or Parquet file with a model from the store, in bounded memory",
        description="Batch scoring: the file is read in chunks, each row validated like an API request "
        "(a bad row gets an 'error' cell naming the field and no prediction), predicted, and written to "
        "a temporary name renamed when complete; <output>.summary.json holds rows, errors, seconds, the "
        "model version and digest, and the batch's drift (PSI per feature against the card's reference "
        "profile). With --shard i/n, OUTPUT is a directory receiving part-<i>; then run "
        "--finalize OUTPUT --shards n once every part is done.",
        epilog="Exit status: 0 scored; 2 bad usage or input (nothing written); 3 more invalid rows than "
        "--max-error-rate (output not published, summary written); 1 other errors.",
    )
    score.add_argument(
        "--model", metavar="REF", help="NAME (its champion), NAME@ALIAS, NAME:VERSION, NAME@sha256:..."
    )
    score.add_argument("--input", metavar="PATH", help="CSV (header row, UTF-8) or Parquet file")
    score.add_argument(
        "--output", metavar="PATH", help="output file (.csv or .parquet); a directory with --shard"
    )
    add_store_option(score)
    score.add_argument(
        "--keep", type=column_names, default=[], metavar="A,B", help="input columns copied to the output"
    )
    score.add_argument(
        "--chunk-rows", type=_positive, default=None, metavar="N", help="rows per chunk (default 100000)"
    )
    score.add_argument(
        "--max-error-rate",
        type=_rate,
        default=1.0,
        metavar="F",
        help="fail (exit 3, output not published) when a larger fraction of rows is invalid (default 1)",
    )
    score.add_argument(
        "--delimiter",
        choices=[",", ";", "tab"],
        help="the input CSV's separator (default: sniffed from the header: , ; or tab)",
    )
    score.add_argument("--input-format", choices=["csv", "parquet"], help="default: from the suffix")
    score.add_argument("--output-format", choices=["csv", "parquet"], help="default: from the suffix")
    score.add_argument("--shard", metavar="I/N", help="score part I of N (0-based) into OUTPUT/part-<I>")
    score.add_argument("--finalize", metavar="DIR", help="check DIR's parts, merge summaries, write _SUCCESS")
    score.add_argument("--shards", type=_positive, metavar="N", help="with --finalize: the number of parts")
    score.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    score.set_defaults(handler=_handle)


MISSING_PYARROW = (
    "modelberth score: needs pyarrow, the inference package's optional `scoring` extra; install it with "
    "pip install 'modelberth-inference[scoring]' (from a checkout: uv sync), "
    "or run the modelberth-scoring image"
)


def _handle(args: argparse.Namespace) -> int:
    # pyarrow (~165 MB) is an optional extra so the serving image stays small: one line, not a traceback.
    if importlib.util.find_spec("pyarrow") is None:
        print(MISSING_PYARROW, file=sys.stderr)
        return EXIT_USAGE
    from modelberth_inference.score_command import run

    return run(args)
