"""The embedded store on Qdrant Edge: Qdrant's own engine in the process, one shard folder per collection.

Layout under the store folder (`SKETCHTEXT_STORE__PATH`, default `<data_dir>/qdrant`):

    edge/<collection>/        the Edge shard (write-ahead log, segments, Edge's own config)
    edge/<collection>.json    sketchtext's side of the collection: the model binding (written atomically)

Durability: every upsert and delete is in the write-ahead log and flushed before the call returns, so a process
killed right after loses nothing it was told was written. Search quality: collections under `exact_below` points
are searched exactly; above it `optimize()` builds an HNSW index whose parameters keep recall@10 at or above 0.99
against exact search on catalogue embeddings (see tests/benchmarks/bench_store_scale.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import qdrant_edge as qe
from numpy.typing import NDArray
from qdrant_client import models

from sketchtext.plugin.errors import CollectionNotFoundError, ModelMismatchError, StoreError
from sketchtext.plugin.files import write_json_atomic
from sketchtext.plugin.settings import Settings
from sketchtext.plugin.store.base import (
    EDGE_FOLDER,
    FILTER_FIELDS,
    HOST_PAYLOAD_KEY,
    Page,
    PointId,
    StoreBase,
    qdrant_id,
)
from sketchtext.plugin.store.edge_config import EdgeIndexCfg, hold_folder
from sketchtext.plugin.store.edge_convert import DISTANCES, edge_errors, edge_filter, scored_point
from sketchtext.plugin.store.edge_regions import edge_region_request, region_params
from sketchtext.plugin.store.regions import RegionSearch

log = logging.getLogger(__name__)

BINDING_FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _close_all(shards: dict[str, qe.EdgeShard]) -> None:
    """Flush and close every open shard (also run at interpreter exit, so nothing written is left unflushed)."""
    for name in list(shards):
        shard = shards.pop(name)
        try:
            shard.flush()
        finally:
            shard.close()


class EdgeStore(StoreBase):
    """Vectors in Qdrant Edge shards under one folder; the same interface as `QdrantStore` (see `VectorStore`),
    host points included (sketchtext's payload under one `sketchtext` object, other vectors and fields untouched)."""

    def __init__(
        self,
        folder: Path,
        *,
        vector_name: str | None = None,
        host_points: bool = False,
        index: EdgeIndexCfg | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.vector_name = vector_name
        self.host_points = host_points
        self.index = index or EdgeIndexCfg()
        self._held: filelock.BaseFileLock | None = None
        if self.folder.is_dir():  # an existing store is held from the start; a new one from when it is first written
            self.hold()
        self._shards: dict[str, qe.EdgeShard] = {}
        self._lock = threading.RLock()
        self._finalizer = weakref.finalize(self, _close_all, self._shards)

    @classmethod
    def open(cls, settings: Settings) -> EdgeStore:
        """The Edge store of the embedded store folder (`settings.store_path`)."""
        store = settings.store
        return cls(
            settings.store_path / EDGE_FOLDER, vector_name=store.vector_name, host_points=store.point_ids == "host"
        )

    def close(self) -> None:
        """Flush and close every shard this store opened; safe to call twice."""
        with self._lock:
            try:
                with edge_errors("close the store", self.folder):
                    _close_all(self._shards)
            finally:
                if self._held is not None:
                    self._held.release()
                    self._held = None

    def hold(self) -> None:
        """Take the folder's lock (making the folder) unless held already; every shard access takes it first, so a
        read of a store that does not exist creates nothing."""
        if self._held is None:
            self._held = hold_folder(self.folder)

    # -- collections
    def shard_path(self, collection: str) -> Path:
        if not _NAME.match(collection):
            raise StoreError(
                f"Collection name {collection!r} cannot name a folder of the embedded store; "
                "use letters, digits, '_', '-' and '.' (not first)."
            )
        return self.folder / collection

    def binding_path(self, collection: str) -> Path:
        return self.folder / f"{collection}.json"

    def exists(self, collection: str) -> bool:
        return (self.shard_path(collection) / "segments").is_dir()

    def collections(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(
            p.name for p in self.folder.iterdir() if p.is_dir() and _NAME.match(p.name) and self.exists(p.name)
        )

    def shard(self, collection: str) -> qe.EdgeShard:
        """The open shard of a collection (loaded on first use)."""
        with self._lock:
            shard = self._shards.get(collection)
            if shard is None:
                if not self.exists(collection):
                    raise CollectionNotFoundError(
                        f"Collection {collection!r} does not exist; ingest a catalog into it first "
                        f"(`sketchtext ingest ./catalog --collection {collection}`)."
                    )
                self.hold()
                with edge_errors(f"open collection {collection!r}", self.shard_path(collection)):
                    shard = qe.EdgeShard.load(str(self.shard_path(collection)))
                self._shards[collection] = shard
            return shard

    def metadata(self, collection: str) -> dict[str, Any]:
        """sketchtext's record of a collection (binding and vector parameters); empty when there is none."""
        path = self.binding_path(collection)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"Cannot read {path}: {exc}. Restore it, or delete it and ingest again.") from exc
        return dict(data.get("metadata") or {})

    def vectors(self, collection: str) -> dict[str, tuple[int, str]]:
        """The collection's dense vectors as {name: (size, distance)}; the unnamed vector is ''."""
        path = self.shard_path(collection) / "edge_config.json"
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"Cannot read {path}: {exc}. The collection's folder is damaged.") from exc
        return {name: (int(v["size"]), str(v["distance"])) for name, v in (config.get("vectors") or {}).items()}

    def create_collection(
        self,
        collection: str,
        vectors: Mapping[str, tuple[int, str]],
        metadata: Mapping[str, Any],
        index_prefixes: Sequence[str] | None = None,
        multivectors: Mapping[str, qe.EdgeVectorParams] | None = None,
    ) -> None:
        """A new shard with `vectors` ({name: (size, distance)}, '' for one unnamed vector) and `multivectors`,
        keyword indexes on the filter fields (under each of `index_prefixes`, default this store's payload prefix)
        and `metadata`; built aside and moved in place, so a crash never leaves half a collection."""
        final = self.shard_path(collection)
        if self.exists(collection):
            raise StoreError(f"Collection {collection!r} already exists in {self.folder}.")
        self.hold()  # makes the folder
        staging = self.folder / f".{collection}.creating-{uuid.uuid4().hex[:8]}"
        params = {name: qe.EdgeVectorParams(size=size, distance=DISTANCES[d]) for name, (size, d) in vectors.items()}
        params.update(multivectors or {})
        config = qe.EdgeConfig(
            vectors=params[""] if set(params) == {""} else params,
            hnsw_config=self.index.hnsw(),
            optimizers=qe.EdgeOptimizersConfig(
                indexing_threshold=self.index.indexing_threshold_kb(max(s for s, _ in vectors.values()))
            ),
        )
        with edge_errors(f"create collection {collection!r}", staging):
            shard = qe.EdgeShard.create(str(staging), config)
            try:
                for prefix in index_prefixes if index_prefixes is not None else [self.payload_prefix]:
                    for field in FILTER_FIELDS:
                        schema = qe.PayloadSchemaType.Keyword
                        shard.update(qe.UpdateOperation.create_field_index(prefix + field, schema))
                shard.flush()
            finally:
                shard.close()
        self._write_metadata(collection, dict(metadata))
        if final.exists():  # an empty leftover of an interrupted creation
            shutil.rmtree(final)
        os.replace(staging, final)

    def _write_metadata(self, collection: str, metadata: dict[str, Any]) -> None:
        self.hold()
        write_json_atomic(self.binding_path(collection), {"format": BINDING_FORMAT, "metadata": metadata})

    # -- the model binding
    def binding(self, collection: str) -> str | None:
        """The model fingerprint a collection's vectors were made with, or None when unbound."""
        if not self.exists(collection):
            self.shard(collection)  # raises CollectionNotFoundError with the fix
        value = self.metadata(collection).get(self.binding_field)
        return str(value) if value is not None else None

    def ensure_collection(self, collection: str, dim: int, fingerprint: str, *, region_grid: int | None = None) -> None:
        """Create the collection (cosine, `dim`; regions beside it with a `region_grid`) bound to `fingerprint`, or
        check an existing one is bound to it."""
        with self._lock:
            if not self.exists(collection):
                metadata: dict[str, Any] = {self.binding_field: fingerprint}
                if region_grid is not None:
                    metadata.update(self.region_fields(region_grid))
                regions = {self.regions_name: region_params(dim)} if region_grid is not None else None
                self.create_collection(
                    collection, {self.vector_name or "": (dim, "Cosine")}, metadata, multivectors=regions
                )
                log.info("created Edge collection %s (dim %d, model %s)", collection, dim, fingerprint)
                return
            bound = self.binding(collection)
            if bound is None:
                self._check_vector_params(collection, dim)
                self._write_metadata(collection, {**self.metadata(collection), self.binding_field: fingerprint})
            elif bound != fingerprint:
                raise ModelMismatchError.for_collection(collection, bound, fingerprint)

    def _check_vector_params(self, collection: str, dim: int) -> None:
        self.check_vector_size(collection, self.vector_size(collection), dim)

    def vector_size(self, collection: str) -> int | None:
        if not self.exists(collection):
            self.shard(collection)  # raises CollectionNotFoundError with the fix
        params = self.vectors(collection).get(self.vector_name or "")
        return params[0] if params is not None else None

    def create_vector(self, collection: str, dim: int) -> None:
        name = str(self.vector_name)
        with self._lock, edge_errors(f"add the vector {name!r} to {collection!r}", self.shard_path(collection)):
            shard = self.shard(collection)
            shard.update(qe.UpdateOperation.create_dense_vector(name, dim, DISTANCES["Cosine"]))
            shard.flush()
        log.info("added vector %s (cosine, %d) to Edge collection %s", name, dim, collection)

    # -- points
    def _vector(self, vector: NDArray[np.float32], regions: NDArray[np.float32] | None = None) -> Any:
        values = np.asarray(vector, dtype=np.float32).tolist()
        if regions is not None:
            return {self.vector_name or "": values, self.regions_name: np.asarray(regions, np.float32).tolist()}
        return {self.vector_name: values} if self.vector_name else values

    def upsert(
        self,
        collection: str,
        ids: Sequence[PointId],
        vectors: NDArray[np.float32],
        payloads: Sequence[dict[str, Any]],
        *,
        regions: NDArray[np.float32] | None = None,
    ) -> None:
        """Write points (with their regions (N, R, D) when given); returns once they are in the write-ahead log and
        flushed to disk.

        Host points that already exist keep their other vectors and payload: only sketchtext's part changes."""
        if not ids:
            return
        point_ids = [qdrant_id(i) for i in ids]
        shard = self.shard(collection)
        with edge_errors(f"write {len(point_ids)} points to {collection!r}", self.shard_path(collection)):
            existing = self._existing(shard, point_ids) if self.host_points else set()
            new_points = []
            rows = self.stored_rows(collection, vectors, regions)
            cells = rows if rows is not None else [None] * len(point_ids)
            for pid, vector, region, payload in zip(point_ids, vectors, cells, payloads, strict=True):
                own, named = self.own(payload), self._vector(vector, region)
                if pid in existing:
                    shard.update(qe.UpdateOperation.update_vectors([qe.PointVectors(pid, named)]))
                    shard.update(qe.UpdateOperation.set_payload([pid], own))
                else:
                    new_points.append(qe.Point(id=pid, vector=named, payload=own))
            if new_points:
                shard.update(qe.UpdateOperation.upsert_points(new_points))
            shard.flush()

    def _existing(self, shard: qe.EdgeShard, ids: Sequence[str | int]) -> set[str | int]:
        found = shard.retrieve(list(ids), with_payload=False, with_vector=False)
        return {qdrant_id(record.id) for record in found}

    def write(self, collection: str, points: Sequence[qe.Point], *, flush: bool = True) -> None:
        """Upsert already built Edge points (for migrations); durable on return unless `flush` is False."""
        shard = self.shard(collection)
        with edge_errors(f"write {len(points)} points to {collection!r}", self.shard_path(collection)):
            shard.update(qe.UpdateOperation.upsert_points(list(points)))
            if flush:
                shard.flush()

    def delete(self, collection: str, ids: Sequence[PointId]) -> None:
        """Remove sketchtext's points (from host points only its vector and payload); durable on return."""
        if not ids:
            return
        point_ids = [qdrant_id(i) for i in ids]
        shard = self.shard(collection)
        with edge_errors(f"delete points from {collection!r}", self.shard_path(collection)):
            if self.host_points and self.vector_name:
                shard.update(qe.UpdateOperation.delete_vectors(point_ids, self.own_vectors(collection)))
                shard.update(qe.UpdateOperation.delete_payload(point_ids, [HOST_PAYLOAD_KEY]))
            else:
                shard.update(qe.UpdateOperation.delete_points(point_ids))
            shard.flush()

    def stored_vector(self, collection: str, point_id: PointId) -> NDArray[np.float32] | None:
        shard = self.shard(collection)
        with edge_errors(f"read a point of {collection!r}", self.shard_path(collection)):
            found = shard.retrieve([qdrant_id(point_id)], with_payload=False, with_vector=True)
        return self.picked_vector(found[0].vector) if found else None

    def points(
        self, collection: str, page: int = 1000, query_filter: models.Filter | None = None
    ) -> Iterator[tuple[str | int, dict[str, Any]]]:
        """Every point holding a sketchtext vector (those `query_filter` admits), as (id, sketchtext's payload)."""
        shard = self.shard(collection)
        offset: Any = None
        where = edge_filter(query_filter)
        while True:
            with edge_errors(f"read points of {collection!r}", self.shard_path(collection)):
                records, offset = shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=page, filter=where, with_payload=True, with_vector=False)
                )
            for record in records:
                own = self.own_payload(record.payload)
                if own or not self.host_points:
                    yield qdrant_id(record.id), own
            if offset is None:
                return

    def search_params(self, collection: str) -> qe.SearchParams:
        """Exact below the size threshold; HNSW with the configured `ef` above it."""
        if self.shard(collection).info().points_count < self.index.exact_below:
            return qe.SearchParams(exact=True)
        return qe.SearchParams(hnsw_ef=self.index.hnsw_ef)

    def query_batch(
        self,
        collection: str,
        requests: Sequence[tuple[NDArray[np.float32], models.Filter | None, int]],
        pages: Sequence[Page] | None = None,
    ) -> list[list[models.ScoredPoint]]:
        """Several queries planned as one batch; each result best first."""
        shard = self.shard(collection)
        params = self.search_params(collection)
        batch = [
            qe.QueryRequest(
                limit=limit,
                offset=offset or None,
                query=qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist(), using=self.vector_name),
                filter=edge_filter(query_filter),
                score_threshold=threshold,
                with_payload=True,
                params=params,
            )
            for (vector, query_filter, limit), (offset, threshold) in zip(
                requests, pages or [(0, None)] * len(requests), strict=True
            )
        ]
        with edge_errors(f"query {collection!r}", self.shard_path(collection)):
            results = shard.query_batch(qe.QueryBatchRequest(batch)) if len(batch) > 1 else [shard.query(batch[0])]
        return [[scored_point(point) for point in points] for points in results]

    def query_regions_batch(
        self,
        collection: str,
        requests: Sequence[tuple[NDArray[np.float32], models.Filter | None, int]],
        search: RegionSearch,
    ) -> list[list[models.ScoredPoint]]:
        """Two-stage queries (prefetch by the global vector, rerank by regions), planned as one batch."""
        plans = self.region_plans(collection, requests, search)
        params = self.search_params(collection)
        batch = [edge_region_request(plan, params) for plan in plans]
        shard = self.shard(collection)
        with edge_errors(f"query regions of {collection!r}", self.shard_path(collection)):
            results = shard.query_batch(qe.QueryBatchRequest(batch)) if len(batch) > 1 else [shard.query(batch[0])]
        return [[scored_point(point) for point in points] for points in results]

    def count(self, collection: str, query_filter: models.Filter | None = None) -> int:
        shard = self.shard(collection)
        with edge_errors(f"count points of {collection!r}", self.shard_path(collection)):
            return int(shard.count(qe.CountRequest(exact=True, filter=edge_filter(query_filter))))

    def optimize(self, collection: str) -> bool:
        """Build the HNSW index once the collection has outgrown exact search; True when anything was rebuilt.

        Blocks while it builds (tens of seconds per 100 000 points on two cores). Queries are correct without it,
        only slower on large collections."""
        shard = self.shard(collection)
        with edge_errors(f"index collection {collection!r}", self.shard_path(collection)):
            if shard.info().points_count < self.index.exact_below:
                return False
            changed = bool(shard.optimize())
            shard.flush()
        if changed:
            log.info("indexed collection %s", collection)
        return changed
