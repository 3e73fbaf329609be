"""Distributed commands: `sketchtext worker`, `sketchtext status`, and the `ingest --queue` driver.

Celery loads inside the commands that need it, so the rest of the CLI stays light.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sketchtext.plugin.model.precision import PRECISIONS

if TYPE_CHECKING:
    from sketchtext.cli.common import State
    from sketchtext.plugin.db import IngestRun
    from sketchtext.plugin.ingest.pipeline import IngestSummary
    from sketchtext.plugin.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def friendly(func: F) -> F:
    """`cli.main.friendly_errors`, looked up when called (cli.main imports this module to register its commands)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sketchtext.cli.common import friendly_errors

        return friendly_errors(func)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@click.command()
@click.option("-Q", "--queues", help="Comma-separated queues to consume; default SKETCHTEXT_QUEUE__QUEUE ('gpu').")
@click.option(
    "--pool",
    type=click.Choice(["solo", "threads", "prefork"]),
    default="solo",
    show_default=True,
    help="solo: one process, one task at a time (one per GPU; required by the embedded store). prefork: forked "
    "children, each loading the model lazily. threads: one model shared by threads.",
)
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=1, show_default=True, help="Tasks at once.")
@click.option("--model", "model_spec", help="Model spec; must match the one `ingest --queue` plans with.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where the model runs.")
@click.option("--precision", type=click.Choice(PRECISIONS), help="Model precision.")
@click.option("-n", "--hostname", help="Worker name (Celery's %h allowed); default sketchtext-PID@HOST.")
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@click.pass_obj
@friendly
def worker(
    state: State,
    queues: str | None,
    pool: str,
    concurrency: int,
    model_spec: str | None,
    device: str | None,
    precision: str | None,
    hostname: str | None,
    loglevel: str,
) -> None:
    """Run a Celery worker that embeds ingest batches and encodes queries.

    The broker, database and store come from SKETCHTEXT_QUEUE__*, SKETCHTEXT_DB__URL and SKETCHTEXT_STORE__*. On a
    GPU run one worker per GPU with the default --pool solo (CUDA_VISIBLE_DEVICES picks the GPU).
    """
    from sketchtext.workers.app import make_celery

    settings = state.settings(model={"spec": model_spec, "device": device, "precision": precision})
    app = make_celery(settings)
    runtime = app.sketchtext_runtime
    runtime.preflight(pool, concurrency)
    argv = ["worker", "--queues", queues or settings.queue.queue, "--pool", pool, "--concurrency", str(concurrency)]
    argv += ["--loglevel", loglevel, "--without-gossip", "--without-mingle"]
    argv += ["--hostname", hostname or f"sketchtext-{os.getpid()}@%h"]  # unique, so several workers share a machine
    try:
        code = app.start(argv)
    finally:
        runtime.close()
    sys.exit(code or 0)


def ingest_queued(
    settings: Settings, catalog: Path, *, prune: bool, quiet: bool, max_in_flight: int = 64
) -> IngestSummary:
    """The `ingest --queue` driver: enqueue what is not embedded yet, follow SQL with a progress bar.

    Qdrant is never opened here: only workers touch the store.
    """
    from tqdm import tqdm

    from sketchtext.plugin.db import MetadataDB
    from sketchtext.plugin.ingest.queued import run_queued
    from sketchtext.plugin.model.spec import model_fingerprint
    from sketchtext.workers.app import make_celery
    from sketchtext.workers.client import CeleryDispatcher, check_broker, workers_on_queue

    app = make_celery(settings)
    check_broker(app)  # before anything is recorded: a dead broker leaves SQL untouched
    # with a checkpoint, the workers' gallery vectors come from the tuned tower, and the fingerprint says so
    fingerprint = model_fingerprint(settings.model.spec, settings.model.checkpoint)
    db = MetadataDB(settings.database_url)
    db.ensure_schema(auto_upgrade=db.engine.dialect.name == "sqlite")
    if not quiet and not workers_on_queue(app):
        click.echo(
            f"note: no worker consumes queue {settings.queue.queue!r} yet; batches wait there until one starts "
            "(`sketchtext worker`).",
            err=True,
        )
    try:
        with tqdm(unit="img", desc="ingest (queue)", disable=quiet) as bar:

            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            return run_queued(
                db,
                CeleryDispatcher(app),
                catalog,
                collection=settings.store.collection,
                fingerprint=fingerprint,
                regions=settings.store.regions,
                batch_size=settings.model.batch_size,
                max_in_flight=max_in_flight,
                prune=prune,
                progress=advance,
                stalled=lambda seconds: no_worker_hint(app, settings, seconds),
            )
    except KeyboardInterrupt:
        click.echo(
            "\ninterrupted: batches already queued still run on the workers; rerun the same command to send the rest.",
            err=True,
        )
        sys.exit(130)
    finally:
        db.engine.dispose()


