"""The inline ingest driver: batches pipelined through decode threads, the encoder and one writer, with retries.

The embedded default runs this; the queued driver (ingest/queued.py) sends the same unit of work to Celery workers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from sketchtext.plugin.db import AssetStatus
from sketchtext.plugin.errors import (
    DatabaseUnavailableError,
    IngestCancelledError,
    SketchTextError,
    StoreUnavailableError,
)
from sketchtext.plugin.ingest.catalog import CatalogEntry, catalog_entries
from sketchtext.plugin.ingest.pipeline import (
    BatchResult,
    IngestContext,
    IngestSummary,
    PreparedBatch,
    batched,
    encode_batch,
    flag_shared_host_ids,
    point_id,
    prepare_batch,
    remove_assets,
    write_batch,
)
from sketchtext.plugin.ingest.runs import end_orphaned_runs, ingest_lock
from sketchtext.plugin.store.base import qdrant_id

log = logging.getLogger(__name__)


T = TypeVar("T")
TRANSIENT = (StoreUnavailableError, DatabaseUnavailableError)


def retrying(ctx: IngestContext, func: Callable[..., T], *args: Any) -> T:
    """Call `func`, retrying with exponential backoff while Qdrant or the database is unreachable.
    Safe because every write is idempotent (deterministic ids, upserts)."""
    for attempt in Retrying(
        retry=retry_if_exception_type(TRANSIENT),
        stop=stop_after_attempt(ctx.retry_attempts),
        wait=wait_exponential(multiplier=ctx.retry_wait_s, max=30),
        before_sleep=lambda state: log.warning(
            "attempt %d failed (%s); retrying", state.attempt_number, state.outcome.exception() if state.outcome else ""
        ),
        reraise=True,
    ):
        with attempt:
            return func(*args)
    raise AssertionError("unreachable: tenacity reraises the last error")


def pipelined(ctx: IngestContext, batches: Sequence[Sequence[CatalogEntry]]) -> Iterator[BatchResult]:
    """Run batches so that reading/decoding (worker threads) and writing (one thread) hide behind the encoder.

    Batches are encoded in order on this thread; at most `ctx.prefetch` are decoded ahead and two writes are in flight,
    so memory stays bounded. Results come back in order, after their writes landed."""
    decoders = ThreadPoolExecutor(ctx.decode_workers, thread_name_prefix="sketchtext-decode")
    writer = ThreadPoolExecutor(1, thread_name_prefix="sketchtext-write")
    prepared: deque[Future[PreparedBatch]] = deque()
    writes: deque[Future[BatchResult]] = deque()
    upcoming = iter(batches)
    failed = threading.Event()

    def write(ready: PreparedBatch, vectors: NDArray[np.float32]) -> BatchResult:
        if failed.is_set():  # an earlier write failed for good: its error is what the caller will see
            raise RuntimeError("skipped after an earlier write failed")
        try:
            return retrying(ctx, write_batch, ctx, ready, vectors)
        except BaseException:
            failed.set()
            raise

    try:
        for batch in islice(upcoming, ctx.prefetch):
            prepared.append(decoders.submit(retrying, ctx, prepare_batch, ctx, batch))
        while prepared:
            ready = prepared.popleft().result()
            for batch in islice(upcoming, 1):
                prepared.append(decoders.submit(retrying, ctx, prepare_batch, ctx, batch))
            vectors = encode_batch(ctx, ready)
            writes.append(writer.submit(write, ready, vectors))
            while len(writes) > 1 or (writes and writes[0].done()):
                yield writes.popleft().result()
        while writes:
            yield writes.popleft().result()
    finally:
        # On error or interrupt: drop what has not started; a write under way finishes, so SQL and Qdrant agree.
        decoders.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True, cancel_futures=True)


def prune_missing(ctx: IngestContext, present: set[str]) -> list[str]:
    """Delete the vectors and rows of assets whose files are gone."""
    gone = sorted(ctx.db.keys(ctx.collection) - present)
    remove_assets(ctx.store, ctx.db, ctx.collection, gone)
    return gone


def forget_lost_points(ctx: IngestContext) -> int:
    """Rows SQL calls embedded whose points the store no longer has (a deleted or restored store folder) go back to
    pending, so this run embeds them again; found by a count, so the usual run pays one count."""
    embedded = ctx.db.status_counts(ctx.collection).get(AssetStatus.EMBEDDED.value, 0)
    if not embedded or ctx.store.count(ctx.collection) >= embedded:
        return 0
    stored = {pid for pid, _payload in ctx.store.points(ctx.collection)}
    lost = [
        row.key
        for row in ctx.db.all_assets(ctx.collection)
        if row.status == AssetStatus.EMBEDDED
        and qdrant_id(point_id(ctx.store, ctx.collection, row.key, row.host_id)) not in stored
    ]
    ctx.db.mark_pending(ctx.collection, lost)
    log.warning(
        "the store lost %d of %d embedded points of %r; embedding them again", len(lost), embedded, ctx.collection
    )
    return len(lost)


def run_ingest(
    ctx: IngestContext,
    root: Path,
    *,
    batch_size: int = 32,
    prune: bool = False,
    progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Ingest a catalog folder inline, batch after batch; `on_start(run_id)` hears of the run once SQL has it,
    `progress(n, total)` of each finished batch (raising IngestCancelledError there stops the run as interrupted)."""
    started = time.perf_counter()
    entries = catalog_entries(root)
    if ctx.store.host_points:
        entries = flag_shared_host_ids(entries)
    with ingest_lock(ctx.db, ctx.collection):
        end_orphaned_runs(ctx.db, ctx.collection)
        ctx.ensure_collection()
        forget_lost_points(ctx)
        run_id = ctx.db.start_run(ctx.collection, str(root), ctx.encoder.fingerprint, len(entries))
        total = BatchResult()
        pruned: list[str] = []
        status = "failed"
        try:
            if on_start is not None:
                on_start(run_id)
            for result in pipelined(ctx, batched(entries, batch_size)):
                total.merge(result)
                if progress is not None:
                    progress(len(result.embedded) + len(result.unchanged) + len(result.failed), len(entries))
            pruned = retrying(ctx, prune_missing, ctx, {e.key for e in entries}) if prune else []
            ctx.store.optimize(ctx.collection)  # Edge builds its search index once the collection outgrows exact search
            status = "completed"
        except (KeyboardInterrupt, IngestCancelledError):
            status = "interrupted"
            raise
        finally:
            counts = {"embedded": len(total.embedded), "unchanged": len(total.unchanged), "failed": len(total.failed)}
            try:
                ctx.db.finish_run(run_id, status, pruned=len(pruned), **counts)
            except SketchTextError as exc:  # the database may be the reason we are leaving
                log.warning("could not record the end of run %s: %s", run_id, exc)
    return IngestSummary(run_id, ctx.collection, len(entries), total, pruned, time.perf_counter() - started)
