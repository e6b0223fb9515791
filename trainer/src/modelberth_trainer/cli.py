"""``modelberth train``: the trainer's command. Import-light: sklearn and pandas load in the handler only.

Exit status: 0 the new version is champion (promoted, or ``--no-gate``); 3 the gate refused it (published as
``challenger``, the champion stays); 2 bad usage or input (nothing published); 1 any other error.
"""

from __future__ import annotations

import argparse
import sys

from modelberth_core.arguments import column_names

EXIT_ERROR = 1
"""Something failed that is not the input's fault (a full disk, an unreadable store)."""
EXIT_BAD_INPUT = 2
"""Bad flags, data or expectations file: nothing was published."""
EXIT_REFUSED = 3
"""The promotion gate refused the new version: it was published as challenger, the champion stays."""

_FLAG_FIELDS = (
    "data",
    "data_url",
    "data_sha256",
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
    "store",
    "gate_tolerance",
    "expectations",
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the trainer's commands to the ``modelberth`` parser."""
    train = subparsers.add_parser(
        "train",
        help="train a model from a CSV file or a bundled dataset and publish an artifact",
        description="Leak-free training: hold-out split, CV model search within a time budget, "
        "artifact (model.joblib, model.json, report.html, examples.csv) published atomically, then the "
        "promotion gate: the new version becomes champion, or challenger if it is worse than the champion "
        "on the same rows, a leak warning stands or a declared check fails. "
        "Flags override TRAINER_* environment variables.",
        epilog="Exit status: 0 promoted to champion, 3 refused by the gate (published as challenger), "
        "2 bad usage or input (nothing published), 1 other errors.",
    )
    _data_flags(train)
    _model_flags(train)
    _output_flags(train)
    _gate_flags(train)
    train.set_defaults(handler=handle_train)


def _data_flags(train: argparse.ArgumentParser) -> None:
    """Where the data comes from and which column is the target."""
    source = train.add_argument_group("data")
    source.add_argument("--data", metavar="PATH", help="CSV/TSV file (separator , ; or tab, sniffed)")
    source.add_argument(
        "--data-url",
        metavar="URL",
        help="HTTPS URL of the CSV/TSV file (downloaded; the query is never shown)",
    )
    source.add_argument(
        "--data-sha256", metavar="HEX", help="sha256 the --data file or --data-url download must have"
    )
    source.add_argument("--test-data", metavar="PATH", help="your own test file instead of a hold-out split")
    source.add_argument("--dataset", help="bundled dataset: iris (default), wine, breast_cancer, diabetes")
    source.add_argument("--no-header", action="store_true", default=None, help="the file has no header row")
    source.add_argument(
        "--columns", type=column_names, metavar="A,B,...", help="column names (with --no-header)"
    )
    source.add_argument(
        "--target", metavar="COL", help="target column (default: dataset's, or the last column)"
    )
    source.add_argument("--drop", nargs="+", metavar="COL", help="columns to leave out")


def _model_flags(train: argparse.ArgumentParser) -> None:
    """What is learned and how: task, metric, budget, seed, threshold costs, candidates."""
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


def _output_flags(train: argparse.ArgumentParser) -> None:
    """Where the version is published and under which name."""
    output = train.add_argument_group("output")
    output.add_argument("--name", help="model name (default: dataset name or file stem)")
    output.add_argument(
        "--store",
        "--out",
        dest="store",
        metavar="LOCATION",
        help="model store: a directory or oci://HOST[:PORT]/NAMESPACE (TRAINER_STORE, else MODELBERTH_STORE, "
        "else artifacts/models)",
    )
    output.add_argument(
        "--artifact-only",
        action="store_true",
        default=None,
        help="registry stores: push the artifact alone, without the static busybox copier (not runnable)",
    )


def _gate_flags(train: argparse.ArgumentParser) -> None:
    """How the promotion gate judges the new version."""
    gate = train.add_argument_group("promotion gate")
    gate.add_argument(
        "--gate-tolerance",
        type=float,
        metavar="DELTA",
        help="how much worse than the champion's the primary test metric may be (default 0.005)",
    )
    gate.add_argument(
        "--expectations",
        metavar="FILE",
        help="YAML of behavioural checks: known examples, invariance, directional (see trainer/README.md)",
    )
    gate.add_argument(
        "--allow-leaks", action="store_true", default=None, help="a leak warning does not block promotion"
    )
    gate.add_argument(
        "--no-gate", action="store_true", default=None, help="promote to champion unconditionally (logged)"
    )


def settings_from_args(args: argparse.Namespace) -> object:
    """TrainerSettings from the environment, with every given flag taking precedence."""
    from modelberth_trainer.settings import TrainerSettings

    overrides = {k: getattr(args, k) for k in _FLAG_FIELDS if getattr(args, k, None) is not None}
    for switch in ("no_header", "allow_leaks", "no_gate", "artifact_only"):
        if getattr(args, switch, None):
            overrides[switch] = True
    return TrainerSettings(**overrides)


def handle_train(args: argparse.Namespace) -> int:
    """Run one training; bad input prints one line on stderr and returns 2, a refused promotion 3."""
    from pydantic import ValidationError

    from modelberth_core.contract import ContractError
    from modelberth_core.store import StoreError
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
        trained = run(settings, say)  # type: ignore[arg-type]
    except DataError as exc:
        sys.stderr.write(f"modelberth train: error: {exc}\n")
        return EXIT_BAD_INPUT
    except (StoreError, ContractError) as exc:
        sys.stderr.write(f"modelberth train: error: {exc}\n")
        return EXIT_ERROR
    return 0 if trained.promoted else EXIT_REFUSED
