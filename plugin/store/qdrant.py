"""The one module that talks to Qdrant: collections bound to a model, upserts, filtered queries."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from sketchtext.plugin.errors import (
    CollectionNotFoundError,
    ModelMismatchError,
    StoreError,
    StoreUnavailableError,
)
from sketchtext.plugin.settings import Settings
from sketchtext.plugin.store.base import FILTER_FIELDS, HOST_PAYLOAD_KEY, Page, PointId, StoreBase, qdrant_id
from sketchtext.plugin.store.regions import RegionSearch, region_request

log = logging.getLogger(__name__)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn qdrant-client and transport errors into the project's errors."""
    try:
        yield
    except (ResponseHandlingException, ConnectionError, TimeoutError) as exc:
        raise StoreUnavailableError(
            f"Qdrant is unreachable while trying to {what}: {exc}. "
            "Check that it runs and that SKETCHTEXT_STORE__URL is right."
        ) from exc
    except ValueError as exc:  # local mode's way of saying 404
        if "not found" not in str(exc):
            raise
        raise CollectionNotFoundError(
            f"Cannot {what}: {exc}; ingest a catalog into it first (`sketchtext ingest ./catalog --collection NAME`)."
        ) from exc
    except UnexpectedResponse as exc:
        if exc.status_code == 404:
            raise CollectionNotFoundError(f"Qdrant says not found while trying to {what}: {exc.content!r}") from exc
        raise StoreError(f"Qdrant refused to {what}: {exc}") from exc


