"""What every vector store shares: the interface, point ids, context filters, sketchtext's payload and the binding
of a collection to the model that made its vectors. `QdrantStore` (server, local mode) and `EdgeStore` (embedded
default) both build on `StoreBase`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from sketchtext.plugin.errors import ConfigError, ModelMismatchError, QueryError, StoreError
from sketchtext.plugin.store.regions import (
    MIX_KEY,
    REGION_WEIGHT,
    REGIONS_KEY,
    RegionPlan,
    RegionSearch,
    mixed_rows,
    regions_name,
)

if TYPE_CHECKING:  # qdrant-client loads with a backend (it brings httpx, grpc and click): hosts import us cheaply
    from qdrant_client import models

EDGE_FOLDER = "edge"  # the Edge store's folder inside the embedded store folder

# Payload fields that context filters may name; each gets a keyword index.
FILTER_FIELDS = ("category", "scene", "sku")
BINDING_KEY = "sketchtext_model"
HOST_PAYLOAD_KEY = "sketchtext"

FilterValue = str | int | Sequence[str | int]
PointId = uuid.UUID | str | int
Page = tuple[int, float | None]  # (offset: hits skipped, score_threshold: the lowest score kept), Qdrant's own


def qdrant_id(value: PointId) -> str | int:
    """A point id as Qdrant takes it: an unsigned integer or a UUID string (host ids may be either)."""
    if isinstance(value, int):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise StoreError(
            f"Point id {value!r} is neither an unsigned integer nor a UUID, which is all Qdrant accepts; "
            "use such host ids, or the default asset ids (SKETCHTEXT_STORE__POINT_IDS=asset)."
        ) from None


def build_filter(
    context: Mapping[str, FilterValue | None] | None, host: models.Filter | None = None, *, prefix: str = ""
) -> models.Filter | None:
    """A Qdrant filter from `{"category": "shoes", "scene": ["beach", "street"]}` (one value or any of several),
    combined (AND) with a host's own filter; `prefix` addresses fields nested under sketchtext's own object."""
    from qdrant_client import models

    must: list[Any] = []
    for name, value in (context or {}).items():
        if value is None:
            continue
        if name not in FILTER_FIELDS:
            raise QueryError(
                f"Unknown filter field {name!r}; valid fields: {', '.join(FILTER_FIELDS)}. "
                "Pass a qdrant_client Filter for anything else."
            )
        if isinstance(value, str | int):
            must.append(models.FieldCondition(key=prefix + name, match=models.MatchValue(value=value)))
        else:
            values = list(value)
            if not values:
                continue
            must.append(models.FieldCondition(key=prefix + name, match=models.MatchAny(any=values)))  # type: ignore[arg-type]
    if host is not None:
        must.append(host)
    return models.Filter(must=must) if must else None


@runtime_checkable
class VectorStore(Protocol):
    """What ingest and search need from a vector store; `QdrantStore` and `EdgeStore` implement it."""

    vector_name: str | None
    host_points: bool  # points are a host's products: sketchtext's payload lives under one `sketchtext` object

    @property
    def payload_prefix(self) -> str:
        """Where sketchtext's payload fields live in a point ('' or 'sketchtext.')."""

    @property
    def regions_name(self) -> str:
        """The multivector holding the regions of this store's vector."""

    def own_payload(self, payload: Mapping[str, Any] | None) -> dict[str, Any]:
        """sketchtext's fields of a point's payload."""

    def exists(self, collection: str) -> bool:
        """Whether the collection exists."""

    def ensure_collection(self, collection: str, dim: int, fingerprint: str, *, region_grid: int | None = None) -> None:
        """Create the collection bound to a model fingerprint (with a regions multivector when `region_grid` is
        set), or check that it is bound to it (an existing collection keeps what it has)."""

    def region_grid(self, collection: str) -> int | None:
        """The region grid recorded in the collection's binding; None when its points hold no regions."""

    def add_vector(self, collection: str, dim: int) -> bool:
        """Add the named vector (cosine, `dim`) to an existing collection; False when it is already there."""

    def binding(self, collection: str) -> str | None:
        """The fingerprint of the model that filled the collection (None when unbound)."""

    def check_binding(self, collection: str, fingerprint: str) -> None:
        """Raise `ModelMismatchError` unless the collection holds vectors of `fingerprint`."""

    def upsert(
        self,
        collection: str,
        ids: Sequence[uuid.UUID | str | int],
        vectors: NDArray[np.float32],
        payloads: Sequence[dict[str, Any]],
        *,
        regions: NDArray[np.float32] | None = None,
    ) -> None:
        """Write points (with their regions, (N, R, D), in a collection that has them); return once stored."""

    def delete(self, collection: str, ids: Sequence[uuid.UUID | str | int]) -> None:
        """Remove points by id."""

    def query(
        self,
        collection: str,
        vector: NDArray[np.float32],
        *,
        query_filter: models.Filter | None = None,
        limit: int = 10,
    ) -> list[models.ScoredPoint]:
        """Nearest points by cosine similarity, best first."""

    def query_batch(
        self,
        collection: str,
        requests: Sequence[tuple[NDArray[np.float32], models.Filter | None, int]],
        pages: Sequence[Page] | None = None,
    ) -> list[list[models.ScoredPoint]]:
        """Several (vector, filter, limit) queries at once, each optionally paged (offset, score threshold); each
        result best first."""

    def stored_vector(self, collection: str, point_id: PointId) -> NDArray[np.float32] | None:
        """The vector stored for a point (None when it has none): "find similar" without re-encoding."""

    def query_regions_batch(
        self,
        collection: str,
        requests: Sequence[tuple[NDArray[np.float32], models.Filter | None, int]],
        search: RegionSearch,
    ) -> list[list[models.ScoredPoint]]:
        """Two-stage queries: prefetch by the global vector with the filter, rerank by regions; best first."""

    def points(
        self, collection: str, page: int = 1000, query_filter: models.Filter | None = None
    ) -> Iterator[tuple[str | int, dict[str, Any]]]:
        """Every point holding a sketchtext vector (those `query_filter` admits), as (id, sketchtext's payload)."""

    def count(self, collection: str, query_filter: models.Filter | None = None) -> int:
        """Points in the collection (matching a filter)."""

    def optimize(self, collection: str) -> bool:
        """Build search indexes for what was written, where the backend does not do it by itself."""

    def hold(self) -> None:
        """Claim the store for this process now (a worker or a server at start-up); only an embedded store can be
        held, a Qdrant server takes many clients."""

    def close(self) -> None:
        """Flush and release the store."""

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


