"""How an embedded Qdrant Edge store is held (one process, an OS lock) and indexed (when search turns to HNSW)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import filelock
import qdrant_edge as qe

from sketchtext.plugin.errors import StoreUnavailableError


@dataclass(frozen=True)
class EdgeIndexCfg:
    """How an Edge collection is searched; defaults chosen with tests/benchmarks/bench_store_scale.py."""

    exact_below: int = 20_000  # points: smaller collections are searched exactly and never indexed
    m: int = 16  # HNSW edges per node
    ef_construct: int = 100  # candidates while building
    payload_m: int = 16  # extra edges per keyword value of the filter fields, so filtered searches stay connected
    hnsw_ef: int = 128  # candidates while searching
    full_scan_kb: int = 10_000  # a filter matching fewer than this many KB of vectors is answered by exact scan

    def hnsw(self) -> qe.HnswIndexConfig:
        return qe.HnswIndexConfig(
            m=self.m, ef_construct=self.ef_construct, full_scan_threshold=self.full_scan_kb, payload_m=self.payload_m
        )

    def indexing_threshold_kb(self, dim: int) -> int:
        return max(1, self.exact_below * dim * 4 // 1024)


LOCK_FILE = ".lock"
# Edge maps its files into memory; on a full disk a write through the map kills the process with SIGBUS, not an
# error, so a store is opened only with this much room left.
MIN_FREE_BYTES = 64 << 20


def hold_folder(folder: Path) -> filelock.BaseFileLock:
    """An OS lock on the store folder, taken before any shard opens: another process that cannot get it has touched
    nothing, so the holder (an ingest, `serve`, a worker) is unaffected; the OS drops it if the holder dies. Within
    one process the lock is shared (counted), as stores of one process may be open side by side."""
    lock = filelock.FileLock(folder / LOCK_FILE, timeout=0, is_singleton=True, thread_local=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except filelock.Timeout as exc:
        raise StoreUnavailableError(
            f"The embedded store {folder.parent} is in use by another process (an ingest, `sketchtext serve` or a "
            "worker); wait for it to finish or stop it, or run a Qdrant server and set SKETCHTEXT_STORE__URL so "
            "several processes can share one store."
        ) from exc
    except OSError as exc:
        raise StoreUnavailableError(
            f"Cannot open the embedded store {folder}: {exc.strerror or exc}; make the folder writable or point "
            "SKETCHTEXT_DATA_DIR elsewhere."
        ) from exc
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        lock.release()
        raise StoreUnavailableError(
            f"The disk holding the embedded store {folder} has {free >> 20} MiB free, under the "
            f"{MIN_FREE_BYTES >> 20} MiB Qdrant Edge needs to open it safely; free some space there, or move "
            "SKETCHTEXT_DATA_DIR to a disk with room."
        )
    return lock
