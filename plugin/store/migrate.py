"""Move an embedded store from qdrant-client's local mode to Qdrant Edge (`sketchtext store migrate`).

Every collection is copied with its vectors, payloads and model binding into a staging folder; the staging folder
becomes the Edge store only once every count matches, and the local-mode files are then moved into a backup
folder beside it (never deleted). An interrupted migration leaves the local-mode store as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from sketchtext.plugin.errors import StoreError
from sketchtext.plugin.store.base import EDGE_FOLDER
from sketchtext.plugin.store.edge import EdgeStore
from sketchtext.plugin.store.edge_config import EdgeIndexCfg
from sketchtext.plugin.store.open import LOCAL_MODE_FILES, Layout, detect_layout, local_mode_collections
from sketchtext.plugin.store.qdrant import open_local, translated

log = logging.getLogger(__name__)

BACKUP_FOLDER = "local-mode-backup"
STAGING_FOLDER = ".edge-migrating"


@dataclass
class MigrationReport:
    """What a migration copied, and where the local-mode files went."""

    path: Path
    collections: dict[str, int] = field(default_factory=dict)  # name -> points copied
    backup: Path | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "collections": self.collections,
            "backup": str(self.backup) if self.backup else None,
            "seconds": round(self.seconds, 3),
        }


def migrate_local_store(
    path: Path,
    *,
    batch_size: int = 1000,
    index: EdgeIndexCfg | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> MigrationReport:
    """Copy the local-mode store in `path` to Qdrant Edge in the same folder; `progress(collection, done, total)`."""
    started = time.perf_counter()
    layout = detect_layout(path)
    if layout in (Layout.EMPTY, Layout.EDGE):
        raise StoreError(f"{path} holds no qdrant-client local-mode collections; there is nothing to migrate.")
    if layout is Layout.BOTH:
        raise StoreError(
            f"{path} already holds a Qdrant Edge store ({path / EDGE_FOLDER}). Move that folder away first "
            "if the local-mode collections should replace it."
        )
    backup = path / BACKUP_FOLDER
    if backup.exists():
        raise StoreError(f"{backup} exists from an earlier migration; move or delete it, then run the migration again.")
    staging_root = path / STAGING_FOLDER
    shutil.rmtree(staging_root, ignore_errors=True)  # the leftovers of an interrupted migration
    report = MigrationReport(path=path)
    client = open_local(path)
    try:
        staging = EdgeStore(staging_root, index=index)
        try:
            for name in local_mode_collections(path):
                report.collections[name] = _copy_collection(client, staging, name, batch_size, progress)
        finally:
            staging.close()
    finally:
        client.close()
    shutil.rmtree(path / EDGE_FOLDER, ignore_errors=True)  # holds no collection (layout LOCAL): at most leftovers
    os.replace(staging_root, path / EDGE_FOLDER)
    backup.mkdir()
    for name in LOCAL_MODE_FILES:
        if (path / name).exists():
            os.replace(path / name, backup / name)
    report.backup = backup
    report.seconds = time.perf_counter() - started
    log.info("migrated %s to Qdrant Edge: %s; local-mode files in %s", path, report.collections, backup)
    return report


def _copy_collection(
    client: Any, target: EdgeStore, name: str, batch_size: int, progress: Callable[[str, int, int], None] | None
) -> int:
    with translated(f"read collection {name!r}"):
        info = client.get_collection(name)
    params = info.config.params
    if params.sparse_vectors:
        raise StoreError(
            f"Collection {name!r} has sparse vectors, which this migration does not copy; "
            "keep it in local mode (SKETCHTEXT_STORE__BACKEND=local) or re-ingest it."
        )
    named = params.vectors if isinstance(params.vectors, dict) else {"": params.vectors}
    vectors: dict[str, tuple[int, str]] = {}
    for vector_name, vector in named.items():
        if vector.multivector_config is not None:
            raise StoreError(
                f"Collection {name!r} has multivectors ({vector_name!r}), which this migration does not copy."
            )
        vectors[vector_name] = (vector.size, vector.distance.value)
    total = int(info.points_count or 0)
    target.create_collection(name, vectors, dict(info.config.metadata or {}))
    done, offset = 0, None
    while True:
        with translated(f"read points of {name!r}"):
            records, offset = client.scroll(name, limit=batch_size, offset=offset, with_payload=True, with_vectors=True)
        if records:
            target.write(
                name, [qe.Point(id=r.id, vector=r.vector, payload=r.payload or {}) for r in records], flush=False
            )
            done += len(records)
            if progress is not None:
                progress(name, done, total)
        if offset is None:
            break
    target.shard(name).flush()
    target.optimize(name)  # large collections get their search index now, once
    copied = target.count(name)
    if copied != done:
        raise StoreError(
            f"Collection {name!r}: read {done} points but Edge holds {copied}; the local store is untouched."
        )
    return copied