class QdrantStore(StoreBase):
    """Vectors in Qdrant, local mode (`path=`) or a server, optionally as a named vector of a host's collection.

    With `host_points`, points belong to the host (their ids are the host's product ids): sketchtext only adds or
    replaces its named vector and keeps its payload under one `sketchtext` object, never touching the host's fields.
    """

    def __init__(
        self,
        client: QdrantClient,
        *,
        vector_name: str | None = None,
        host_points: bool = False,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.vector_name = vector_name
        self.host_points = host_points
        self._owns_client = owns_client

    @classmethod
    def open(cls, settings: Settings) -> QdrantStore:
        """The server at `store.url`, else the embedded store folder under the data directory."""
        store = settings.store
        if store.url:
            api_key = store.api_key.get_secret_value() if store.api_key else None
            client = QdrantClient(url=store.url, api_key=api_key, timeout=int(store.timeout_s))
        else:
            client = open_local(settings.store_path)
        return cls(client, vector_name=store.vector_name, host_points=store.point_ids == "host", owns_client=True)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    # -- collections and their binding to a model
    def binding(self, collection: str) -> str | None:
        """The model fingerprint a collection's vectors were made with, or None when unbound."""
        with translated(f"read collection {collection!r}"):
            if not self.client.collection_exists(collection):
                raise CollectionNotFoundError(
                    f"Collection {collection!r} does not exist; ingest a catalog into it first "
                    f"(`sketchtext ingest ./catalog --collection {collection}`)."
                )
        value = self.metadata(collection).get(self.binding_field)
        return str(value) if value is not None else None

    def metadata(self, collection: str) -> dict[str, Any]:
        """The collection's metadata (sketchtext's binding among it)."""
        with translated(f"read collection {collection!r}"):
            return dict(self.client.get_collection(collection).config.metadata or {})

    def ensure_collection(self, collection: str, dim: int, fingerprint: str, *, region_grid: int | None = None) -> None:
        """Create the collection (cosine, `dim`; regions beside it with a `region_grid`) bound to `fingerprint`, or
        check an existing one is bound to it."""
        with translated(f"create collection {collection!r}"):
            exists = self.client.collection_exists(collection)
            if not exists:
                vectors = models.VectorParams(size=dim, distance=models.Distance.COSINE)
                metadata: dict[str, Any] = {self.binding_field: fingerprint}
                config: Any = {self.vector_name: vectors} if self.vector_name else vectors
                if region_grid is not None:
                    metadata.update(self.region_fields(region_grid))
                    config = {self.vector_name or "": vectors, self.regions_name: region_params(dim)}
                self.client.create_collection(collection, vectors_config=config, metadata=metadata)
                log.info("created collection %s (dim %d, model %s)", collection, dim, fingerprint)
                self._create_indexes(collection)
                return
        bound = self.binding(collection)
        if bound is None:  # a host's collection we have not written to yet
            self._check_vector_params(collection, dim)
            with translated(f"bind collection {collection!r}"):
                self.client.update_collection(collection, metadata={self.binding_field: fingerprint})
                self._create_indexes(collection)
        elif bound != fingerprint:
            raise ModelMismatchError.for_collection(collection, bound, fingerprint)

    def _check_vector_params(self, collection: str, dim: int) -> None:
        self.check_vector_size(collection, self.vector_size(collection), dim)

    def vector_size(self, collection: str) -> int | None:
        with translated(f"read collection {collection!r}"):
            vectors = self.client.get_collection(collection).config.params.vectors
        params = vectors.get(self.vector_name or "") if isinstance(vectors, dict) else vectors
        return None if params is None or isinstance(params, dict) else params.size

    def create_vector(self, collection: str, dim: int) -> None:
        """`create_vector_name` (qdrant-client and Qdrant server 1.18 or later); else a message with the fix."""
        name = str(self.vector_name)
        by_hand = (
            f"Create the collection with vectors_config={{..., {name!r}: models.VectorParams(size={dim}, "
            "distance=models.Distance.COSINE)}, or upgrade Qdrant and qdrant-client to 1.18 or later"
        )
        create = getattr(self.client, "create_vector_name", None)
        if create is None:
            raise StoreError(f"This qdrant-client cannot add the vector {name!r} to {collection!r}. {by_hand}.")
        config = models.DenseVectorNameConfig(dense=models.DenseVectorConfig(size=dim, distance=models.Distance.COSINE))
        try:
            with translated(f"add the vector {name!r} to {collection!r}"):
                create(collection, name, config, wait=True)
        except StoreError as exc:
            if isinstance(exc, (CollectionNotFoundError, StoreUnavailableError)):
                raise
            raise StoreError(f"Qdrant cannot add the vector {name!r} to {collection!r} ({exc}). {by_hand}.") from exc
        log.info("added vector %s (cosine, %d) to collection %s", name, dim, collection)

    def _create_indexes(self, collection: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # local mode ignores payload indexes, and says so
            for field in FILTER_FIELDS:
                self.client.create_payload_index(
                    collection, self.payload_prefix + field, models.PayloadSchemaType.KEYWORD
                )

    # -- points
    def upsert(
        self,
        collection: str,
        ids: Sequence[PointId],
        vectors: NDArray[np.float32],
        payloads: Sequence[dict[str, Any]],
        *,
        regions: NDArray[np.float32] | None = None,
    ) -> None:
        """Write points (with their regions (N, R, D) when given) in one request; wait until Qdrant applied them.

        Host points that already exist keep their other vectors and payload: only sketchtext's part changes."""
        if not ids:
            return
        point_ids = [qdrant_id(i) for i in ids]
        existing = self._existing(collection, point_ids) if self.host_points else set()
        operations: list[Any] = []
        new_points = []
        rows = self.stored_rows(collection, vectors, regions)
        cells = rows if rows is not None else [None] * len(point_ids)
        for pid, vector, region, payload in zip(point_ids, vectors, cells, payloads, strict=True):
            named: Any = {self.vector_name: vector.tolist()} if self.vector_name else vector.tolist()
            if region is not None:
                named = {self.vector_name or "": vector.tolist(), self.regions_name: region.tolist()}
            own = self.own(payload)
            if pid in existing:
                operations.append(
                    models.UpdateVectorsOperation(
                        update_vectors=models.UpdateVectors(points=[models.PointVectors(id=pid, vector=named)])
                    )
                )
                operations.append(models.SetPayloadOperation(set_payload=models.SetPayload(payload=own, points=[pid])))
            else:
                new_points.append(models.PointStruct(id=pid, vector=named, payload=own))
        if new_points:
            operations.append(models.UpsertOperation(upsert=models.PointsList(points=new_points)))
        with translated(f"write {len(point_ids)} points to {collection!r}"):
            self.client.batch_update_points(collection, update_operations=operations, wait=True)

    def _existing(self, collection: str, ids: Sequence[str | int]) -> set[str | int]:
        with translated(f"read points of {collection!r}"):
            found = self.client.retrieve(collection, ids=list(ids), with_payload=False, with_vectors=False)
        return {qdrant_id(point.id) for point in found}

    def delete(self, collection: str, ids: Sequence[PointId]) -> None:
        """Remove sketchtext's points; from host points, remove only sketchtext's vector and payload."""
        if not ids:
            return
        selector = models.PointIdsList(points=[qdrant_id(i) for i in ids])
        with translated(f"delete points from {collection!r}"):
            if self.host_points and self.vector_name:
                self.client.delete_vectors(collection, vectors=self.own_vectors(collection), points=selector, wait=True)
                self.client.delete_payload(collection, keys=[HOST_PAYLOAD_KEY], points=selector, wait=True)
            else:
                self.client.delete(collection, points_selector=selector, wait=True)

    def query_batch(
        self,
        collection: str,
        requests: Sequence[tuple[NDArray[np.float32], models.Filter | None, int]],
        pages: Sequence[Page] | None = None,
    ) -> list[list[models.ScoredPoint]]:
        """Several queries in one round trip; each result best first."""
        batch = [
            models.QueryRequest(
                query=vector.tolist(),
                using=self.vector_name,
                filter=query_filter,
                limit=limit,
                offset=offset or None,
                score_threshold=threshold,
                with_payload=True,
            )
            for (vector, query_filter, limit), (offset, threshold) in zip(
                requests, pages or [(0, None)] * len(requests), strict=True
            )
        ]
        with translated(f"query {collection!r}"):
            responses = self.client.query_batch_points(collection, requests=batch)
        return [list(response.points) for response in responses]

    def query_regions_batch(
        self,
        collection: str,
        requests: Sequence[tuple[NDArray[np.float32], models.Filter | None, int]],
        search: RegionSearch,
    ) -> list[list[models.ScoredPoint]]:
        """Two-stage queries (prefetch by the global vector, rerank by regions) in one round trip."""
        plans = self.region_plans(collection, requests, search)
        batch = [models.QueryRequest(**region_request(plan), with_payload=True) for plan in plans]
        with translated(f"query regions of {collection!r}"):
            responses = self.client.query_batch_points(collection, requests=batch)
        return [list(response.points) for response in responses]

    def stored_vector(self, collection: str, point_id: PointId) -> NDArray[np.float32] | None:
        """The point's stored vector, read back (Qdrant's own query by id leaves the point itself out of its hits)."""
        using: Any = [self.vector_name] if self.vector_name else True
        with translated(f"read a point of {collection!r}"):
            found = self.client.retrieve(collection, ids=[qdrant_id(point_id)], with_payload=False, with_vectors=using)
        return self.picked_vector(found[0].vector) if found else None

    def points(
        self, collection: str, page: int = 1000, query_filter: models.Filter | None = None
    ) -> Iterator[tuple[str | int, dict[str, Any]]]:
        """Every point holding a sketchtext vector (those `query_filter` admits), as (id, sketchtext's payload)."""
        offset: Any = None
        while True:
            with translated(f"read points of {collection!r}"):
                records, offset = self.client.scroll(
                    collection,
                    scroll_filter=query_filter,
                    limit=page,
                    offset=offset,
                    with_payload=True,
                    with_vectors=False,
                )
            for record in records:
                own = self.own_payload(record.payload)
                if own or not self.host_points:
                    yield qdrant_id(record.id), own
            if offset is None:
                return

    def exists(self, collection: str) -> bool:
        with translated(f"read collection {collection!r}"):
            return bool(self.client.collection_exists(collection))

    def count(self, collection: str, query_filter: models.Filter | None = None) -> int:
        with translated(f"count points of {collection!r}"):
            return int(self.client.count(collection, count_filter=query_filter, exact=True).count)

    def optimize(self, collection: str) -> bool:
        """Nothing to do: a Qdrant server indexes by itself, and local mode has no index."""
        return False


def region_params(dim: int) -> models.VectorParams:
    """MaxSim multivector by dot product (its rows are mixed, not unit: `regions.mixed_rows`), never indexed (m=0:
    it only reranks), kept on disk."""
    return models.VectorParams(
        size=dim,
        distance=models.Distance.DOT,
        multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
        hnsw_config=models.HnswConfigDiff(m=0),
        on_disk=True,
    )


def open_local(path: Path) -> QdrantClient:
    """The embedded (local-mode) store; only one process may hold the folder."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=str(path))
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise StoreUnavailableError(
                f"The embedded store {path} is in use by another process. Qdrant's local mode allows one process "
                "at a time: stop the other one, or run a Qdrant server and set SKETCHTEXT_STORE__URL."
            ) from exc
        raise StoreError(f"Cannot open the embedded store {path}: {exc}") from exc
