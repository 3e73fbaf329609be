"""What one worker process holds: its settings, and the model, store and database, opened on first use."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import socket
import threading
import uuid
from contextlib import ExitStack
from typing import Any

from sketchtext.plugin.db import MetadataDB
from sketchtext.plugin.errors import (
    ConfigError,
    InvalidSketchError,
    ModelMismatchError,
    ModelUnavailableError,
    StoreError,
)
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.ingest.pipeline import BatchResult, IngestContext, ingest_batch, remove_assets
from sketchtext.plugin.ingest.queued import BatchJob, entries_for_job
from sketchtext.plugin.ingest.runs import worker_lock
from sketchtext.plugin.model.spec import ModelSpec
from sketchtext.plugin.search import SketchTextQuery
from sketchtext.plugin.settings import Settings
from sketchtext.plugin.store.base import VectorStore
from sketchtext.plugin.store.open import open_store
from sketchtext.plugin.store.qdrant import QdrantStore, translated

log = logging.getLogger(__name__)

POOLS = ("solo", "threads", "prefork")


class WorkerRuntime:
    """Per-process state of a worker. Created empty in the parent; everything heavy opens lazily where tasks run."""

    def __init__(self, settings: Settings) -> None:
        # A worker encodes locally: remote encoding here would send queries back to the queue.
        self.settings = settings.model_copy(
            update={"queue": settings.queue.model_copy(update={"remote_encode": False})}
        )
        self._plugin: SketchTextPlugin | None = None
        self._store: VectorStore | None = None  # opened by preflight and held for the worker's life
        self._collections: set[str] = set()
        self._lock = threading.RLock()
        self._alive: tuple[int, str, ExitStack] | None = None  # (pid, name, its held worker_lock)

    # -- start-up
    def preflight(self, pool: str, concurrency: int) -> None:
        """Fail at start-up, with the fix, on what would fail every task: the pool, the database, the store."""
        if pool not in POOLS:
            raise ConfigError(f"Unknown pool {pool!r}; use one of {', '.join(POOLS)}.")
        embedded = not self.settings.store.url
        if pool == "solo" and concurrency > 1:
            raise ConfigError("--pool solo runs one task at a time; use --pool threads or prefork for --concurrency.")
        if embedded and (pool == "prefork" or concurrency > 1):
            raise ConfigError(
                f"The embedded store {self.settings.store_path} allows one process and one writer: run the worker "
                "with --pool solo, or run a Qdrant server and set SKETCHTEXT_STORE__URL to use more workers."
            )
        spec = ModelSpec.parse(self.settings.model.spec)  # the model itself loads on the first task
        if spec.weights_path is not None and not spec.weights_path.is_file():
            raise ModelUnavailableError(
                f"Checkpoint file {spec.weights_path} does not exist on this worker; mount it there or fix "
                "SKETCHTEXT_MODEL__SPEC."
            )
        db = MetadataDB(self.settings.database_url)
        db.ensure_schema(auto_upgrade=db.engine.dialect.name == "sqlite")
        db.engine.dispose()  # children of a prefork pool must not share the parent's connections
        # Opening the store now holds the embedded folder for this worker's life, so a second worker on it fails here
        # (StoreUnavailableError naming the fix) instead of on its first batch.
        store = open_store(self.settings)  # the store every other command opens: Edge on the embedded default
        store.hold()
        if isinstance(store, QdrantStore) and not embedded:
            with translated("list collections"):
                store.client.get_collections()
        if pool == "prefork":
            store.close()  # each child opens its own client after the fork
        else:
            self._store = store
        log.info("worker ready: database %s, store %s", db.url, self.settings.store.url or self.settings.store_path)

    def worker_name(self) -> str:
        """This process's name, under which it holds its `worker_lock` until it ends (taken on the first task, after
        any fork): a driver that can take the lock knows the process is gone, and sends its batch again."""
        with self._lock:
            if self._alive is None or self._alive[0] != os.getpid():
                name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
                held = ExitStack()
                held.enter_context(worker_lock(self.plugin().db, name))
                self._alive = (os.getpid(), name, held)
            return self._alive[1]

    def close(self) -> None:
        with self._lock:
            if self._alive is not None and self._alive[0] == os.getpid():
                self._alive[2].close()
            self._alive = None
            if self._plugin is not None:
                self._plugin.close()
            if self._store is not None:
                self._store.close()
            self._plugin = self._store = None

    # -- parts
    def plugin(self) -> SketchTextPlugin:
        with self._lock:
            if self._plugin is None:
                self._plugin = SketchTextPlugin(self.settings, store=self._store)
            return self._plugin

    def context(self, collection: str, fingerprint: str | None = None, regions: bool | None = None) -> IngestContext:
        """An ingest context for `collection`; the model loads here once per process (after any fork)."""
        plugin = self.plugin()
        with self._lock:
            encoder = plugin.encoder
            if fingerprint is not None and encoder.fingerprint != fingerprint:
                raise ModelMismatchError(
                    f"The run was planned for model {fingerprint}, but this worker runs {encoder.fingerprint}. "
                    "Start workers with the same SKETCHTEXT_MODEL__SPEC as the `sketchtext ingest --queue` command."
                )
            wanted = self.settings.store.regions if regions is None else regions
            ctx = IngestContext(encoder, plugin.store, plugin.db, collection, regions=wanted)
            if collection not in self._collections:
                try:
                    ctx.ensure_collection()
                except StoreError:  # another worker created it between our check and our create: check again
                    ctx.ensure_collection()
                self._collections.add(collection)
        return ctx

    # -- the work
    def ingest(self, job: BatchJob) -> BatchResult:
        ctx = self.context(job.collection, job.fingerprint, job.regions)
        return ingest_batch(ctx, entries_for_job(ctx.db, job))

    def prune(self, collection: str, keys: list[str]) -> BatchResult:
        ctx = self.context(collection)
        remove_assets(ctx.store, ctx.db, ctx.collection, keys)
        return BatchResult()

    def encode(self, queries: list[dict[str, Any]]) -> dict[str, Any]:
        """Vectors for `[{"sketch": base64 PNG or None, "text": str or None, "combine": None or a mode}, ...]` and
        the model's fingerprint."""
        plugin = self.plugin()
        with self._lock:
            plugin.encoder  # noqa: B018 - load once, under the lock
        parsed = [
            SketchTextQuery(sketch=decode_sketch(q.get("sketch")), text=q.get("text"), combine=q.get("combine"))
            for q in queries
        ]
        encoded = plugin.encode_batch(parsed)
        return {
            "fingerprint": plugin.query_fingerprint,
            "vectors": [e.vector.tolist() for e in encoded],
            "modes": [e.mode for e in encoded],
        }


def decode_sketch(value: str | None) -> bytes | None:
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSketchError("The sketch sent to the worker is not valid base64; send a base64 PNG.") from exc
