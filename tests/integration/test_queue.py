"""Ingest through a real queue: worker processes on Redis (or RabbitMQ), PostgreSQL metadata, Qdrant only in workers.

Each test starts `sketchtext worker` processes (`--pool solo`) and runs `sketchtext ingest --queue` as a user does,
then stops the workers and checks that files, SQL rows and Qdrant points agree: every file embedded exactly once.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kombu import Connection

from sketchtext.plugin.db import MetadataDB
from sketchtext.plugin.errors import QueueError
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.ingest.catalog import scan_catalog
from sketchtext.plugin.search import SketchTextQuery
from sketchtext.plugin.settings import Settings
from tests.conftest import TINY_SPEC, draw_product
from tests.integration.processes import (
    COLLECTION,
    Worker,
    assert_embedded_exactly_once,
    qdrant_points,
    queue_environment,
    run_cli,
    sketchtext_command,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COLOURS = ["red", "blue", "green", "orange", "purple", "black", "yellow", "brown"]


def make_catalog(root: Path, count: int) -> Path:
    """A generated catalogue: `count` distinct product photos in two categories, with a sidecar of skus."""
    rows = ["path,sku,scene"]
    for i in range(count):
        key = f"{'shoes' if i % 2 else 'bags'}/item{i:03d}.png"
        draw_product(root / key, i, COLOURS[i % len(COLOURS)], size=(96 + i % 7 * 8, 80 + i % 5 * 8))
        rows.append(f"{key},SKU-{i},{'beach' if i % 3 else 'street'}")
    (root / "catalog.csv").write_text("\n".join(rows) + "\n")
    return root


def test_a_worker_process_ingests_a_catalogue_through_the_queue(
    tmp_path: Path, migrated: str, workers: Callable[..., Worker], redis_url: str
) -> None:
    catalog = make_catalog(tmp_path / "catalog", 22)
    (catalog / "bags/broken.png").write_text("not an image")
    env = queue_environment(broker_url=redis_url, db_url=migrated, data_dir=tmp_path / "data")
    worker = workers(env).wait_ready()

    first = run_cli(env, "ingest", str(catalog), "--queue", "--json")
    assert first.returncode == 0, first.stderr + worker.output()[-2000:]
    report = json.loads(first.stdout)
    assert (report["total"], report["embedded"], report["unchanged"], report["failed"]) == (23, 22, 0, 1)
    assert report["failures"] == [
        {"key": "bags/broken.png", "reason": "bags/broken.png is not an image Pillow can read"}
    ]

    again = json.loads(run_cli(env, "ingest", str(catalog), "--queue", "--json").stdout)
    assert (again["embedded"], again["unchanged"], again["failed"]) == (0, 22, 1)  # only the failed file is retried

    status = json.loads(run_cli(env, "status", "--json").stdout)
    assert [(r["status"], r["embedded"]) for r in status["runs"]] == [("completed", 0), ("completed", 22)]
    assert status["assets"] == {COLLECTION: {"embedded": 22, "failed": 1}}
    assert "batch of 4: embedded 4" in worker.output()  # one log line per batch

    assert worker.stop() == 0
    assert_embedded_exactly_once(env, catalog, migrated, failed=frozenset({"bags/broken.png"}))


def test_inline_and_worker_ingests_fill_one_edge_store(
    tmp_path: Path, migrated: str, workers: Callable[..., Worker], redis_url: str
) -> None:
    from sketchtext.plugin.store.base import EDGE_FOLDER

    catalog = make_catalog(tmp_path / "catalog", 12)
    later = tmp_path / "later"
    for key in [entry.key for entry in scan_catalog(catalog)][6:]:  # the second half arrives after the first run
        (later / key).parent.mkdir(parents=True, exist_ok=True)
        (catalog / key).rename(later / key)
    env = queue_environment(broker_url=redis_url, db_url=migrated, data_dir=tmp_path / "data")
    inline = run_cli(env, "ingest", str(catalog), "--json")
    assert inline.returncode == 0, inline.stderr
    assert json.loads(inline.stdout)["embedded"] == 6
    for path in later.rglob("*.png"):
        path.rename(catalog / path.relative_to(later))
    outside = tmp_path / "outside.png"
    draw_product(outside, 99, "red")
    (catalog / "bags" / "escape.png").symlink_to(outside)

    worker = workers(env).wait_ready()
    queued = run_cli(env, "ingest", str(catalog), "--queue", "--json")
    assert queued.returncode == 0, queued.stderr + worker.output()[-2000:]
    report = json.loads(queued.stdout)
    assert (report["embedded"], report["unchanged"], report["failed"]) == (6, 6, 1)
    assert "leaves the catalog" in report["failures"][0]["reason"]
    assert worker.stop() == 0

    store = Path(env["SKETCHTEXT_STORE__PATH"])
    assert (store / EDGE_FOLDER).is_dir() and not (store / "meta.json").exists(), "one engine: Qdrant Edge"
    assert_embedded_exactly_once(env, catalog, migrated, failed=frozenset({"bags/escape.png"}))
    verify = run_cli(env, "verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout) == [], verify.stdout + verify.stderr
    search = run_cli(env, "search", "--text", "a bag", "--limit", "20", "--json")
    assert search.returncode == 0, search.stderr
    assert "local mode" not in search.stderr
    assert len(json.loads(search.stdout)) == 12


def test_a_killed_worker_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, migrated: str, workers: Callable[..., Worker], redis_url: str
) -> None:
    """SIGKILL a worker between its Qdrant write and its SQL update; the driver sends that batch again at once (not
    after the broker's hour of visibility timeout) and a fresh worker finishes the run. The dead worker's copy comes
    back later all the same, and doing it twice changes nothing."""
    import redis

    total = 48
    catalog = make_catalog(tmp_path / "catalog", total)
    gap = tmp_path / "in-gap"  # touched when the slow worker stops for good after its third Qdrant write
    env = queue_environment(
        broker_url=redis_url,
        db_url=migrated,
        data_dir=tmp_path / "data",
        extra={"SKETCHTEXT_TEST_SLOW_UPSERT_S": "0", "SKETCHTEXT_TEST_HANG_AFTER": "2"},
    )
    env["SKETCHTEXT_TEST_GAP_MARKER"] = str(gap)
    broker = redis.Redis.from_url(redis_url)
    db = MetadataDB(migrated)
    first = workers(env, slow=True).wait_ready()
    cli = subprocess.Popen(
        sketchtext_command("ingest", str(catalog), "--queue", "--json"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(gap.exists, 120, "a batch between its Qdrant write and its SQL update")
        first.kill()
        assert db.status_counts(COLLECTION).get("embedded", 0) == 8
        assert broker.hlen("unacked") == 1  # the batch it was working on was never acknowledged
        # The dead worker wrote that batch's points, SQL still says pending: the case a retry must make whole.
        assert len(qdrant_points(env)) == 12
        killed_at = time.monotonic()

        second = workers(env).wait_ready()
        out, err = cli.communicate(timeout=180)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == 0, err + second.output()[-2000:]
    assert time.monotonic() - killed_at < 180 < 3600  # the default visibility timeout was not waited out
    report = json.loads(out)
    assert report["embedded"] + report["unchanged"] == total and report["failed"] == 0
    assert broker.hlen("unacked") == 1, "the run finished without the broker's redelivery"

    # An hour later Redis hands the dead worker's copy out again: make that hour pass, and let the worker take it.
    broker.zadd("unacked_index", {tag: 0 for tag in broker.hkeys("unacked")})
    with Connection(redis_url) as connection:
        connection.default_channel.qos.restore_visible(num=10)
    lost = re.findall(r"ingest_batch\[([0-9a-f-]+)\] received", first.output())[-1]

    def taken_and_acknowledged() -> bool:  # the worker skips a batch it did itself (it knows the id succeeded)
        return second.output().count(f"[{lost}] received") == 2 and broker.hlen("unacked") == 0

    wait_until(taken_and_acknowledged, 60, "the dead worker's copy of its batch, delivered again")
    assert second.stop() == 0
    assert db.status_counts(COLLECTION) == {"embedded": total}
    db.engine.dispose()
    assert_embedded_exactly_once(env, catalog, migrated)
    verify = run_cli(env, "verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout) == [], verify.stdout + verify.stderr


def test_ctrl_c_stops_the_command_and_a_rerun_finishes_the_run(
    tmp_path: Path, migrated: str, workers: Callable[..., Worker], redis_url: str
) -> None:
    total = 24
    catalog = make_catalog(tmp_path / "catalog", total)
    # the worker writes one batch, then holds every later write until the test says go: Ctrl-C lands mid-run
    hold = {"SKETCHTEXT_TEST_SLOW_UPSERT_S": "0", "SKETCHTEXT_TEST_HOLD_AFTER": "1"}
    hold["SKETCHTEXT_TEST_RESUME"] = str(tmp_path / "go")
    env = queue_environment(broker_url=redis_url, db_url=migrated, data_dir=tmp_path / "data", extra=hold)
    worker = workers(env, slow=True).wait_ready()
    db = MetadataDB(migrated)
    cli = subprocess.Popen(
        sketchtext_command("ingest", str(catalog), "--queue"), env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: db.status_counts(COLLECTION).get("embedded", 0) >= 4, 90, "the first batch")
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=30)
        (tmp_path / "go").touch()
        assert cli.returncode == 130 and "rerun the same command" in err
        assert db.latest_runs(1)[0].status == "interrupted"
    finally:
        (tmp_path / "go").touch()
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        db.engine.dispose()
    rerun = run_cli(env, "ingest", str(catalog), "--queue", "--json")
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["embedded"] + report["unchanged"] == total and report["unchanged"] >= 4
    assert worker.stop() == 0
    assert_embedded_exactly_once(env, catalog, migrated)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_with_the_broker_down_ingest_fails_fast_and_records_nothing(tmp_path: Path, migrated: str, scheme: str) -> None:
    catalog = make_catalog(tmp_path / "catalog", 4)
    broker = (
        f"{scheme}://127.0.0.1:{closed_port()}/0" if scheme == "redis" else f"amqp://g:g@127.0.0.1:{closed_port()}//"
    )
    env = queue_environment(broker_url=broker, db_url=migrated, data_dir=tmp_path / "data")
    started = time.monotonic()
    result = run_cli(env, "ingest", str(catalog), "--queue", timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 1 and elapsed < 20
    assert result.stderr.startswith("error: The Celery broker") and result.stderr.count("\n") == 1
    assert "SKETCHTEXT_QUEUE__BROKER_URL" in result.stderr and "Traceback" not in result.stderr
    db = MetadataDB(migrated)
    assert db.status_counts(COLLECTION) == {} and db.latest_runs() == []
    db.engine.dispose()


def remote_settings(tmp_path: Path, env: dict[str, str], timeout: float) -> Settings:
    return Settings(
        data_dir=tmp_path / "host",
        model={"spec": TINY_SPEC, "device": "cpu"},
        queue={
            "broker_url": env["SKETCHTEXT_QUEUE__BROKER_URL"],
            "queue": env["SKETCHTEXT_QUEUE__QUEUE"],
            "remote_encode": True,
            "encode_timeout_s": timeout,
        },
    )


def test_queries_are_encoded_on_a_worker(
    tmp_path: Path, migrated: str, workers: Callable[..., Worker], redis_url: str, tiny_encoder, catalog: Path
) -> None:
    env = queue_environment(broker_url=redis_url, db_url=migrated, data_dir=tmp_path / "data")
    workers(env).wait_ready()
    queries = [SketchTextQuery(sketch=catalog / "shoes/item0.png", text="in red"), SketchTextQuery(text="a bag")]
    with SketchTextPlugin(remote_settings(tmp_path, env, timeout=60)) as host:
        remote = host.encode_batch(queries)
        assert host._encoder is None and host.query_fingerprint == tiny_encoder.fingerprint
    local = SketchTextPlugin(Settings(data_dir=tmp_path / "local"), encoder=tiny_encoder).encode_batch(queries)
    np.testing.assert_allclose(np.stack([q.vector for q in remote]), np.stack([q.vector for q in local]), atol=1e-5)


def test_remote_encoding_without_a_worker_times_out_with_the_fix(tmp_path: Path, redis_url: str) -> None:
    env = queue_environment(broker_url=redis_url, db_url="sqlite://", data_dir=tmp_path / "data")
    started = time.monotonic()
    with (
        SketchTextPlugin(remote_settings(tmp_path, env, timeout=1)) as host,
        pytest.raises(QueueError, match=r"within 1s .* Start a worker"),
    ):
        host.encode(SketchTextQuery(text="a red boot"))
    assert time.monotonic() - started < 10


def test_workers_share_a_qdrant_server(
    tmp_path: Path, migrated: str, workers: Callable[..., Worker], redis_url: str, qdrant_url: str
) -> None:
    collection = f"test-{uuid.uuid4().hex[:8]}"
    catalog = make_catalog(tmp_path / "catalog", 40)
    env = queue_environment(
        broker_url=redis_url,
        db_url=migrated,
        data_dir=tmp_path / "data",
        store_url=qdrant_url,
        extra={"SKETCHTEXT_STORE__COLLECTION": collection},
    )
    pool = [workers(env), workers(env, "--pool", "threads", "--concurrency", "2")]
    for worker in pool:
        worker.wait_ready()
    result = run_cli(env, "ingest", str(catalog), "--queue", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["embedded"] == 40
    for worker in pool:
        assert worker.stop() == 0
    assert all("batch of 4" in worker.output() for worker in pool)  # both took work
    try:
        assert_embedded_exactly_once(env, catalog, migrated)
    finally:
        from qdrant_client import QdrantClient

        QdrantClient(url=qdrant_url).delete_collection(collection)


def test_rabbitmq_works_as_the_broker(
    tmp_path: Path, migrated: str, workers: Callable[..., Worker], amqp_url: str, tiny_encoder
) -> None:
    catalog = make_catalog(tmp_path / "catalog", 12)
    env = queue_environment(broker_url=amqp_url, db_url=migrated, data_dir=tmp_path / "data")
    worker = workers(env).wait_ready()
    try:
        result = run_cli(env, "ingest", str(catalog), "--queue", "--json")
        assert result.returncode == 0, result.stderr + worker.output()[-2000:]
        assert json.loads(result.stdout)["embedded"] == 12
        with SketchTextPlugin(remote_settings(tmp_path, env, timeout=60)) as host:
            assert host.encode(SketchTextQuery(text="a bag")).vector.shape == (tiny_encoder.dim,)
        assert worker.stop() == 0
        assert_embedded_exactly_once(env, catalog, migrated)
    finally:
        with Connection(amqp_url) as connection:
            connection.default_channel.queue_delete(env["SKETCHTEXT_QUEUE__QUEUE"])
