"""Ingest: one unit of work over a batch of catalog entries (read, decode, encode, write), and the inline driver.

The same `ingest_batch` runs inline (embedded default) and inside Celery tasks (distributed); only the driver
differs. Point ids are deterministic, so any retry is an idempotent upsert.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sketchtext.plugin.catalog import DEFAULT_MAX_PIXELS, CatalogEntry, open_image, scan_catalog
from sketchtext.plugin.db import AssetStatus, MetadataDB, asset_id
from sketchtext.plugin.encoders import ClipEncoder
from sketchtext.plugin.errors import ImageError
from sketchtext.plugin.stores import VectorStore

log = logging.getLogger(__name__)


@dataclass
class IngestContext:
    """What a unit of work needs: the model, both stores and the target collection."""

    encoder: ClipEncoder
    store: VectorStore
    db: MetadataDB
    collection: str
    max_pixels: int = DEFAULT_MAX_PIXELS

    def ensure_collection(self) -> None:
        self.store.ensure_collection(self.collection, self.encoder.dim, self.encoder.fingerprint)


@dataclass
class BatchResult:
    """What happened to each entry of a batch, with stage timings."""

    embedded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    read_s: float = 0.0
    encode_s: float = 0.0
    write_s: float = 0.0

    def merge(self, other: BatchResult) -> None:
        self.embedded += other.embedded
        self.unchanged += other.unchanged
        self.failed.update(other.failed)
        self.read_s += other.read_s
        self.encode_s += other.encode_s
        self.write_s += other.write_s


def asset_row(ctx: IngestContext, entry: CatalogEntry) -> dict[str, Any]:
    """The SQL columns that come from the catalog (not from decoding)."""
    return {
        "collection": ctx.collection,
        "key": entry.key,
        "category": entry.category,
        "scene": entry.scene,
        "sku": entry.sku,
        "title": entry.title,
        "host_id": entry.host_id,
        "extra": entry.extra,
    }


def point_payload(entry: CatalogEntry) -> dict[str, Any]:
    """The filterable copy of an asset's metadata that travels with its vector."""
    payload: dict[str, Any] = {"key": entry.key}
    for name in ("category", "scene", "sku", "title", "host_id"):
        value = getattr(entry, name)
        if value is not None:
            payload[name] = value
    if entry.extra:
        payload["extra"] = entry.extra
    return payload


def ingest_batch(ctx: IngestContext, entries: Sequence[CatalogEntry]) -> BatchResult:
    """Embed the entries of one batch that are new or changed; record the unreadable ones as failed."""
    result = BatchResult()
    started = time.perf_counter()
    known = ctx.db.assets_by_key(ctx.collection, [e.key for e in entries])
    todo: list[tuple[CatalogEntry, Any]] = []
    rows: list[dict[str, Any]] = []
    for entry in entries:
        row = asset_row(ctx, entry)
        try:
            data = entry.path.read_bytes()
        except OSError as exc:
            result.failed[entry.key] = f"cannot read file: {exc.strerror or exc}"
            rows.append({**row, "status": AssetStatus.FAILED, "error": result.failed[entry.key]})
            continue
        sha256 = hashlib.sha256(data).hexdigest()
        previous = known.get(entry.key)
        if (
            previous is not None
            and previous.status == AssetStatus.EMBEDDED
            and previous.sha256 == sha256
            and previous.model_fingerprint == ctx.encoder.fingerprint
        ):
            result.unchanged.append(entry.key)
            continue
        row.update(sha256=sha256, size=len(data))
        try:
            image = open_image(data, max_pixels=ctx.max_pixels, name=entry.key)
        except ImageError as exc:
            result.failed[entry.key] = str(exc)
            rows.append({**row, "status": AssetStatus.FAILED, "error": str(exc), "width": None, "height": None})
            continue
        rows.append({**row, "status": AssetStatus.PENDING, "error": None, "width": image.width, "height": image.height})
        todo.append((entry, image))
    result.read_s = time.perf_counter() - started

    started = time.perf_counter()
    vectors = ctx.encoder.encode_images([image for _, image in todo])
    result.encode_s = time.perf_counter() - started

    # SQL first (pending), then Qdrant, then SQL again: no row says embedded unless its vector is stored.
    started = time.perf_counter()
    ctx.db.save_assets(rows)
    todo_entries = [entry for entry, _ in todo]
    ctx.store.upsert(
        ctx.collection,
        [asset_id(ctx.collection, e.key) for e in todo_entries],
        vectors,
        [point_payload(e) for e in todo_entries],
    )
    ctx.db.mark_embedded(ctx.collection, [e.key for e in todo_entries], ctx.encoder.fingerprint)
    result.embedded = [e.key for e in todo_entries]
    result.write_s = time.perf_counter() - started
    log.info(
        "batch of %d: embedded %d, unchanged %d, failed %d; read_s=%.3f encode_s=%.3f write_s=%.3f",
        len(entries),
        len(result.embedded),
        len(result.unchanged),
        len(result.failed),
        result.read_s,
        result.encode_s,
        result.write_s,
    )
    return result


@dataclass
class IngestSummary:
    """The outcome of a whole ingest run."""

    run_id: int
    collection: str
    total: int
    result: BatchResult
    pruned: list[str]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "collection": self.collection,
            "total": self.total,
            "embedded": len(self.result.embedded),
            "unchanged": len(self.result.unchanged),
            "failed": len(self.result.failed),
            "pruned": len(self.pruned),
            "failures": [{"key": k, "reason": v} for k, v in sorted(self.result.failed.items())],
            "seconds": round(self.seconds, 3),
            "images_per_s": round(len(self.result.embedded) / self.seconds, 2) if self.seconds else None,
            "read_s": round(self.result.read_s, 3),
            "encode_s": round(self.result.encode_s, 3),
            "write_s": round(self.result.write_s, 3),
        }


def batched(items: Sequence[CatalogEntry], size: int) -> list[Sequence[CatalogEntry]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def prune_missing(ctx: IngestContext, present: set[str]) -> list[str]:
    """Delete the vectors and rows of assets whose files are gone."""
    gone = sorted(ctx.db.keys(ctx.collection) - present)
    ctx.store.delete(ctx.collection, [asset_id(ctx.collection, key) for key in gone])
    ctx.db.delete_assets(ctx.collection, gone)
    return gone


def run_ingest(
    ctx: IngestContext,
    root: Path,
    *,
    batch_size: int = 32,
    prune: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> IngestSummary:
    """Ingest a catalog folder inline, batch after batch; `progress(n, total)` hears of each finished batch."""
    started = time.perf_counter()
    entries = list(scan_catalog(root))
    ctx.ensure_collection()
    run_id = ctx.db.start_run(ctx.collection, str(root), ctx.encoder.fingerprint, len(entries))
    total = BatchResult()
    pruned: list[str] = []
    status = "failed"
    try:
        for batch in batched(entries, batch_size):
            total.merge(ingest_batch(ctx, batch))
            if progress is not None:
                progress(len(batch), len(entries))
        pruned = prune_missing(ctx, {e.key for e in entries}) if prune else []
        ctx.store.optimize(ctx.collection)  # Edge builds its search index once the collection outgrows exact search
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        ctx.db.finish_run(
            run_id,
            status,
            embedded=len(total.embedded),
            unchanged=len(total.unchanged),
            failed=len(total.failed),
            pruned=len(pruned),
        )
    return IngestSummary(run_id, ctx.collection, len(entries), total, pruned, time.perf_counter() - started)
