"""`qframe sweeps list|clean`: the sweep checkpoints kept in the lake, and freeing their space.

Checkpoints make an interrupted sweep resume; once a sweep is finished and its results written they are
only disk, and nothing removes them by itself.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from qframe.research.cli._common import LakeUrl, Workdir, choice_error, console, fail, plain_errors, settings_from
from qframe.research.cli.tables import OutputFormat, folding_table, render_records

if TYPE_CHECKING:
    from qframe.research.backtesting.checkpoints import SweepCheckpointSet
    from qframe.research.data_lake.storage import DataLakeStorage

app = typer.Typer(help="Sweep checkpoints in the lake: list them, clean them.", no_args_is_help=True)

S3Endpoint = Annotated[
    str | None, typer.Option(envvar="QFRAME_S3_ENDPOINT_URL", help="S3 API endpoint (MinIO, moto) for s3:// lakes")
]
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _lake(workdir: Path | None, lake: str | None, s3_endpoint_url: str | None) -> DataLakeStorage | None:
    """The lake the sweeps checkpoint into, or None when a local lake does not exist yet (nothing is created)."""
    from urllib.parse import unquote, urlsplit

    from qframe.research.data_lake.storage import storage_from_url

    settings = settings_from(workdir, lake, None, s3_endpoint_url=s3_endpoint_url)
    url = settings.resolved_lake_url
    parts = urlsplit(url)
    if parts.scheme == "file" and not Path(unquote(parts.path)).is_dir():
        return None
    options = {"endpoint_url": settings.s3_endpoint_url} if parts.scheme == "s3" and settings.s3_endpoint_url else {}
    return storage_from_url(url, **options)


def _sets(storage: DataLakeStorage | None) -> list[SweepCheckpointSet]:
    from qframe.research.backtesting.checkpoints import list_checkpoint_sets

    return [] if storage is None else list_checkpoint_sets(storage)


def _record(found: SweepCheckpointSet) -> dict[str, Any]:
    return {
        "sweep_id": found.sweep_id,
        "strategies": list(found.strategies),
        "datasets": list(found.datasets),
        "tasks_done": found.tasks_done,
        "tasks_total": found.tasks_total,
        "size_bytes": found.size_bytes,
        "modified": None if found.modified is None else found.modified.isoformat(),
    }


@app.command("list")
def list_sweeps(
    output: Annotated[OutputFormat, typer.Option(help="table, or json/csv on stdout for other tools")] = (
        OutputFormat.table
    ),
    workdir: Workdir = None,
    lake: LakeUrl = None,
    s3_endpoint_url: S3Endpoint = None,
) -> None:
    """Sweeps with checkpoints in the lake: id, strategies, datasets, tasks done/total, size, last modified."""
    from qframe.research.backtesting.estimate import format_bytes

    with plain_errors():
        found = _sets(_lake(workdir, lake, s3_endpoint_url))
        if output is not OutputFormat.table:
            sys.stdout.write(render_records([_record(s) for s in found], output).rstrip("\n") + "\n")
            return
        rows = [
            [
                s.sweep_id,
                ", ".join(s.strategies),
                ", ".join(s.datasets) or "?",
                f"{s.tasks_done:,}/{s.tasks_total:,}" if s.tasks_total is not None else f"{s.tasks_done:,}/?",
                format_bytes(s.size_bytes),
                "?" if s.modified is None else s.modified.strftime("%Y-%m-%d %H:%M UTC"),
            ]
            for s in found
        ]
        headers = ["sweep", "strategies", "datasets", "tasks done", "size", "last modified"]
        console.print(folding_table(headers, rows, title=f"{len(found)} sweep checkpoint set(s)"))
        if found:
            total = format_bytes(sum(s.size_bytes for s in found))
            console.print(f"{total} in all; free it with: qframe sweeps clean SWEEP_ID | --older-than 7d | --all")


def parse_age(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``2w``, ``90s`` -> seconds."""
    match = _AGE.match(text)
    if match is None:
        fail(f"--older-than {text!r} is not an age: use a number and s, m, h, d or w, e.g. 7d or 12h")
    return float(match.group(1)) * _AGE_SECONDS[match.group(2)]


@app.command()
def clean(
    sweep_ids: Annotated[list[str] | None, typer.Argument(help="sweep ids from `qframe sweeps list`")] = None,
    older_than: Annotated[
        str | None, typer.Option(help="every sweep whose checkpoints were last written longer ago, e.g. 7d, 12h")
    ] = None,
    all_sweeps: Annotated[bool, typer.Option("--all", help="every sweep's checkpoints")] = False,
    dry_run: Annotated[bool, typer.Option(help="say what would be deleted and freed; delete nothing")] = False,
    workdir: Workdir = None,
    lake: LakeUrl = None,
    s3_endpoint_url: S3Endpoint = None,
) -> None:
    """Delete sweep checkpoints (a rerun of such a sweep then computes every task again)."""
    import pandas as pd
    from qframe.research.backtesting.checkpoints import delete_checkpoint_set
    from qframe.research.backtesting.estimate import format_bytes

    chosen_ways = [bool(sweep_ids), older_than is not None, all_sweeps]
    if sum(chosen_ways) != 1:
        fail("say which checkpoints to delete, one way: SWEEP_ID..., --older-than AGE (e.g. 7d) or --all")
    age = parse_age(older_than) if older_than is not None else None
    with plain_errors():
        storage = _lake(workdir, lake, s3_endpoint_url)
        found = _sets(storage)
        if sweep_ids:
            known = {s.sweep_id: s for s in found}
            for sweep_id in sweep_ids:
                if sweep_id not in known:
                    fail(choice_error("sweep id", sweep_id, sorted(known)) if known else f"no sweep {sweep_id!r}")
            targets = [known[sweep_id] for sweep_id in dict.fromkeys(sweep_ids)]
        elif age is not None:
            cutoff = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=age)
            targets = [s for s in found if s.modified is not None and s.modified < cutoff]
        else:
            targets = found
        verb = "would delete" if dry_run else "deleted"
        for target in targets:
            if not dry_run and storage is not None:
                delete_checkpoint_set(storage, target.sweep_id)
            console.print(
                f"{verb} {target.sweep_id} ({', '.join(target.strategies)}): {target.tasks_done:,} checkpoints, "
                f"{format_bytes(target.size_bytes)}",
                highlight=False,
                markup=False,
            )
        freed = format_bytes(sum(t.size_bytes for t in targets))
        summary = f"would free {freed}" if dry_run else f"freed {freed}"
        console.print(f"{summary} ({len(targets)} of {len(found)} sweep checkpoint set(s))", highlight=False)
