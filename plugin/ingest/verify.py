"""`verify`: compare SQL rows, Qdrant points and the files on disk; report every difference and repair on request."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from sketchtext.plugin.db import AssetStatus, MetadataDB
from sketchtext.plugin.ingest.catalog import scan_catalog
from sketchtext.plugin.ingest.pipeline import IngestContext, batched, ingest_batch, point_id
from sketchtext.plugin.store.base import VectorStore, qdrant_id

log = logging.getLogger(__name__)

Kind = Literal["missing_vector", "orphan_point", "stale_hash", "missing_file", "not_ingested"]
# What each kind means, and what --repair does about it.
KINDS: dict[str, str] = {
    "missing_vector": "SQL says embedded but Qdrant has no point: re-embed",
    "orphan_point": "a Qdrant point with no embedded SQL row: re-embed its file, or delete the point if none",
    "stale_hash": "the file changed since it was embedded: re-embed",
    "missing_file": "an asset whose file is gone: remove its row and point",
    "not_ingested": "a file with no finished SQL row: embed",
}


@dataclass(frozen=True)
class Difference:
    """One disagreement between SQL, Qdrant and the catalog folder."""

    kind: Kind
    key: str | None
    point_id: str | int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "meaning": KINDS[self.kind]}


def sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def find_differences(store: VectorStore, db: MetadataDB, collection: str, root: Path) -> list[Difference]:
    """Every difference between the collection's SQL rows, its Qdrant points and the files under `root`."""
    files = {entry.key: entry for entry in scan_catalog(root)}
    rows = {row.key: row for row in db.all_assets(collection)}
    points = dict(store.points(collection)) if store.exists(collection) else {}
    expected = {
        qdrant_id(point_id(store, collection, row.key, row.host_id)): row
        for row in rows.values()
        if row.status != AssetStatus.FAILED and (row.host_id or not store.host_points)
    }
    found: list[Difference] = []
    for pid, payload in points.items():
        row = expected.get(pid)
        if row is None or row.status != AssetStatus.EMBEDDED:
            found.append(Difference("orphan_point", payload.get("key"), pid))
    for key, row in sorted(rows.items()):
        pid = qdrant_id(point_id(store, collection, key, row.host_id)) if row.status != AssetStatus.FAILED else None
        if key not in files:
            found.append(Difference("missing_file", key, pid))
        elif row.status == AssetStatus.EMBEDDED and pid not in points:
            found.append(Difference("missing_vector", key, pid))
        elif row.status == AssetStatus.EMBEDDED and sha256_of(files[key].path) != row.sha256:
            found.append(Difference("stale_hash", key, pid))
        elif row.status == AssetStatus.PENDING and pid not in points:
            found.append(Difference("not_ingested", key, pid))
    found += [Difference("not_ingested", key) for key in sorted(files.keys() - rows.keys())]
    return found


def repair(
    ctx_factory: Callable[[], IngestContext],
    store: VectorStore,
    db: MetadataDB,
    collection: str,
    root: Path,
    differences: list[Difference],
    batch_size: int = 32,
) -> dict[str, int]:
    """Resolve each difference (see KINDS); the model is loaded only when something must be re-embedded."""
    files = {entry.key: entry for entry in scan_catalog(root)}
    gone = [d for d in differences if d.kind == "missing_file"]
    orphans = [d for d in differences if d.kind == "orphan_point" and (d.key not in files)]
    store.delete(collection, [d.point_id for d in gone + orphans if d.point_id is not None])
    db.delete_assets(collection, [d.key for d in gone if d.key])
    embed = sorted({d.key for d in differences if d.key is not None and d.key in files and d.kind != "missing_file"})
    if embed:
        db.mark_pending(collection, embed)
        ctx = ctx_factory()
        ctx.ensure_collection()
        for batch in batched([files[key] for key in embed], batch_size):
            ingest_batch(ctx, batch)
    counts: dict[str, int] = dict(Counter(str(d.kind) for d in differences))
    log.info("repaired %s", counts)
    return counts
