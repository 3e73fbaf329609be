"""Regions through the queue: a real worker process writes the same region rows as an inline ingest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sketchtext.plugin.settings import Settings
from sketchtext.plugin.store.open import open_store
from tests.integration.processes import queue_environment, run_cli
from tests.integration.test_queue import make_catalog

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def region_rows(env: dict[str, str], collection: str) -> dict[str, np.ndarray]:
    """Payload key -> the stored (global, region rows) of every point, read once no process holds the store."""
    settings = Settings(data_dir=Path(env["SKETCHTEXT_DATA_DIR"]), store={"path": env["SKETCHTEXT_STORE__PATH"]})
    store = open_store(settings)
    try:
        keys = {str(pid): payload["key"] for pid, payload in store.points(collection)}
        records = store.shard(collection).retrieve(list(keys), with_payload=False, with_vector=True)
        return {keys[str(r.id)]: np.asarray(r.vector[store.regions_name]) for r in records}
    finally:
        store.close()


def test_a_worker_writes_the_region_rows_an_inline_ingest_writes(
    tmp_path: Path,
    migrated: str,
    workers,
    redis_url: str,
) -> None:
    catalog = make_catalog(tmp_path / "catalog", 8)
    env = queue_environment(broker_url=redis_url, db_url=migrated, data_dir=tmp_path / "data")
    worker = workers(env).wait_ready()
    queued = run_cli(env, "ingest", str(catalog), "--queue", "--regions", "--json")
    assert queued.returncode == 0, queued.stderr + worker.output()[-2000:]
    assert json.loads(queued.stdout)["embedded"] == 8
    assert worker.stop() == 0  # the embedded store is the worker's until it stops

    inline = run_cli(env, "ingest", str(catalog), "--regions", "--collection", "inline", "--json")
    assert inline.returncode == 0, inline.stderr
    by_worker, by_inline = region_rows(env, "sketchtext"), region_rows(env, "inline")
    assert by_worker.keys() == by_inline.keys() and len(by_worker) == 8
    for key, rows in by_worker.items():
        assert rows.shape == (4, by_inline[key].shape[1])  # the tiny model's 2×2 grid
        np.testing.assert_allclose(rows, by_inline[key], atol=1e-5, err_msg=key)

    search = run_cli(env, "search", "--text", "a bag", "--regions", "--limit", "20", "--json")
    assert search.returncode == 0, search.stderr
    assert len(json.loads(search.stdout)) == 8
