"""Ingest: one unit of work over a batch of catalog entries (read, decode, encode, write); drivers: ingest/inline.py,
ingest/queued.py.

The same `ingest_batch` runs inline (embedded default) and inside Celery tasks (distributed); only the driver
differs. Point ids are deterministic, so any retry is an idempotent upsert.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sketchtext.plugin.db import AssetStatus, MetadataDB, asset_id
from sketchtext.plugin.errors import (
    ConfigError,
    ImageError,
    StoreError,
)
from sketchtext.plugin.images import DEFAULT_MAX_PIXELS, decode_image
from sketchtext.plugin.ingest.catalog import CatalogEntry
from sketchtext.plugin.ingest.turn import ModelTurn
from sketchtext.plugin.model.clip import ClipEncoder
from sketchtext.plugin.store.base import PointId, VectorStore, qdrant_id

log = logging.getLogger(__name__)


@dataclass
class IngestContext:
    """What a unit of work needs: the model, both stores and the target collection."""

    encoder: ClipEncoder
    store: VectorStore
    db: MetadataDB
    collection: str
    max_pixels: int = DEFAULT_MAX_PIXELS
    retry_attempts: int = 5  # per batch, when Qdrant or the database is unreachable
    retry_wait_s: float = 1.0  # first wait; doubles each time
    draft_size: int | None = None  # decode JPEGs at a reduced size no smaller than this; None: the model's input side
    decode_workers: int = 0  # decode threads; 0: every core feeding a GPU, up to 4 beside a CPU encoder
    prefetch: int = 2  # batches decoded ahead of the encoder
    regions: bool | None = None  # photo regions in a new collection; None: when the model is a trained checkpoint
    turn: ModelTurn = field(init=False)
    _region_grid: tuple[int | None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.turn = ModelTurn(self.encoder.device)
        if self.draft_size is None:  # every driver (inline, Celery) must decode alike, so they write the same vectors
            self.draft_size = self.encoder.image_size
        if not self.decode_workers:
            cores = os.cpu_count() or 1
            self.decode_workers = cores if self.encoder.device == "cuda" else min(4, cores)

    def ensure_collection(self) -> None:
        """Create the collection (with regions as asked) or check it; an explicit `regions` must match its own."""
        wanted = self.encoder.regions_by_default if self.regions is None else self.regions
        existed = self.store.exists(self.collection)
        grid = self.encoder.region_grid if wanted else None
        self.store.ensure_collection(self.collection, self.encoder.dim, self.encoder.fingerprint, region_grid=grid)
        has = self.store.region_grid(self.collection)
        if existed and self.regions is not None and self.regions != (has is not None):
            raise ConfigError(
                f"Collection {self.collection!r} was created {'with' if has else 'without'} photo regions, and a "
                "collection keeps that choice; drop --regions/--no-regions (or SKETCHTEXT_STORE__REGIONS), or ingest "
                "into a new collection."
            )
        self._region_grid = (has,)

    @property
    def region_grid(self) -> int | None:
        """The collection's region grid (read once): a batch writes regions exactly when the collection has them."""
        if self._region_grid is None:
            self._region_grid = (self.store.region_grid(self.collection),)
        return self._region_grid[0]


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


def catalog_row(collection: str, entry: CatalogEntry) -> dict[str, Any]:
    """An entry's catalog fields as SQL columns of `collection` (shared by both ingest drivers)."""
    return {"collection": collection, "key": entry.key, **entry.catalog_fields(), "extra": entry.extra}


def point_payload(entry: CatalogEntry) -> dict[str, Any]:
    """The filterable copy of an asset's metadata that travels with its vector."""
    payload: dict[str, Any] = {"key": entry.key}
    payload.update((name, value) for name, value in entry.catalog_fields().items() if value is not None)
    if entry.extra:
        payload["extra"] = entry.extra
    return payload


def point_id(store: VectorStore, collection: str, key: str, host_id: str | None) -> PointId:
    """The asset's deterministic id, or the host's product id when points belong to the host."""
    if store.host_points:
        if host_id is None:
            raise ImageError(f"{key} has no host_id in the sidecar; host point ids need one per photo")
        return qdrant_id(host_id)
    return asset_id(collection, key)


