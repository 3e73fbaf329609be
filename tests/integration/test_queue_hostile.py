"""The damaged corpus and the injected decoder faults of `tests/hostile.py`, ingested through a real Celery worker
whose own decoding raises them: every file accounted in SQL and in `--json`, nothing crashes, verify finds nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sketchtext.plugin.db import AssetStatus, MetadataDB
from tests.hostile import EITHER, EMBEDDED, write_damaged_corpus, write_injected
from tests.integration.processes import (
    COLLECTION,
    HERE,
    Worker,
    assert_embedded_exactly_once,
    queue_environment,
    run_cli,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTILE_WORKER = HERE / "hostile_worker.py"  # `sketchtext worker` with the fault-injecting decoder installed


def test_the_damaged_corpus_and_injected_faults_through_a_real_worker_end_accounted(
    tmp_path: Path, migrated: str, workers: Callable[..., Worker], redis_url: str
) -> None:
    root = tmp_path / "catalog"
    expect = write_damaged_corpus(root)
    write_injected(root, expect)
    env = queue_environment(broker_url=redis_url, db_url=migrated, data_dir=tmp_path / "data", batch_size=16)
    worker = workers(env, script=HOSTILE_WORKER).wait_ready()

    first = run_cli(env, "ingest", str(root), "--queue", "--json", timeout=600)
    assert first.returncode == 0, first.stderr + worker.output()[-3000:]
    report = json.loads(first.stdout)
    failed = {f["key"]: f["reason"] for f in report["failures"]}
    assert report["total"] == len(expect) and report["embedded"] + len(failed) == len(expect), "every file accounted"
    for key, wanted in expect.items():
        if wanted not in (EITHER, EMBEDDED):
            assert wanted in failed.get(key, EMBEDDED), f"{key}: expected {wanted!r}, got {failed.get(key)!r}"
        if wanted == EMBEDDED:
            assert key not in failed, f"{key}: {failed[key]}"
    assert all(reason.strip() for reason in failed.values())
    db = MetadataDB(migrated)
    rows = db.assets_by_key(COLLECTION, sorted(expect))
    db.engine.dispose()
    assert rows.keys() == expect.keys()
    for key, row in rows.items():
        assert row.error == failed.get(key) and (row.status == AssetStatus.EMBEDDED) == (key not in failed)

    again = run_cli(env, "ingest", str(root), "--queue", "--json", timeout=600)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert (second["embedded"], second["unchanged"]) == (0, report["embedded"])
    assert {f["key"]: f["reason"] for f in second["failures"]} == failed  # the failed files fail again, as before
    assert worker.stop() == 0
    assert "Traceback" not in worker.output(), "no batch crashed on the worker"

    assert_embedded_exactly_once(env, root, migrated, failed=frozenset(failed))
    verify = run_cli(env, "verify", str(root), "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout) == [], verify.stdout + verify.stderr
