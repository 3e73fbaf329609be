"""Opening the right store backend: a Qdrant server, Qdrant Edge (embedded default) or local mode.

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
from enum import StrEnum
from pathlib import Path

from sketchtext.plugin.errors import StoreError
from sketchtext.plugin.settings import Settings
from sketchtext.plugin.store.base import EDGE_FOLDER, VectorStore

log = logging.getLogger(__name__)

LOCAL_MODE_FILES = ("meta.json", "collection", ".lock")  # what qdrant-client's local mode keeps in its folder


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
    from sketchtext.plugin.store.qdrant import QdrantStore

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
    from sketchtext.plugin.store.edge import EdgeStore

    return EdgeStore.open(settings)
