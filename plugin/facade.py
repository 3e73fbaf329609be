"""`SketchTextPlugin`: the one object a host product or a front end needs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from sketchtext.plugin.db import Asset, AssetStatus, MetadataDB
from sketchtext.plugin.errors import AssetNotFoundError, CatalogError, QueryError
from sketchtext.plugin.ingest.inline import run_ingest
from sketchtext.plugin.ingest.pipeline import IngestContext, IngestSummary, point_id, remove_assets
from sketchtext.plugin.ingest.unchanged import ingest_unchanged
from sketchtext.plugin.ingest.verify import Difference, find_differences
from sketchtext.plugin.ingest.verify import repair as repair_differences
from sketchtext.plugin.model.query import Mode, QueryEncoder
from sketchtext.plugin.model.spec import export_folder, model_fingerprint
from sketchtext.plugin.search import (
    SearchHit,
    SketchTextQuery,
    asset_file,
    check_context,
    check_query,
    each_query,
    join_hits,
    prepare_inputs,
)
from sketchtext.plugin.settings import Settings, load_settings
from sketchtext.plugin.store.base import VectorStore, build_filter
from sketchtext.plugin.store.open import open_store
from sketchtext.plugin.store.regions import RegionPlan, RegionSearch, region_request, regions_name
from sketchtext.plugin.store.where import Scalar, Where, all_of, known_values, values_stamp, where_filter

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models

    from sketchtext.plugin.model.clip import ClipEncoder
    from sketchtext.plugin.model.remote import RemoteQueryEncoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedQuery:
    """What a host passes to its own `query_points(collection, **encoded.request())` (or, without regions,
    `query=encoded.query, using=..., query_filter=...`)."""

    vector: NDArray[np.float32]
    using: str | None
    query_filter: models.Filter | None
    limit: int
    mode: Mode | Literal["like"]  # "like": an asset's stored vector, nothing encoded
    regions: RegionSearch | None = None  # set: prefetch by `vector`, rerank by the photos' regions
    region_mix: float = 1.0  # the mix the collection stores its region rows at (regions.RegionPlan.mix)
    offset: int = 0
    score_threshold: float | None = None

    @property
    def query(self) -> list[float]:
        return self.vector.tolist()

    def request(self) -> dict[str, Any]:
        """Keyword arguments of `QdrantClient.query_points` (and `models.QueryRequest`) that run this query: one
        nearest search, or with regions the two stages in one round trip (prefetch with the filter, then rerank)."""
        if self.regions is None:
            page = {"offset": self.offset or None, "score_threshold": self.score_threshold}
            return {
                "query": self.query,
                "using": self.using,
                "query_filter": self.query_filter,
                "limit": self.limit,
                **{key: value for key, value in page.items() if value is not None},
            }
        using = regions_name(self.using)
        plan = RegionPlan(self.vector, self.using, using, self.query_filter, self.limit, self.regions, self.region_mix)
        return region_request(plan)


class SketchTextPlugin:
    """Sketch + text composed search over a Qdrant collection.

    Built from settings (embedded default: a local Qdrant folder and a SQLite file under the data directory), or
    from a host's own `QdrantClient` and collection. The model loads on first use.

    Example:
        >>> plugin = SketchTextPlugin()                                       # doctest: +SKIP
        >>> plugin.ingest(Path("./catalog"))                                  # doctest: +SKIP
        >>> hits = plugin.search(SketchTextQuery(sketch=Path("boot.png"), text="in tan suede", category="shoes"))
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        client: QdrantClient | None = None,
        collection: str | None = None,
        vector_name: str | None = None,
        encoder: ClipEncoder | None = None,
        remote_encoder: RemoteQueryEncoder | None = None,
        store: VectorStore | None = None,
        region_search: RegionSearch | None = None,
    ) -> None:
        """Args:
        settings: Configuration; `load_settings()` (environment and config file) when omitted.
        client: A host's `QdrantClient`; when given, sketchtext uses it instead of opening its own store.
        collection: The collection to ingest into and search; defaults to `settings.store.collection`.
        vector_name: A named vector of the collection to hold sketchtext vectors (for host collections).
        encoder: An already loaded encoder (shared between plugins, or a test model).

        With `settings.store.point_ids == "host"`, points are the host's products (ids from the catalog's
        `host_id`): sketchtext adds its named vector and a `sketchtext` payload object to them and leaves the rest.
        remote_encoder: Encodes queries elsewhere when `settings.queue.remote_encode` is on; defaults to the
            Celery one (a GPU worker running `sketchtext worker`).
        store: A store already opened with `open_store` (a worker's, held for its life); its opener closes it.
        region_search: How queries with `regions=True` rerank (candidates, region weight); `RegionSearch()`.
        """
        self.settings = settings or load_settings()
        self.collection = collection or self.settings.store.collection
        vector_name = vector_name or self.settings.store.vector_name
        host_points = self.settings.store.point_ids == "host"
        self._store: VectorStore | None = store
        self._owns_store = store is None
        if client is not None:
            from sketchtext.plugin.store.qdrant import QdrantStore

            self._store = QdrantStore(client, vector_name=vector_name, host_points=host_points)
        self._vector_name = vector_name
        self._encoder = encoder
        self._db: MetadataDB | None = None
        self._remote = remote_encoder
        self._query_encoder: QueryEncoder | None = None
        self.region_search = region_search or RegionSearch()
        self._known: tuple[tuple[object, ...], dict[str, list[Scalar]]] | None = None

    # -- parts, created on first use
    @property
    def encoder(self) -> ClipEncoder:
        """The CLIP model (loaded on first use, on the GPU when there is one)."""
        if self._encoder is None:
            from sketchtext.plugin.model.factory import load_encoder

            model = self.settings.model
            self._encoder = load_encoder(
                model.spec,
                device=model.device,
                precision=model.precision,
                checkpoint=model.checkpoint,
                models_dir=model.models_dir or self.settings.data_dir / "models",
            )
        return self._encoder

    @property
    def query_encoder(self) -> QueryEncoder:
        """What makes query vectors, chosen once: a worker's model when `queue.remote_encode` is on (the model never
        loads here), an ONNX export for an `onnx:DIR` spec (onnxruntime, no torch), else the local encoder (zero-shot,
        or composed with a checkpoint)."""
        if self._query_encoder is None:
            if self.settings.queue.remote_encode:
                from sketchtext.plugin.model.remote import RemoteEncoder, load_remote_encoder

                self._query_encoder = RemoteEncoder(self._remote or load_remote_encoder(self.settings))
            elif self._encoder is None and (folder := export_folder(self.settings.model.spec)) is not None:
                from sketchtext.plugin.model.onnx import open_export

                self._query_encoder = open_export(folder, self.settings.model.checkpoint)
            else:
                self._query_encoder = self.encoder
        return self._query_encoder

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = open_store(self.settings)
            self._store.vector_name = self._vector_name  # a constructor argument wins over settings
        return self._store

    @property
    def db(self) -> MetadataDB:
        if self._db is None:
            db = MetadataDB(self.settings.database_url)
            db.ensure_schema(auto_upgrade=db.engine.dialect.name == "sqlite")
            self._db = db
        return self._db

    def close(self) -> None:
        """Release the store (when sketchtext opened it) and the database connections."""
        if self._store is not None and self._owns_store:
            self._store.close()
        if self._db is not None:
            self._db.engine.dispose()

    def __enter__(self) -> SketchTextPlugin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingest
    def ingest_context(self) -> IngestContext:
        return IngestContext(self.encoder, self.store, self.db, self.collection, regions=self.settings.store.regions)

    def add_to_collection(self, root: str | Path, *, batch_size: int | None = None) -> IngestSummary:
        """Add sketchtext's named vector to the host's existing collection, then fill it from the catalogue.

        The vector is `vector_name`, cosine, of the model's size; it is created with qdrant-client's
        `create_vector_name` (Qdrant server and qdrant-client 1.18 or later, local mode, Qdrant Edge). The host's
        points, vectors and payload stay as they are. Calling it again only embeds new or changed photos.

        Args:
            root: The catalog folder (with catalog.csv naming each photo's `host_id`).
            batch_size: Images per encoder pass; defaults to `settings.model.batch_size`.

        Raises:
            CollectionNotFoundError: the collection does not exist.
            StoreError: the server cannot add a named vector; the message gives the exact `VectorParams`.
        """
        self.store.add_vector(self.collection, self.encoder.dim)
        return self.ingest(root, batch_size=batch_size)

    def ingest(
        self,
        root: str | Path,
        *,
        batch_size: int | None = None,
        prune: bool = False,
        progress: Callable[[int, int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> IngestSummary:
        """Embed every new or changed photo under `root` into the collection; record unreadable files as failed.

        Args:
            root: The catalog folder (first-level subfolders are categories; optional catalog.csv / .jsonl).
            batch_size: Images per encoder pass; defaults to `settings.model.batch_size`.
            prune: Also remove assets whose files are gone.
            progress: Called as `progress(entries_in_batch, total_entries)` after each batch; raising
                `IngestCancelledError` there stops the run (recorded as interrupted).
            on_start: Called with the run id once the run is recorded in SQL.
        """
        if self._encoder is None and not prune and not self.settings.queue.remote_encode:
            model = self.settings.model  # a re-ingest with nothing new never loads the model
            fingerprint = model_fingerprint(model.spec, model.checkpoint)
            done = ingest_unchanged(self.store, self.db, self.collection, Path(root), fingerprint, progress)
            if done is not None:
                return done
        return run_ingest(
            self.ingest_context(),
            Path(root),
            batch_size=batch_size or self.settings.model.batch_size,
            prune=prune,
            progress=progress,
            on_start=on_start,
        )

    def delete(self, keys: Sequence[str] = (), *, skus: Sequence[str] = (), where: Where | None = None) -> list[str]:
        """Remove assets (by key, every asset of a sku, or every asset a `where` filter matches, as search reads it):
        their points and SQL rows go together, in ingest's write order backwards, so an interrupted delete leaves
        nothing `verify` cannot explain and a rerun finishes it. A later ingest of a folder that still holds the file
        adds it again.

        Returns:
            The keys removed, sorted.

        Raises:
            AssetNotFoundError: a key or sku is not in the collection (nothing is removed).
            IngestBusyError: an ingest into the collection is running.
        """
        found = set(self.db.assets_by_key(self.collection, list(keys)))
        by_sku = self.db.keys_by_sku(self.collection, list(skus)) if skus else {}
        unknown = [k for k in keys if k not in found] + [f"sku {s}" for s in skus if s not in by_sku]
        if unknown:
            raise AssetNotFoundError(
                f"Not in collection {self.collection!r}: {', '.join(unknown[:10])}; "
                "`sketchtext search --json` shows keys and skus."
            )
        matched: set[str] = set()
        if where:
            query_filter = where_filter(where, self.filter_values(), prefix=self.store.payload_prefix)
            matched = {str(own["key"]) for _, own in self.store.points(self.collection, query_filter=query_filter)}
            if not matched:
                raise AssetNotFoundError(f"No asset of collection {self.collection!r} matches where={dict(where)!r}.")
        chosen = sorted(found.union(matched, *by_sku.values()))
        with self.db.exclusive(f"the ingest lock of collection {self.collection!r}"):
            remove_assets(self.store, self.db, self.collection, chosen)
        return chosen

    def verify(self, root: str | Path | None = None, *, repair: bool = False) -> list[Difference]:
        """Compare SQL rows, Qdrant points and the files under `root` (default: the folder last ingested).

        Args:
            root: The catalog folder.
            repair: Resolve what is found (re-embed, delete orphans, drop rows of gone files), then check again.

        Returns:
            The differences found (after a repair: those left, normally none).
        """
        root = Path(root) if root is not None else self.db.latest_source(self.collection)
        if root is None:
            raise CatalogError(f"Nothing was ever ingested into {self.collection!r}; pass the catalog folder.")
        differences = find_differences(self.store, self.db, self.collection, root)
        if repair and differences:
            repair_differences(self.ingest_context, self.store, self.db, self.collection, root, differences)
            differences = find_differences(self.store, self.db, self.collection, root)
        return differences

    # -- queries
    def like_asset(self, like: str | uuid.UUID) -> Asset:
        """The embedded asset a "find similar" names, by asset id or key."""
        text = str(like).strip()
        try:
            row = self.db.asset(self.collection, uuid.UUID(text))
        except ValueError:
            row = None
        row = row or self.db.assets_by_key(self.collection, [text]).get(text)
        if row is None or row.status != AssetStatus.EMBEDDED:
            raise QueryError(
                f"No embedded asset {text!r} in collection {self.collection!r}; give an asset id or key from a hit."
            )
        return row

    def like_vector(self, row: Asset) -> NDArray[np.float32]:
        """An asset's stored vector, read back from the store (no encoding)."""
        vector = self.store.stored_vector(self.collection, point_id(self.store, self.collection, row.key, row.host_id))
        if vector is None:
            raise QueryError(f"Asset {row.key!r} has no stored vector; re-ingest it (`sketchtext verify --repair`).")
        return vector

    def photo_path(self, key: str) -> Path | None:
        """An asset's photo in the catalogue folder (`web.catalog_root`, else the one last ingested), if it is there."""
        root = self.settings.web.catalog_root or self.db.latest_source(self.collection)
        return asset_file(root, key) if root is not None else None

    def like_photo(self, query: SketchTextQuery, row: Asset) -> SketchTextQuery:
        """The query with the asset's photo in the sketch's place: photo + words go the composer's way."""
        path = self.photo_path(row.key)
        if path is None:
            raise QueryError(
                f"The photo of {row.key!r} is not in the catalogue folder, so it cannot be combined with words; "
                "re-ingest the folder, or search like it without words."
            )
        return replace(query, sketch=path, like=None)

    def filter_values(self) -> dict[str, list[Scalar]]:
        """The fields `where` may name and their values, read again only after the embedded assets changed."""
        stamp = values_stamp(self.db, self.collection)
        if self._known is None or self._known[0] != stamp:
            self._known = (stamp, known_values(self.db, self.collection))
        return self._known[1]

    def encode_batch(self, queries: Sequence[SketchTextQuery]) -> list[EncodedQuery]:
        """Encode many queries with one pass through each tower (a `like` without words reads its stored vector)."""
        each_query(queries, check_query)
        known = self.filter_values() if any(q.where for q in queries) else {}
        prefix = self.store.payload_prefix
        filters = each_query(
            queries,
            lambda q: all_of(
                build_filter(q.context(), q.filters, prefix=prefix), where_filter(q.where, known, prefix=prefix)
            ),
        )
        liked = each_query(queries, lambda q: self.like_asset(q.like) if q.like is not None else None)
        rows = {i: row for i, row in enumerate(liked) if row is not None}
        stored = {
            i: self.like_vector(rows[i]) for i, q in enumerate(queries) if i in rows and not (q.text or "").strip()
        }
        todo = [self.like_photo(q, rows[i]) if i in rows else q for i, q in enumerate(queries) if i not in stored]
        inputs = each_query(todo, prepare_inputs)
        made = iter(
            zip(*self.query_encoder.query_vectors(inputs, [q.combine for q in todo]), strict=True) if todo else []
        )
        mix = self.store.queried_mix(self.collection) if any(q.regions for q in queries) else 1.0
        encoded = []
        for i, (query, query_filter) in enumerate(zip(queries, filters, strict=True)):
            vector, mode = (stored[i], "like") if i in stored else next(made)
            encoded.append(
                EncodedQuery(
                    vector=vector,
                    using=self._vector_name,
                    query_filter=query_filter,
                    limit=query.limit,
                    mode=mode,  # type: ignore[arg-type]
                    regions=self.region_search if query.regions else None,
                    region_mix=mix,
                    offset=query.offset,
                    score_threshold=query.score_threshold,
                )
            )
        return encoded

    @property
    def query_fingerprint(self) -> str:
        """The model that makes query vectors (a worker's when encoding remotely)."""
        return self.query_encoder.fingerprint

    def encode(self, query: SketchTextQuery) -> EncodedQuery:
        """The query vector, named vector and filter for a host to run with its own client.

        Example:
            >>> q = plugin.encode(SketchTextQuery(sketch=png_bytes, text="in red", category="shoes"))  # doctest: +SKIP
            >>> client.query_points("products", **q.request())  # doctest: +SKIP
            >>> # SketchTextQuery(..., regions=True): the same call runs the prefetch + regions rerank
        """
        return self.encode_batch([query])[0]

    def search_batch(self, queries: Sequence[SketchTextQuery]) -> list[list[SearchHit]]:
        """Run many queries; results per query in score order, joined with their SQL rows."""
        if any(q.category is not None or q.scene is not None for q in queries):
            known = self.db.facets(self.collection)
            each_query(queries, lambda query: check_context(query, known))
        batch = self.encode_batch(queries)  # validates every query before touching the store
        self.store.check_binding(self.collection, self.query_fingerprint)
        results: list[Any] = [None] * len(batch)
        for rerank in (False, True):  # plain queries in one batch, regions queries in another
            rows = [i for i, encoded in enumerate(batch) if (encoded.regions is not None) == rerank]
            if not rows:
                continue
            requests = [(batch[i].vector, batch[i].query_filter, batch[i].limit) for i in rows]
            pages = [(batch[i].offset, batch[i].score_threshold) for i in rows]
            found = (
                self.store.query_regions_batch(self.collection, requests, self.region_search)
                if rerank
                else self.store.query_batch(self.collection, requests, pages)
            )
            for i, points in zip(rows, found, strict=True):
                results[i] = points
        hits = [join_hits(points, self.db, self.collection, self.store.own_payload) for points in results]
        orphans = sum(hit.asset is None for query_hits in hits for hit in query_hits)
        if orphans:  # the store has points SQL does not know: the database was deleted, replaced or restored
            log.warning(
                "%d hit(s) have no row in the metadata database at %s (deleted or replaced?), so they carry no "
                "metadata; run `sketchtext verify --repair CATALOG` to rebuild it from the store and the catalogue.",
                orphans,
                self.db.where,
            )
        return hits

    def search(self, query: SketchTextQuery) -> list[SearchHit]:
        """Run one query and return typed hits (score, payload, SQL metadata), best first."""
        return self.search_batch([query])[0]
