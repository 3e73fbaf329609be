"""Real `sketchtext` processes for the queue tests and benchmarks: workers that start, get killed, and stop cleanly;
commands run as a user runs them; and the check that files, SQL rows and Qdrant points agree after them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sketchtext.plugin.db import AssetStatus, MetadataDB, asset_id
from sketchtext.plugin.ingest.catalog import scan_catalog
from sketchtext.plugin.settings import Settings

HERE = Path(__file__).resolve().parent
SLOW_WORKER = HERE / "slow_worker.py"
COLLECTION = "sketchtext"


def sketchtext_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sketchtext.cli", *args]


def queue_environment(
    *,
    broker_url: str,
    db_url: str,
    data_dir: Path,
    queue: str | None = None,
    model_spec: str = "open_clip:sketchtext-tiny",
    batch_size: int = 4,
    store_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a worker and of `ingest --queue`: same broker, database, store and model for both."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKETCHTEXT_")}
    env.update(
        {
            "SKETCHTEXT_QUEUE__BROKER_URL": broker_url,
            "SKETCHTEXT_QUEUE__QUEUE": queue or f"gpu-test-{uuid.uuid4().hex[:8]}",
            "SKETCHTEXT_DB__URL": db_url,
            "SKETCHTEXT_DATA_DIR": str(data_dir),
            "SKETCHTEXT_STORE__PATH": str(data_dir / "qdrant"),
            "SKETCHTEXT_MODEL__SPEC": model_spec,
            "SKETCHTEXT_MODEL__DEVICE": "cpu",
            "SKETCHTEXT_MODEL__PRECISION": "fp32",  # the tests compare with the fp32 tiny_encoder
            "SKETCHTEXT_MODEL__BATCH_SIZE": str(batch_size),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if store_url:
        env["SKETCHTEXT_STORE__URL"] = store_url
    env.update(extra or {})
    return env


class Worker:
    """One `sketchtext worker` process (its own session, so nothing it forks outlives it), logging to a file."""

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        args: Sequence[str] = (),
        *,
        slow: bool = False,
        script: Path | None = None,
    ) -> None:
        """`script` runs instead of `sketchtext` (a test's worker with a fault in it); `slow` is `slow_worker.py`."""
        self.log = log
        name = f"test-{uuid.uuid4().hex[:8]}@%h"
        script = SLOW_WORKER if slow else script
        command = [sys.executable, str(script)] if script is not None else sketchtext_command()
        command += ["worker", "--hostname", name, *args]
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            command, env=dict(env), stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90.0) -> Worker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.output():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL, as when a machine dies: no warm shutdown, no acknowledgement."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        """Warm shutdown (SIGTERM): the current task finishes; then the whole process group is gone."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # anything left in its session (prefork children)
        self._log_file.close()
        return self.process.returncode


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(sketchtext_command(*args), env=env, capture_output=True, text=True, timeout=timeout)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout}s")
        time.sleep(0.05)


def qdrant_points(env: dict[str, str]) -> dict[str, str]:
    """Point id -> payload key of every point, read after the workers let go of the store (opened as every command
    opens it: `open_store`, so Qdrant Edge on the embedded default)."""
    from sketchtext.plugin.store.open import open_store

    collection = env.get("SKETCHTEXT_STORE__COLLECTION", COLLECTION)
    store_settings = {"path": env["SKETCHTEXT_STORE__PATH"], "collection": collection}
    if env.get("SKETCHTEXT_STORE__URL"):
        store_settings["url"] = env["SKETCHTEXT_STORE__URL"]
    store = open_store(Settings(data_dir=Path(env["SKETCHTEXT_DATA_DIR"]), store=store_settings))
    try:
        points: dict[str, str] = {}
        for point_id, payload in store.points(collection):
            assert str(point_id) not in points
            points[str(point_id)] = payload["key"]
        return points
    finally:
        store.close()


def assert_embedded_exactly_once(
    env: dict[str, str], catalog: Path, db_url: str, failed: set[str] = frozenset()
) -> None:
    """Files, SQL rows and Qdrant points agree: one point per good file, under its deterministic id."""
    collection = env.get("SKETCHTEXT_STORE__COLLECTION", COLLECTION)
    files = {entry.key for entry in scan_catalog(catalog)}
    good = files - failed
    db = MetadataDB(db_url)
    rows = db.assets_by_key(collection, sorted(files))
    db.engine.dispose()
    assert set(rows) == files
    assert {k for k, r in rows.items() if r.status == AssetStatus.EMBEDDED} == good
    assert {k for k, r in rows.items() if r.status == AssetStatus.FAILED} == failed
    points = qdrant_points(env)
    assert len(points) == len(good)
    assert points == {str(asset_id(collection, key)): key for key in good}
