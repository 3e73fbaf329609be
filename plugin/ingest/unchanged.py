"""A re-ingest with nothing to embed, found from SQL rows and file hashes before any model loads."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from sketchtext.plugin.db import MetadataDB
from sketchtext.plugin.ingest.catalog import catalog_entries
from sketchtext.plugin.ingest.pipeline import BatchResult, IngestSummary, flag_shared_host_ids
from sketchtext.plugin.ingest.runs import end_orphaned_runs, ingest_lock
from sketchtext.plugin.store.base import VectorStore


def ingest_unchanged(
    store: VectorStore,
    db: MetadataDB,
    collection: str,
    root: Path,
    fingerprint: str,
    progress: Callable[[int, int], None] | None = None,
) -> IngestSummary | None:
    """Record a run and return its summary when every file under `root` is embedded, unchanged, by the model
    `fingerprint`; None (nothing recorded) as soon as one file needs the model, so a full ingest follows."""
    started = time.perf_counter()
    entries = catalog_entries(root)
    if store.host_points:
        entries = flag_shared_host_ids(entries)
    if not entries or any(e.problem for e in entries) or not store.exists(collection):
        return None
    if store.binding(collection) != fingerprint or store.count(collection) < len(entries):
        return None  # another model, or a store that lost points SQL calls embedded: the full path sorts it out
    known = db.assets_by_key(collection, [e.key for e in entries])
    for entry in entries:
        previous = known.get(entry.key)
        if previous is None:
            return None
        try:
            sha256 = hashlib.sha256(entry.path.read_bytes()).hexdigest()
        except OSError:
            return None
        if not previous.is_current(sha256, fingerprint):
            return None
    with ingest_lock(db, collection):
        end_orphaned_runs(db, collection)
        run_id = db.start_run(collection, str(root), fingerprint, len(entries))
        db.finish_run(run_id, "completed", embedded=0, unchanged=len(entries), failed=0, pruned=0)
    if progress is not None:
        progress(len(entries), len(entries))
    result = BatchResult(unchanged=[e.key for e in entries])
    return IngestSummary(run_id, collection, len(entries), result, [], time.perf_counter() - started)
