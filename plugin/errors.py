"""The project's error hierarchy: every message says what to do next."""

from __future__ import annotations


class SketchTextError(Exception):
    """Root of every error sketchtext raises on purpose."""


class ConfigError(SketchTextError):
    """A setting or model spec is malformed."""


class ModelError(SketchTextError):
    """A model cannot be built or loaded."""


class ModelUnavailableError(ModelError):
    """Weights for a model spec cannot be obtained (offline, missing file)."""


class ModelMismatchError(SketchTextError):
    """A collection was filled by another model or checkpoint than the one in use."""

    @classmethod
    def for_collection(cls, collection: str, bound: str, fingerprint: str) -> ModelMismatchError:
        return cls(
            f"Collection {collection!r} holds vectors of model {bound}, but the model in use is {fingerprint}. "
            "Use the model that filled it, or re-index into a new collection "
            "(`sketchtext ingest ... --collection NEW`)."
        )


class StoreError(SketchTextError):
    """The vector store (Qdrant) failed."""


class StoreUnavailableError(StoreError):
    """Qdrant cannot be reached or opened."""


class CollectionNotFoundError(StoreError):
    """The named collection does not exist."""


class DatabaseError(SketchTextError):
    """The metadata database failed."""


class DatabaseUnavailableError(DatabaseError):
    """The metadata database cannot be reached."""


class DatabaseDamagedError(DatabaseError):
    """The metadata database file is damaged (not a database, or broken pages)."""


class IngestBusyError(SketchTextError):
    """Another ingest into the same collection is running."""


class AssetNotFoundError(SketchTextError):
    """An asset named by key, sku or id is not in the collection."""


class IngestCancelledError(SketchTextError):
    """An ingest run was asked to stop (it stops after the batch under way, whose writes land whole)."""


class QueueError(SketchTextError):
    """Distributed work failed: a batch failed on a worker, or no worker answered in time."""


class QueueUnavailableError(QueueError):
    """The Celery broker or result backend cannot be reached."""


class CatalogError(SketchTextError):
    """The catalog folder or its sidecar metadata is unusable."""


class ImageError(SketchTextError):
    """An image cannot be read or decoded (recorded per asset, never fatal to a run)."""


class QueryError(SketchTextError):
    """A search query is malformed."""


class EmptyQueryError(QueryError):
    """A query has neither a usable sketch nor text."""


class InvalidSketchError(QueryError):
    """The sketch bytes are not a readable image."""


class DatasetError(CatalogError):
    """A sketch–photo training or evaluation set is missing files, malformed, or has an empty split."""


class CheckpointError(ModelError):
    """A trained sketchtext checkpoint is missing, incomplete, modified, or does not fit the base model."""
