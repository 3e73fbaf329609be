"""A running `sketchtext serve` in its data dir: one server per embedded store, and where other commands find it.

The embedded store belongs to one process. The server that holds it takes `serve.lock` (an OS lock, dropped if it
dies) and writes `serve.json` (its address, whether it needs a token, its pid); `sketchtext ingest` on the same data
dir reads it and hands the job to the server. With a Qdrant server any process may write, and none of this applies.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import filelock

from sketchtext.plugin.errors import StoreUnavailableError
from sketchtext.plugin.files import write_json_atomic
from sketchtext.plugin.settings import Settings

LOCK_NAME = "serve.lock"
RECORD_NAME = "serve.json"


@dataclass(frozen=True)
class ServeRecord:
    """Where a running server listens, and whether its API needs the token."""

    url: str
    token_required: bool
    pid: int

    @classmethod
    def read(cls, path: Path) -> ServeRecord | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(str(data["url"]), bool(data["token_required"]), int(data["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def embedded(settings: Settings) -> bool:
    """Whether the store is the embedded one (one process at a time), not a Qdrant server."""
    return settings.store.url is None


class ServeClaim:
    """This process serves the data dir: held from `claim` to `release`; `announce` tells others the address."""

    def __init__(self, data_dir: Path) -> None:
        self.record_path = data_dir / RECORD_NAME
        self._lock = filelock.FileLock(data_dir / LOCK_NAME, timeout=0, thread_local=False)

    def claim(self) -> ServeClaim:
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            first = ServeRecord.read(self.record_path)
            where = f"{first.url} (pid {first.pid})" if first else "another process that is starting"
            raise StoreUnavailableError(
                f"The data dir {self.record_path.parent} is already served by `sketchtext serve` at {where}; use that "
                "server (its page, or `sketchtext ingest` here, which hands the job to it), or stop it first."
            ) from None
        return self

    def announce(self, url: str, *, token_required: bool) -> None:
        write_json_atomic(self.record_path, {"url": url, "token_required": token_required, "pid": os.getpid()})

    def release(self) -> None:
        self.record_path.unlink(missing_ok=True)
        self._lock.release()


def claim_data_dir(settings: Settings) -> ServeClaim | None:
    """Hold the data dir for a server of the embedded store (None with a Qdrant server: nothing to hold)."""
    return ServeClaim(settings.data_dir).claim() if embedded(settings) else None


def running_server(settings: Settings) -> ServeRecord | None:
    """The server that holds this data dir's embedded store, if one runs (a record a dead server left is ignored)."""
    if not embedded(settings):
        return None
    record = ServeRecord.read(settings.data_dir / RECORD_NAME)
    if record is None:
        return None
    probe = filelock.FileLock(settings.data_dir / LOCK_NAME, timeout=0, thread_local=False)
    try:
        probe.acquire()
    except filelock.Timeout:
        return record  # held: the server is alive
    probe.release()
    return None