class StoreBase:
    """What both backends do the same way; a backend adds its own reading and writing."""

    vector_name: str | None
    host_points: bool

    @property
    def payload_prefix(self) -> str:
        """Where sketchtext's payload fields live: top level, or under `sketchtext.` in host points."""
        return f"{HOST_PAYLOAD_KEY}." if self.host_points else ""

    def own_payload(self, payload: Mapping[str, Any] | None) -> dict[str, Any]:
        """sketchtext's fields of a point's payload."""
        payload = payload or {}
        return dict(payload.get(HOST_PAYLOAD_KEY) or {}) if self.host_points else dict(payload)

    def own(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload to write for sketchtext's fields (nested under one object in host points)."""
        return {HOST_PAYLOAD_KEY: payload} if self.host_points else payload

    @property
    def binding_field(self) -> str:
        """The collection metadata key that names the model of this store's vector."""
        return f"{BINDING_KEY}:{self.vector_name or ''}"

    def binding(self, collection: str) -> str | None:
        raise NotImplementedError

    def metadata(self, collection: str) -> dict[str, Any]:
        """sketchtext's record of a collection (its binding)."""
        raise NotImplementedError

    @property
    def regions_name(self) -> str:
        """The multivector holding the regions of this store's vector."""
        return regions_name(self.vector_name)

    @property
    def regions_field(self) -> str:
        """The collection metadata key that records the region grid of this store's vector."""
        return f"{REGIONS_KEY}:{self.vector_name or ''}"

    def region_grid(self, collection: str) -> int | None:
        """The region grid recorded in the collection's binding; None when its points hold no regions."""
        value = self.metadata(collection).get(self.regions_field)
        return int(value) if value is not None else None

    def own_vectors(self, collection: str) -> list[str]:
        """The named vectors sketchtext writes in a host's points: its vector, and its regions where it has them."""
        regions = [self.regions_name] if self.region_grid(collection) is not None else []
        return [str(self.vector_name), *regions]

    def region_fields(self, grid: int) -> dict[str, Any]:
        """What a new collection with regions records: the grid, and the mix its rows are stored at."""
        return {self.regions_field: grid, f"{MIX_KEY}:{self.vector_name or ''}": REGION_WEIGHT}

    def region_mix(self, collection: str) -> float | None:
        """The mix w₀ of the collection's stored region rows (1.0: plain regions, as before the mix); None without
        regions. A collection keeps its regions for life, so a yes is read once, not per query or batch."""
        known: dict[str, float] = self.__dict__.setdefault("_region_mix", {})
        if collection not in known and self.region_grid(collection) is not None:
            known[collection] = float(self.metadata(collection).get(f"{MIX_KEY}:{self.vector_name or ''}", 1.0))
        return known.get(collection)

    def stored_rows(
        self, collection: str, vectors: NDArray[np.float32], regions: NDArray[np.float32] | None
    ) -> NDArray[np.float32] | None:
        """The region rows an upsert writes: the photos' regions mixed with their global vectors at the collection's
        mix (`regions.mixed_rows`); None when the batch has no regions."""
        if regions is None:
            return None
        mix = self.region_mix(collection)
        if mix is None:
            raise StoreError(
                f"Collection {collection!r} holds no photo regions; this batch's regions have nowhere to go."
            )
        return mixed_rows(np.asarray(vectors, np.float32), regions, mix)

    def queried_mix(self, collection: str) -> float:
        """The mix of the collection's region rows, for a regions query; a clear error when it holds no regions."""
        mix = self.region_mix(collection)
        if mix is None:
            raise QueryError(
                f"Collection {collection!r} holds no photo regions, so a regions query cannot run on it; search "
                "without regions, or ingest the catalogue into a new collection with `sketchtext ingest --regions` "
                "(regions are chosen when a collection is created)."
            )
        return mix

    def region_plans(
        self,
        collection: str,
        requests: Sequence[tuple[NDArray[np.float32], models.Filter | None, int]],
        search: RegionSearch,
    ) -> list[RegionPlan]:
        """The two-stage plan of each request; a clear error when the collection holds no regions."""
        mix = self.queried_mix(collection)
        return [
            RegionPlan(vector, self.vector_name, self.regions_name, query_filter, limit, search, mix)
            for vector, query_filter, limit in requests
        ]

    def check_binding(self, collection: str, fingerprint: str) -> None:
        """Raise unless the collection exists and holds vectors of the model `fingerprint`."""
        bound = self.binding(collection)
        if bound is not None and bound != fingerprint:
            raise ModelMismatchError.for_collection(collection, bound, fingerprint)

    def vector_size(self, collection: str) -> int | None:
        """The size of this store's vector in the collection, None when the collection has no such vector."""
        raise NotImplementedError

    def create_vector(self, collection: str, dim: int) -> None:
        """Add this store's named vector (cosine, `dim`) to an existing collection."""
        raise NotImplementedError

    def add_vector(self, collection: str, dim: int) -> bool:
        """Add the named vector (cosine, `dim`) to an existing collection; False when it is already there."""
        if not self.vector_name:
            raise ConfigError(
                f"Adding sketchtext to the existing collection {collection!r} needs a vector name: pass "
                "vector_name='sketch' to SketchTextPlugin (or set SKETCHTEXT_STORE__VECTOR_NAME)."
            )
        size = self.vector_size(collection)
        if size is not None:
            self.check_vector_size(collection, size, dim)
            return False
        self.create_vector(collection, dim)
        return True

    def check_vector_size(self, collection: str, size: int | None, dim: int) -> None:
        """Raise unless a host collection's vector slot exists and has the model's dimension."""
        if size is None:
            raise StoreError(
                f"Collection {collection!r} has no vector named {self.vector_name!r}; add it (cosine, size {dim}) and "
                "fill it with `plugin.add_to_collection(catalog_dir)`, or set SKETCHTEXT_STORE__VECTOR_NAME to an "
                "existing one."
            )
        if size != dim:
            raise ModelMismatchError(
                f"Collection {collection!r} has vectors of size {size}, the model makes {dim}; "
                "use another collection or vector name."
            )

    def query_batch(
        self,
        collection: str,
        requests: Sequence[tuple[NDArray[np.float32], models.Filter | None, int]],
        pages: Sequence[Page] | None = None,
    ) -> list[list[models.ScoredPoint]]:
        raise NotImplementedError

    def stored_vector(self, collection: str, point_id: PointId) -> NDArray[np.float32] | None:
        raise NotImplementedError

    def picked_vector(self, vector: Any) -> NDArray[np.float32] | None:
        """This store's vector out of a retrieved record's vector (a list, or a dict of named vectors)."""
        if isinstance(vector, dict):
            vector = vector.get(self.vector_name or "")
        return None if vector is None else np.asarray(vector, dtype=np.float32)

    def query(
        self,
        collection: str,
        vector: NDArray[np.float32],
        *,
        query_filter: models.Filter | None = None,
        limit: int = 10,
    ) -> list[models.ScoredPoint]:
        """Nearest points by cosine similarity, best first."""
        return self.query_batch(collection, [(vector, query_filter, limit)])[0]

    def hold(self) -> None:
        """Claim the store for this process now (a worker or a server at start-up); only an embedded store can be
        held, a Qdrant server takes many clients."""

    def close(self) -> None:
        """Flush and release the store."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
