"""The queued ingest driver: plan what needs work, mark it pending in SQL, hand batches to workers, follow SQL.

The library side of distributed ingest; it knows nothing of Celery. A `Dispatcher` (the Celery front end in
`workers/`) sends JSON-safe `BatchJob`s and hands back `Ticket`s. Workers turn a job back into catalog
entries (`entries_for_job`) and run the same `ingest_batch` unit of work as the inline driver.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sketchtext.plugin.db import Asset, AssetStatus, MetadataDB
from sketchtext.plugin.errors import CatalogError, QueueError
from sketchtext.plugin.ingest.catalog import CatalogEntry, catalog_entries, file_problem, make_entry
from sketchtext.plugin.ingest.pipeline import BatchResult, IngestSummary, batched, catalog_row
from sketchtext.plugin.ingest.runs import end_orphaned_runs, ingest_lock, worker_gone

log = logging.getLogger(__name__)

SQL_CHUNK = 500  # keys per SQL statement (IN lists) while planning and registering

T = TypeVar("T")


@dataclass(frozen=True)
class BatchJob:
    """One batch for a worker as JSON-safe values: the run, the collection, where the files are, which keys."""

    run_id: int
    collection: str
    root: str
    keys: tuple[str, ...]
    fingerprint: str  # the model the run was planned for; a worker running another model refuses the job
    regions: bool | None = None  # photo regions if the worker creates the collection (None: the model's default)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "collection": self.collection,
            "root": self.root,
            "keys": list(self.keys),
            "fingerprint": self.fingerprint,
            "regions": self.regions,
        }

    @classmethod
    def from_json(cls, data: Any) -> BatchJob:
        try:
            return cls(
                run_id=int(data["run_id"]),
                collection=str(data["collection"]),
                root=str(data["root"]),
                keys=tuple(str(key) for key in data["keys"]),
                fingerprint=str(data["fingerprint"]),
                regions=None if data.get("regions") is None else bool(data["regions"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise QueueError(
                f"Malformed batch job ({exc}); it was sent by another sketchtext version. Upgrade every machine."
            ) from exc


def result_to_json(result: BatchResult) -> dict[str, Any]:
    return {
        "embedded": list(result.embedded),
        "unchanged": list(result.unchanged),
        "failed": dict(result.failed),
        "read_s": result.read_s,
        "encode_s": result.encode_s,
        "write_s": result.write_s,
    }


def result_from_json(data: dict[str, Any]) -> BatchResult:
    return BatchResult(
        embedded=list(data.get("embedded", [])),
        unchanged=list(data.get("unchanged", [])),
        failed=dict(data.get("failed", {})),
        read_s=float(data.get("read_s", 0.0)),
        encode_s=float(data.get("encode_s", 0.0)),
        write_s=float(data.get("write_s", 0.0)),
    )


class Ticket(Protocol):
    """A sent job: whether it has finished, and its outcome (raising the error it failed with for good); which worker
    process started it, and sending it again under the same id when that worker died holding it."""

    def done(self) -> bool: ...

    def outcome(self) -> BatchResult: ...

    def started_by(self) -> str | None:
        """The name of the worker process (its `worker_lock`) working on the job; None while queued or once done."""
        ...

    def resend(self) -> None: ...


class Dispatcher(Protocol):
    """Sends jobs to workers (the Celery front end implements it)."""

    def send(self, job: BatchJob) -> Ticket: ...

    def prune(self, collection: str, keys: Sequence[str]) -> Ticket: ...


@dataclass
class Plan:
    """Which entries a worker must (re-)embed, and which are embedded already with the same bytes and model."""

    todo: list[CatalogEntry] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def chunks(items: Sequence[T], size: int = SQL_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def needs_work(entry: CatalogEntry, row: Asset | None, fingerprint: str) -> bool:
    """True unless the row says embedded, by this model, from a file with the same size and content hash."""
    if row is None or row.status != AssetStatus.EMBEDDED or row.model_fingerprint != fingerprint:
        return True
    try:
        if entry.path.stat().st_size != row.size:
            return True
        return file_sha256(entry.path) != row.sha256
    except OSError:
        return True  # the worker records why the file cannot be read


def plan_run(db: MetadataDB, collection: str, entries: Sequence[CatalogEntry], fingerprint: str) -> Plan:
    """Split a scanned catalog into work and what is already done; only embedded files are hashed here."""
    plan = Plan()
    for chunk in chunks(entries):
        rows = db.assets_by_key(collection, [e.key for e in chunk])
        for entry in chunk:
            if needs_work(entry, rows.get(entry.key), fingerprint):
                plan.todo.append(entry)
            else:
                plan.unchanged.append(entry.key)
    return plan


def register_pending(db: MetadataDB, collection: str, entries: Sequence[CatalogEntry]) -> None:
    """Record the entries to be embedded as pending rows (with their catalog metadata, which workers read back)."""
    for chunk in chunks(entries):
        db.save_assets([{**catalog_row(collection, e), "status": AssetStatus.PENDING, "error": None} for e in chunk])


def entries_for_job(db: MetadataDB, job: BatchJob) -> list[CatalogEntry]:
    """The catalog entries a job names, with the metadata the pending rows carry (SQL is the source of truth)."""
    root = Path(job.root)
    if not root.is_dir():
        raise CatalogError(
            f"Catalog folder {root} is not visible on this worker; mount the catalog at the same path on every "
            "worker as on the machine that runs `sketchtext ingest --queue`."
        )
    rows = db.assets_by_key(job.collection, job.keys)
    real_root = root.resolve()
    entries = []
    for key in job.keys:
        if Path(key).is_absolute() or ".." in Path(key).parts:
            raise QueueError(f"A batch names {key!r}, outside the catalog {root}; refusing it.")
        row = rows.get(key)
        problem = file_problem(root / key, real_root)  # the inline scan's checks, made again where the file is read
        if row is None:  # registered rows are the norm; a missing one falls back to the folder's category
            entries.append(replace(make_entry(key, root / key, {}), problem=problem))
            continue
        entries.append(CatalogEntry.from_asset(row, root / key, problem=problem))
    return entries


class Follower:
    """Progress read from SQL: how many of the rows this run marked pending are no longer pending, and since when
    nothing has moved (by `clock`, which a test may drive)."""

    def __init__(
        self,
        db: MetadataDB,
        collection: str,
        todo: int,
        progress: Callable[[int, int], None] | None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.db = db
        self.collection = collection
        self.todo = todo
        self.progress = progress
        self.clock = clock
        # Pending rows of files no longer in the catalog stay pending; counting from this baseline ignores them.
        self.baseline = self.pending()
        self.done = 0
        self.moved_at = clock()

    def pending(self) -> int:
        return self.db.status_counts(self.collection).get(AssetStatus.PENDING.value, 0)

    def poll(self) -> int:
        done = min(max(self.baseline - self.pending(), 0), self.todo)
        if done != self.done:
            self.done, self.moved_at = done, self.clock()
        if self.progress is not None:
            self.progress(done, self.todo)
        return done

    def still_for(self) -> float:
        """Seconds since the last batch landed (or since the run started)."""
        return self.clock() - self.moved_at


class Reviver:
    """Sends again the jobs whose worker process died holding them, instead of waiting out the broker's visibility
    timeout (Redis keeps an unacknowledged batch for an hour by default). A worker that is gone released its
    `worker_lock`; the job goes back under the same id, so the driver's ticket follows the new delivery and a late
    redelivery of the old one finds the points and rows already written (deterministic ids: nothing doubles)."""

    def __init__(self, db: MetadataDB, every_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.every_s = every_s
        self.clock = clock
        self.looked_at = clock()
        self.resent: dict[Ticket, str] = {}  # ticket -> the dead worker it was sent again after

    def __call__(self, tickets: Sequence[Ticket]) -> int:
        """Look (at most every `every_s`) and send again what a dead worker held; returns how many were sent."""
        if self.clock() - self.looked_at < self.every_s:
            return 0
        self.looked_at = self.clock()
        count = 0
        for ticket in tickets:
            worker = ticket.started_by()
            if worker is None or self.resent.get(ticket) == worker or not worker_gone(self.db, worker):
                continue
            log.warning("a batch's worker %s is gone without finishing it; sending the batch again", worker)
            ticket.resend()
            self.resent[ticket] = worker
            count += 1
        return count


def wait_for(ticket: Ticket, poll_s: float, revive: Reviver) -> BatchResult:
    while not ticket.done():
        revive([ticket])
        time.sleep(poll_s)
    return ticket.outcome()


def run_queued(
    db: MetadataDB,
    dispatcher: Dispatcher,
    root: Path,
    *,
    collection: str,
    fingerprint: str,
    regions: bool | None = None,
    batch_size: int = 32,
    max_in_flight: int = 64,
    prune: bool = False,
    poll_s: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
    stalled: Callable[[float], None] | None = None,
    stall_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> IngestSummary:
    """Ingest a catalog folder through workers; `progress(done, todo)` hears of the SQL status as it changes, and
    `stalled(seconds)` once each time no batch has landed for `stall_s` (by `clock`) while work is queued.

    Only entries that are not embedded (new, failed, left pending by a stopped run, changed, or made by another
    model) are sent. At most `max_in_flight` batches wait in the queue at a time, so stopping this driver stops the
    run soon; a rerun sends what is still not embedded. A batch that fails for good ends the run with its error; one
    whose worker died holding it is sent again (`Reviver`).
    The driver holds the collection's ingest lock while it runs, so `status` can tell its run from a dead one.
    """
    started = time.perf_counter()
    root = root.expanduser().absolute()  # workers open files by this path: mount the catalog there too
    entries = catalog_entries(root)
    with ingest_lock(db, collection):
        end_orphaned_runs(db, collection)
        plan = plan_run(db, collection, entries, fingerprint)
        run_id = db.start_run(collection, str(root), fingerprint, len(entries))
        total = BatchResult(unchanged=list(plan.unchanged))
        pruned: list[str] = []
        status = "failed"
        try:
            register_pending(db, collection, plan.todo)
            follower = Follower(db, collection, len(plan.todo), progress, clock)
            revive = Reviver(db, clock=clock)
            jobs = deque(
                BatchJob(run_id, collection, str(root), tuple(e.key for e in batch), fingerprint, regions)
                for batch in batched(plan.todo, batch_size)
            )
            log.info("run %d: %d to embed in %d batches, of %d files", run_id, len(plan.todo), len(jobs), len(entries))
            waiting: list[Ticket] = []
            told = False
            while jobs or waiting:
                while jobs and len(waiting) < max_in_flight:
                    waiting.append(dispatcher.send(jobs.popleft()))
                finished = [ticket for ticket in waiting if ticket.done()]
                for ticket in finished:
                    waiting.remove(ticket)
                    total.merge(ticket.outcome())
                revive(waiting)
                follower.poll()
                quiet = follower.still_for()
                if finished or quiet < stall_s:
                    told = False
                elif not told and stalled is not None:
                    told = True
                    stalled(quiet)
                if jobs or waiting:
                    time.sleep(poll_s)
            if prune:
                gone = sorted(db.keys(collection) - {e.key for e in entries})
                for chunk in chunks(gone):
                    wait_for(dispatcher.prune(collection, chunk), poll_s, revive)
                pruned = gone
            status = "completed"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            db.finish_run(
                run_id,
                status,
                embedded=len(total.embedded),
                unchanged=len(total.unchanged),
                failed=len(total.failed),
                pruned=len(pruned),
            )
    return IngestSummary(run_id, collection, len(entries), total, pruned, time.perf_counter() - started)
