"""``metalab import mlflow``: bring the runs of an MLflow file store into a metalab store."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from metalab._progress import progress_bar
from metalab.cli._output import emit_json, emit_rows
from metalab.interop.mlflow import import_mlruns

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    """Add ``import`` and its subcommands."""
    top = commands.add_parser("import", help="bring runs of other tools into a store")
    sub = top.add_subparsers(dest="import_command", metavar="SOURCE", required=True)
    mlflow = sub.add_parser(
        "mlflow",
        help="import an MLflow file store (mlruns/)",
        description="Import the runs of an MLflow file store into a metalab store, "
        "reading its files directly (MLflow need not be installed). Each MLflow "
        "experiment becomes the metalab experiment '<name>:1' (or --as), each run keeps "
        "its MLflow run id. Importing again writes only new and changed runs; runs "
        "MLflow marks deleted are skipped unless --include-deleted. A run that cannot "
        "be read is reported and nothing of it is written.",
        epilog="Example: metalab import mlflow ./mlruns --to ./experiments\n\nExit "
        "status: 0 when every run was imported or skipped on purpose; 1 when a run or "
        "experiment could not be imported (each is named on stderr with the reason); "
        "2 for usage errors.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mlflow.add_argument("mlruns", help="the MLflow file store directory (often 'mlruns')")
    mlflow.add_argument(
        "--to", dest="destination", required=True, metavar="LOCATOR", help="the metalab store"
    )
    mlflow.add_argument("--experiment", metavar="NAME", help="only this MLflow experiment")
    mlflow.add_argument(
        "--as",
        dest="as_experiment",
        metavar="ID",
        help="the metalab experiment id to import into (default '<MLflow name>:1')",
    )
    mlflow.add_argument(
        "--include-deleted", action="store_true", help="also import runs MLflow marks deleted"
    )
    mlflow.add_argument("--json", action="store_true", help="print the report as JSON")
    mlflow.set_defaults(handler=_import_mlflow)


def _import_mlflow(args: argparse.Namespace) -> int:
    with progress_bar("importing", enabled=not args.json) as progress:
        report = import_mlruns(
            args.mlruns,
            args.destination,
            experiment=args.experiment,
            as_experiment=args.as_experiment,
            include_deleted=args.include_deleted,
            progress=progress,
        )
    if args.json:
        emit_json(
            {
                "experiments": report.experiments,
                "imported": report.imported,
                "unchanged": report.unchanged,
                "deleted": report.deleted,
                "problems": report.problems,
                "notes": report.notes,
            }
        )
    else:
        emit_rows(
            ["imported", "unchanged", "deleted (skipped)", "problems"],
            [
                [
                    len(report.imported),
                    len(report.unchanged),
                    len(report.deleted),
                    len(report.problems),
                ]
            ],
        )
        for mlflow_id, experiment_id in report.experiments.items():
            sys.stderr.write(f"metalab: MLflow experiment {mlflow_id} -> {experiment_id}\n")
        for line in [*report.notes, *report.problems]:
            sys.stderr.write(f"metalab: {line}\n")
    return 0 if report.ok else 1