def host_id_conflicts(ctx: IngestContext, entries: Sequence[CatalogEntry]) -> dict[str, str]:
    """Entries whose host id another photo already holds (a host point has room for one sketchtext vector)."""
    if not ctx.store.host_points:
        return {}
    holders = ctx.db.keys_by_host_id(ctx.collection, [e.host_id for e in entries if e.host_id])
    conflicts = {}
    for entry in entries:
        if entry.host_id is None:
            continue
        holder = holders.setdefault(entry.host_id, entry.key)
        if holder != entry.key:
            conflicts[entry.key] = f"host_id {entry.host_id} already belongs to {holder}; give each photo its own"
    return conflicts


@dataclass
class PreparedBatch:
    """A batch after reading and decoding: what to write to SQL, and the pixels of what needs embedding."""

    entries: Sequence[CatalogEntry]
    result: BatchResult
    rows: list[dict[str, Any]]
    todo: list[CatalogEntry]
    pixels: Any  # what `ClipEncoder.image_pixels` gives, or None when nothing needs embedding
    regions: NDArray[np.float32] | None = None  # (N, R, D), set by `encode_batch` when the collection has regions


def prepare_batch(ctx: IngestContext, entries: Sequence[CatalogEntry]) -> PreparedBatch:
    """Read, hash and decode a batch; skip unchanged files, record unreadable ones, preprocess the rest."""
    result = BatchResult()
    started = time.perf_counter()
    known = ctx.db.assets_by_key(ctx.collection, [e.key for e in entries])
    conflicts = host_id_conflicts(ctx, entries)
    todo: list[CatalogEntry] = []
    images = []
    rows: list[dict[str, Any]] = []
    waited = 0.0  # for the model, which read_s does not count
    for entry in entries:
        waited += ctx.turn.wait()
        row = catalog_row(ctx.collection, entry)
        known_problem = entry.problem or conflicts.get(entry.key)
        if known_problem:
            result.failed[entry.key] = known_problem
            rows.append({**row, "status": AssetStatus.FAILED, "error": known_problem})
            continue
        try:
            data = entry.path.read_bytes()
        except OSError as exc:
            result.failed[entry.key] = f"cannot read file: {exc.strerror or exc}"
            rows.append({**row, "status": AssetStatus.FAILED, "error": result.failed[entry.key]})
            continue
        sha256 = hashlib.sha256(data).hexdigest()
        previous = known.get(entry.key)
        if previous is not None and previous.is_current(sha256, ctx.encoder.fingerprint):
            result.unchanged.append(entry.key)
            continue
        row.update(sha256=sha256, size=len(data))
        try:
            point_id(ctx.store, ctx.collection, entry.key, entry.host_id)
            image, (width, height) = decode_image(
                data,
                max_pixels=ctx.max_pixels,
                name=entry.key,
                draft_size=ctx.draft_size,
                fit_side=ctx.encoder.image_size,
            )
        except (ImageError, StoreError) as exc:
            result.failed[entry.key] = str(exc)
            rows.append({**row, "status": AssetStatus.FAILED, "error": str(exc), "width": None, "height": None})
            continue
        rows.append({**row, "status": AssetStatus.PENDING, "error": None, "width": width, "height": height})
        todo.append(entry)
        images.append(image)
    pixels = batch_pixels(ctx, todo, images, rows, result)
    result.read_s = time.perf_counter() - started - waited
    return PreparedBatch(entries, result, rows, todo, pixels)


