"""The store interface and the choice of backend: a Qdrant server, Qdrant Edge (embedded default) or local mode.

| settings                                  | backend                                          |
|-------------------------------------------|--------------------------------------------------|
| `store.url` set                           | `QdrantStore` over qdrant-client (server/cluster) |
| `store.backend = "edge"` (default)        | `EdgeStore`, Qdrant Edge in the process          |
| `store.backend = "local"`                 | `QdrantStore` in qdrant-client's local mode      |

An embedded folder that already holds a qdrant-client local-mode store keeps working: it is opened in local mode
until `sketchtext store migrate` moves it to Edge.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from sketchtext.plugin.errors import StoreError
from sketchtext.plugin.settings import Settings

if TYPE_CHECKING:
    from qdrant_client import models

log = logging.getLogger(__name__)

LOCAL_MODE_FILES = ("meta.json", "collection", ".lock")  # what qdrant-client's local mode keeps in its folder
EDGE_FOLDER = "edge"


@runtime_checkable
class VectorStore(Protocol):
    """What ingest and search need from a vector store; `QdrantStore` and `EdgeStore` implement it."""

    vector_name: str | None
    host_points: bool  # points are a host's products: sketchtext's payload lives under one `sketchtext` object

    @property
    def payload_prefix(self) -> str:
        """Where sketchtext's payload fields live in a point ('' or 'sketchtext.')."""

    def own_payload(self, payload: Mapping[str, Any] | None) -> dict[str, Any]:
        """sketchtext's fields of a point's payload."""

    def exists(self, collection: str) -> bool:
        """Whether the collection exists."""

    def ensure_collection(self, collection: str, dim: int, fingerprint: str) -> None:
        """Create the collection bound to a model fingerprint, or check that it is bound to it."""

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
    ) -> None:
        """Write points; return only once they are stored."""

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
        self, collection: str, requests: Sequence[tuple[NDArray[np.float32], models.Filter | None, int]]
    ) -> list[list[models.ScoredPoint]]:
        """Several (vector, filter, limit) queries at once; each result best first."""

    def points(self, collection: str, page: int = 1000) -> Iterator[tuple[str | int, dict[str, Any]]]:
        """Every point holding a sketchtext vector, as (id, sketchtext's payload)."""

    def count(self, collection: str, query_filter: models.Filter | None = None) -> int:
        """Points in the collection (matching a filter)."""

    def optimize(self, collection: str) -> bool:
        """Build search indexes for what was written, where the backend does not do it by itself."""

    def close(self) -> None:
        """Flush and release the store."""

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


class Layout(StrEnum):
    """What an embedded store folder holds."""

    EMPTY = "empty"
    LOCAL = "local"  # a qdrant-client local-mode store with collections
    EDGE = "edge"
    BOTH = "both"  # an Edge store next to local-mode files (e.g. a migration's leftovers)


def local_mode_collections(path: Path) -> list[str]:
    """The collections of a qdrant-client local-mode store in `path` (empty when there is none)."""
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise StoreError(f"Cannot read {path / 'meta.json'}: {exc}; is {path} a Qdrant local-mode store?") from exc
    return sorted(meta.get("collections") or {})


def detect_layout(path: Path) -> Layout:
    local = bool(local_mode_collections(path))
    edge_folder = path / EDGE_FOLDER
    edge = edge_folder.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in edge_folder.iterdir())
    if local and edge:
        return Layout.BOTH
    return Layout.LOCAL if local else Layout.EDGE if edge else Layout.EMPTY


def open_store(settings: Settings) -> VectorStore:
    """The store the settings name: the server at `store.url`, else the embedded folder with its backend."""
    from sketchtext.plugin.store import QdrantStore

    store = settings.store
    if store.url:
        return QdrantStore.open(settings)
    path = settings.store_path
    layout = detect_layout(path)
    if store.backend == "local":
        if layout is Layout.EDGE:
            raise StoreError(
                f"The embedded store {path} holds a Qdrant Edge store, which local mode cannot read. "
                "Unset SKETCHTEXT_STORE__BACKEND (edge is the default) or choose another SKETCHTEXT_STORE__PATH."
            )
        return QdrantStore.open(settings)
    if layout is Layout.LOCAL:
        log.warning(
            "The embedded store %s was written by qdrant-client's local mode; using it as it is. "
            "Run `sketchtext store migrate` to move it to Qdrant Edge (faster queries, less memory).",
            path,
        )
        return QdrantStore.open(settings)
    if layout is Layout.BOTH:
        log.warning(
            "The embedded store %s holds a Qdrant Edge store and local-mode files; using Edge. Move the local-mode "
            "files (%s) away once you no longer need them.",
            path,
            ", ".join(LOCAL_MODE_FILES),
        )
    from sketchtext.plugin.store_edge import EdgeStore

    return EdgeStore.open(settings)