def no_worker_hint(app: Any, settings: Settings, seconds: float) -> None:
    """Said when no batch has landed for a while: if no worker consumes the queue, name the command that starts one."""
    from sketchtext.workers.client import workers_on_queue

    if not workers_on_queue(app):
        click.echo(
            f"\nhint: no batch has landed in {seconds:.0f} s and no worker consumes queue {settings.queue.queue!r}; "
            "start one with `sketchtext worker` (same broker, database and store settings).",
            err=True,
        )


@click.command()
@click.option("--collection", help="Only runs and counts of this collection.")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
@friendly
def status(state: State, collection: str | None, limit: int, as_json: bool) -> None:
    """Show the latest ingest runs and how many assets are embedded, pending or failed (from SQL)."""
    from sketchtext.plugin.db import MetadataDB

    settings = state.settings()
    sqlite_file = settings.data_dir / "sketchtext.db" if settings.db.url is None else None
    if sqlite_file is not None and not sqlite_file.is_file():  # look, but create nothing
        click.echo(f"no ingest yet (no database at {sqlite_file}; run `sketchtext ingest ./catalog`)")
        return
    db = MetadataDB(settings.database_url)
    try:
        if db.current_revision() is None:
            fix = "sketchtext ingest ./catalog" if db.engine.dialect.name == "sqlite" else "sketchtext db upgrade"
            click.echo(f"no ingest yet (the database has no schema; run `{fix}`)")
            return
        from sketchtext.plugin.ingest.runs import STOPPED, settle_runs

        settle_runs(db, {r.collection for r in db.latest_runs(limit, collection) if r.status in STOPPED})
        runs = db.latest_runs(limit, collection)
        names = sorted({r.collection for r in runs} | ({collection} if collection else set()))
        counts = {name: db.status_counts(name) for name in names}
    finally:
        db.engine.dispose()
    if as_json:
        click.echo(json.dumps({"runs": [run_dict(r) for r in runs], "assets": counts}, indent=2, default=str))
        return
    if not runs:
        click.echo("no ingest runs yet")
    else:
        click.echo(
            f"{'run':>5}  {'collection':<16} {'status':<11} {'started (UTC)':<19} {'seconds':>8} {'total':>7} "
            f"{'embedded':>8} {'unchanged':>9} {'failed':>6} {'pruned':>6}"
        )
    for run in runs:
        row = run_dict(run)
        started = run.started_at.strftime("%Y-%m-%d %H:%M:%S") if run.started_at else "-"
        seconds = f"{row['seconds']:.1f}" if row["seconds"] is not None else "-"
        click.echo(
            f"{run.id:>5}  {run.collection:<16} {run.status:<11} {started:<19} {seconds:>8} {run.total:>7} "
            f"{run.embedded:>8} {run.unchanged:>9} {run.failed:>6} {run.pruned:>6}"
        )
    for name in names:
        by_status = counts[name]
        parts = ", ".join(f"{by_status.get(s, 0)} {s}" for s in ("embedded", "pending", "failed"))
        click.echo(f"assets in {name}: {parts}")
        own = [r for r in runs if r.collection == name]
        if by_status.get("pending") and own and own[0].status != "running":  # settled: no driver holds the lock
            click.echo(
                f"  no run is open for the pending ones: `sketchtext ingest {own[0].source} --queue` (or inline, "
                "without --queue) sends them again; a batch already queued still lands when a worker takes it"
            )


def run_dict(run: IngestRun) -> dict[str, Any]:
    seconds = None
    if run.started_at is not None and run.finished_at is not None:
        seconds = round((run.finished_at - run.started_at).total_seconds(), 3)
    return {
        "id": run.id,
        "collection": run.collection,
        "source": run.source,
        "status": run.status,
        "model": run.model_fingerprint,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "seconds": seconds,
        "total": run.total,
        "embedded": run.embedded,
        "unchanged": run.unchanged,
        "failed": run.failed,
        "pruned": run.pruned,
    }
