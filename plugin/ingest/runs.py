"""The record of ingest runs kept honest: a run whose driver is gone says `interrupted`, and a stopped run counts what
SQL says was embedded while it ran (a killed driver records nothing; queued batches land after their driver stops).

Every driver (inline, queued, the unchanged re-ingest) holds the collection's ingest lock while its run is open, and
the lock dies with its holder (a lock file's flock, a PostgreSQL session's advisory lock), so a run recorded
`running` whose lock can be taken has no driver left: no pid, host or heartbeat to trust. Worker processes hold a
lock of their own the same way, so a driver can tell a batch a live worker is embedding from one whose worker died.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager

from sqlalchemy import func, select

from sketchtext.plugin.db import Asset, AssetStatus, IngestRun, MetadataDB, utcnow
from sketchtext.plugin.errors import IngestBusyError

STOPPED = ("running", "interrupted")  # the runs whose record may be behind what happened


def ingest_lock(db: MetadataDB, collection: str) -> AbstractContextManager[None]:
    """The lock every driver holds while it writes `collection` (IngestBusyError at once when another holds it)."""
    return db.exclusive(f"the ingest lock of collection {collection!r}")


def worker_lock(db: MetadataDB, worker: str) -> AbstractContextManager[None]:
    """The lock a worker process holds for its life under a name of its own (`worker_gone` probes it)."""
    return db.exclusive(f"the lock of worker process {worker}")


def worker_gone(db: MetadataDB, worker: str) -> bool:
    """True when no live process holds `worker`'s lock: the worker died (even by SIGKILL) or stopped."""
    try:
        with worker_lock(db, worker):
            return True
    except IngestBusyError:
        return False


def end_orphaned_runs(db: MetadataDB, collection: str) -> int:
    """Mark `interrupted` the collection's runs still recorded `running`; only for a caller holding the ingest lock,
    which no live driver then holds. Returns how many were marked."""
    with db.session() as session:
        runs = session.scalars(
            select(IngestRun).where(IngestRun.collection == collection, IngestRun.status == "running")
        ).all()
        for run in runs:
            run.status = "interrupted"
            run.finished_at = run.finished_at or utcnow()
        return len(runs)


def count_from_sql(db: MetadataDB, collection: str) -> None:
    """Give each interrupted run of the collection the count of assets its model embedded from its start until the
    next run started (never less than it recorded)."""
    with db.session() as session:
        runs = list(session.scalars(select(IngestRun).where(IngestRun.collection == collection).order_by(IngestRun.id)))
        for run, after in zip(runs, [*runs[1:], None], strict=True):
            if run.status != "interrupted":
                continue
            window = [
                Asset.collection == collection,
                Asset.status == AssetStatus.EMBEDDED,
                Asset.model_fingerprint == run.model_fingerprint,
                Asset.embedded_at >= run.started_at,
            ]
            if after is not None:
                window.append(Asset.embedded_at < after.started_at)
            embedded = int(session.scalar(select(func.count()).select_from(Asset).where(*window)) or 0)
            run.embedded = max(run.embedded, embedded)


def settle_runs(db: MetadataDB, collections: Iterable[str]) -> None:
    """What `status` does before it shows runs: end the runs no driver holds, then count stopped runs from SQL."""
    for collection in collections:
        try:
            with ingest_lock(db, collection):
                end_orphaned_runs(db, collection)
        except IngestBusyError:
            continue  # a driver is running: its record is live, and it writes its own counts
        count_from_sql(db, collection)
