"""``modelberth train``: the trainer's command. Import-light: sklearn and pandas load in the handler only."""

from __future__ import annotations

import argparse
import sys

EXIT_BAD_INPUT = 2

_FLAG_FIELDS = (
    "data",
    "test_data",
    "dataset",
    "target",
    "task",
    "metric",
    "time_budget_seconds",
    "name",
    "out",
    "seed",
    "drop",
    "positive_label",
    "cost_fp",
    "cost_fn",
    "protected",
    "columns",
    "n_jobs",
    "candidates",
)


def _columns(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the trainer's commands to the ``modelberth`` parser."""
    train = subparsers.add_parser(
        "train",
        help="train a model from a CSV file or a bundled dataset and publish an artifact",
        description="Leak-free training: hold-out split, CV model search within a time budget, "
        "artifact (model.joblib, model.json, report.html, examples.csv) published atomically. "
        "Flags override TRAINER_* environment variables.",
    )
    source = train.add_argument_group("data")
    source.add_argument("--data", metavar="PATH", help="CSV/TSV file (separator , ; or tab, sniffed)")
    source.add_argument("--test-data", metavar="PATH", help="your own test file instead of a hold-out split")
    source.add_argument("--dataset", help="bundled dataset: iris (default), wine, breast_cancer, diabetes")
    source.add_argument("--no-header", action="store_true", default=None, help="the file has no header row")
    source.add_argument("--columns", type=_columns, metavar="A,B,...", help="column names (with --no-header)")
    source.add_argument(
        "--target", metavar="COL", help="target column (default: dataset's, or the last column)"
    )
    source.add_argument("--drop", nargs="+", metavar="COL", help="columns to leave out")
    model = train.add_argument_group("model")
    model.add_argument("--task", choices=["auto", "classification", "regression"])
    model.add_argument("--metric", help="binary roc_auc, multiclass f1_macro, regression rmse by default")
    model.add_argument(
        "--time-budget", dest="time_budget_seconds", type=float, metavar="SECONDS", help="default 120"
    )
    model.add_argument("--seed", type=int)
    model.add_argument("--positive-label", metavar="LABEL", help="binary: the positive class")
    model.add_argument(
        "--cost-fp", type=float, metavar="COST", help="cost of a false positive (with --cost-fn)"
    )
    model.add_argument(
        "--cost-fn", type=float, metavar="COST", help="cost of a false negative (with --cost-fp)"
    )
    model.add_argument(
        "--protected", nargs="+", metavar="COL", help="report the prediction flip rate on swap"
    )
    model.add_argument(
        "--candidates", nargs="+", metavar="NAME", help="restrict the search to these candidates"
    )
    model.add_argument("--n-jobs", type=int, metavar="N", help="threads (default min(2, cores))")
    output = train.add_argument_group("output")
    output.add_argument("--name", help="model name (default: dataset name or file stem)")
    output.add_argument("--out", metavar="DIR", help="model root (default artifacts/models)")
    train.set_defaults(handler=handle_train)


def settings_from_args(args: argparse.Namespace) -> object:
    """TrainerSettings from the environment, with every given flag taking precedence."""
    from modelberth_trainer.settings import TrainerSettings

    overrides = {k: getattr(args, k) for k in _FLAG_FIELDS if getattr(args, k, None) is not None}
    if getattr(args, "no_header", None):
        overrides["no_header"] = True
    return TrainerSettings(**overrides)


def handle_train(args: argparse.Namespace) -> int:
    """Run one training; bad input prints one line on stderr and returns exit code 2."""
    from pydantic import ValidationError

    from modelberth_trainer.errors import DataError
    from modelberth_trainer.train import run

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        sys.stderr.write(f"modelberth train: error: {where + ': ' if where else ''}{first['msg']}\n")
        return EXIT_BAD_INPUT
    try:
        run(settings, say)  # type: ignore[arg-type]
    except DataError as exc:
        sys.stderr.write(f"modelberth train: error: {exc}\n")
        return EXIT_BAD_INPUT
    return 0