def batch_pixels(
    ctx: IngestContext, todo: list[CatalogEntry], images: list[Any], rows: list[dict[str, Any]], result: BatchResult
) -> Any:
    """The model's input for the decoded images; an image the preprocessing refuses fails alone (leaving `todo`)."""
    try:
        return ctx.encoder.image_pixels(images) if images else None
    except Exception:  # rare: find the culprits one by one, so the rest of the batch still lands
        log.debug("preprocessing a batch failed; trying its images one by one", exc_info=True)
    row_of = {row["key"]: row for row in rows}
    for i in reversed(range(len(images))):
        try:
            ctx.encoder.image_pixels(images[i : i + 1])
        except Exception as exc:
            key = todo[i].key
            result.failed[key] = f"{key} cannot be prepared for the model ({type(exc).__name__}: {exc})"
            row_of[key].update(status=AssetStatus.FAILED, error=result.failed[key])
            del todo[i], images[i]
    return ctx.encoder.image_pixels(images) if images else None


def encode_batch(ctx: IngestContext, prepared: PreparedBatch) -> NDArray[np.float32]:
    """The image tower's vectors for the prepared pixels."""
    started = time.perf_counter()
    if prepared.pixels is None:
        vectors = np.zeros((0, ctx.encoder.dim), np.float32)
    else:
        with ctx.turn.model_runs():
            if ctx.region_grid is not None:  # the binding fixes the model, so its grid is the collection's
                vectors, prepared.regions = ctx.encoder.encode_image_regions(prepared.pixels)
            else:
                vectors = ctx.encoder.encode_image_tensors(prepared.pixels)
    prepared.result.encode_s = time.perf_counter() - started
    return vectors


def write_batch(ctx: IngestContext, prepared: PreparedBatch, vectors: NDArray[np.float32]) -> BatchResult:
    """SQL first (pending), then Qdrant, then SQL again: no row says embedded unless its vector is stored."""
    result = prepared.result
    ctx.turn.wait()
    started = time.perf_counter()
    ctx.db.save_assets(prepared.rows)
    ctx.store.upsert(
        ctx.collection,
        [point_id(ctx.store, ctx.collection, e.key, e.host_id) for e in prepared.todo],
        vectors,
        [point_payload(e) for e in prepared.todo],
        regions=prepared.regions,
    )
    ctx.db.mark_embedded(ctx.collection, [e.key for e in prepared.todo], ctx.encoder.fingerprint)
    result.embedded = [e.key for e in prepared.todo]
    result.write_s = time.perf_counter() - started
    log.info(
        "batch of %d: embedded %d, unchanged %d, failed %d; read_s=%.3f encode_s=%.3f write_s=%.3f",
        len(prepared.entries),
        len(result.embedded),
        len(result.unchanged),
        len(result.failed),
        result.read_s,
        result.encode_s,
        result.write_s,
    )
    return result


def flag_shared_host_ids(entries: Sequence[CatalogEntry]) -> list[CatalogEntry]:
    """Give every photo after the first that claims an already claimed host id a problem (batches run in parallel,
    so the per-batch check against SQL cannot see a twin in a neighbouring batch)."""
    holders: dict[str, str] = {}
    flagged = []
    for entry in entries:
        holder = holders.setdefault(entry.host_id, entry.key) if entry.host_id else entry.key
        if holder != entry.key and entry.problem is None:
            entry = replace(entry, problem=f"host_id {entry.host_id} already belongs to {holder}; give each its own")
        flagged.append(entry)
    return flagged


def ingest_batch(ctx: IngestContext, entries: Sequence[CatalogEntry]) -> BatchResult:
    """The unit of work: embed the entries of one batch that are new or changed; record unreadable ones as failed."""
    prepared = prepare_batch(ctx, entries)
    return write_batch(ctx, prepared, encode_batch(ctx, prepared))


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


def remove_assets(store: VectorStore, db: MetadataDB, collection: str, keys: Sequence[str]) -> None:
    """Ingest's write order backwards: rows marked pending, then the vectors deleted, then the rows. No row says
    embedded once its vector may be gone, and a retry after a failure in between finds the rows again."""
    rows = db.assets_by_key(collection, keys)
    stored = [row for row in rows.values() if row.status != AssetStatus.FAILED]  # a pending row may have a point
    db.mark_pending(collection, [row.key for row in stored])
    if stored and store.exists(collection):
        store.delete(collection, [point_id(store, collection, row.key, row.host_id) for row in stored])
    db.delete_assets(collection, keys)
