"""The Celery front end in one process: app settings, tasks run eagerly, retries, start-up checks."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchtext.plugin.db import MetadataDB
from sketchtext.plugin.errors import (
    ConfigError,
    DatabaseUnavailableError,
    InvalidSketchError,
    ModelMismatchError,
    ModelUnavailableError,
    StoreUnavailableError,
)
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.ingest.catalog import scan_catalog
from sketchtext.plugin.ingest.queued import BatchJob, register_pending
from sketchtext.plugin.search import SketchTextQuery
from sketchtext.plugin.settings import Settings
from sketchtext.workers.app import make_celery, result_backend_for
from sketchtext.workers.names import TASK_ENCODE, TASK_INGEST, TASK_PRUNE
from sketchtext.workers.runtime import WorkerRuntime


@pytest.fixture
def app(settings: Settings, tiny_encoder):
    app = make_celery(settings)
    runtime = app.sketchtext_runtime
    runtime._plugin = SketchTextPlugin(runtime.settings, encoder=tiny_encoder)  # the session's tiny model
    yield app
    runtime.close()


def test_the_app_is_built_from_settings_with_safe_delivery(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"queue": settings.queue.model_copy(update={"queue": "gpu-a", "visibility_timeout_s": 7200})}
    )
    conf = make_celery(settings).conf
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.accept_content == conf.result_accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.task_default_queue == "gpu-a" and conf.task_routes == {"sketchtext.*": {"queue": "gpu-a"}}
    assert conf.broker_transport_options["visibility_timeout"] == 7200
    assert conf.broker_url == "redis://127.0.0.1:6379/0"


def test_result_backend_defaults_follow_the_broker(settings: Settings) -> None:
    def backend(broker: str, result: str | None = None) -> str:
        queue = settings.queue.model_copy(update={"broker_url": broker, "result_backend": result})
        return result_backend_for(settings.model_copy(update={"queue": queue}))

    assert backend("redis://h:6379/1") == "redis://h:6379/1"
    assert backend("amqp://guest@h//") == "rpc://"
    assert backend("amqp://guest@h//", "redis://r/2") == "redis://r/2"


def test_tasks_are_registered_by_name_and_retry_transient_errors(app) -> None:
    assert {TASK_INGEST, TASK_ENCODE, TASK_PRUNE} <= set(app.tasks)
    ingest = app.tasks[TASK_INGEST]
    assert DatabaseUnavailableError in ingest.autoretry_for and StoreUnavailableError in ingest.autoretry_for
    assert ingest.max_retries and ingest.retry_backoff


def job_for(app, catalog: Path, fingerprint: str) -> dict:
    runtime = app.sketchtext_runtime
    db = runtime.plugin().db
    entries = list(scan_catalog(catalog))
    register_pending(db, "things", entries)
    return BatchJob(1, "things", str(catalog), tuple(e.key for e in entries), fingerprint).to_json()


def test_the_ingest_task_runs_the_unit_of_work(app, catalog: Path, tiny_encoder) -> None:
    job = job_for(app, catalog, tiny_encoder.fingerprint)
    outcome = app.tasks[TASK_INGEST].apply(args=[job]).get()
    assert len(outcome["embedded"]) == 6 and outcome["failed"] == {}
    assert app.sketchtext_runtime.plugin().store.count("things") == 6
    again = app.tasks[TASK_INGEST].apply(args=[job]).get()  # a redelivered batch is harmless
    assert len(again["unchanged"]) == 6 and app.sketchtext_runtime.plugin().store.count("things") == 6
    pruned = app.tasks[TASK_PRUNE].apply(args=["things", ["shoes/item0.png"]]).get()
    assert pruned["embedded"] == [] and app.sketchtext_runtime.plugin().store.count("things") == 5


def test_a_worker_with_another_model_refuses_the_batch(app, catalog: Path) -> None:
    result = app.tasks[TASK_INGEST].apply(args=[job_for(app, catalog, "ViT-L-14@someone-else")])
    assert result.state == "FAILURE" and isinstance(result.result, ModelMismatchError)
    assert "same SKETCHTEXT_MODEL__SPEC" in str(result.result)
    assert app.sketchtext_runtime.plugin().db.status_counts("things") == {"pending": 6}


def test_transient_errors_are_retried(app, catalog: Path, tiny_encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = app.sketchtext_runtime
    real = WorkerRuntime.ingest
    calls = []

    def flaky(self, job):
        calls.append(job)
        if len(calls) < 3:
            raise DatabaseUnavailableError("database restarting")
        return real(self, job)

    monkeypatch.setattr(WorkerRuntime, "ingest", flaky)
    outcome = app.tasks[TASK_INGEST].apply(args=[job_for(app, catalog, tiny_encoder.fingerprint)]).get()
    assert len(calls) == 3 and len(outcome["embedded"]) == 6
    assert runtime.plugin().db.status_counts("things") == {"embedded": 6}


def png_base64(path: Path) -> str:
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_encode_task_matches_local_encoding(app, catalog: Path, tiny_encoder, settings: Settings) -> None:
    sketch = catalog / "shoes/item0.png"
    queries = [{"sketch": png_base64(sketch), "text": "in red"}, {"sketch": None, "text": "a bag"}]
    outcome = app.tasks[TASK_ENCODE].apply(args=[queries]).get()
    local = SketchTextPlugin(settings, encoder=tiny_encoder).encode_batch(
        [SketchTextQuery(sketch=sketch, text="in red"), SketchTextQuery(text="a bag")]
    )
    assert outcome["fingerprint"] == tiny_encoder.fingerprint
    np.testing.assert_allclose(np.array(outcome["vectors"]), np.stack([e.vector for e in local]), atol=1e-5)
    bad = app.tasks[TASK_ENCODE].apply(args=[[{"sketch": "%%%", "text": None}]])
    assert bad.state == "FAILURE" and isinstance(bad.result, InvalidSketchError)


def test_workers_never_encode_remotely_themselves(settings: Settings) -> None:
    settings = settings.model_copy(update={"queue": settings.queue.model_copy(update={"remote_encode": True})})
    assert WorkerRuntime(settings).settings.queue.remote_encode is False


def test_preflight_names_the_fix(settings: Settings) -> None:
    runtime = WorkerRuntime(settings)
    with pytest.raises(ConfigError, match="--pool solo, or run a Qdrant server"):
        runtime.preflight("prefork", 1)
    with pytest.raises(ConfigError, match="threads or prefork"):
        runtime.preflight("solo", 2)
    runtime.preflight("solo", 1)  # holds the embedded store from now on
    try:
        other = _preflight_in_another_process(settings)
        assert "StoreUnavailableError" in other and "SKETCHTEXT_STORE__URL" in other, other
    finally:
        runtime.close()
    assert _preflight_in_another_process(settings) == "ready"  # released on close


def _preflight_in_another_process(settings: Settings) -> str:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from sketchtext.plugin.settings import Settings\n"
        "from sketchtext.workers.runtime import WorkerRuntime\n"
        "runtime = WorkerRuntime(Settings.model_validate_json(sys.argv[1]))\n"
        "try:\n"
        "    runtime.preflight('solo', 1)\n"
        "    print('ready')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "finally:\n"
        "    runtime.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", code, settings.model_dump_json()], capture_output=True, text=True)
    return done.stdout.strip() or done.stderr


def test_preflight_refuses_a_missing_checkpoint(settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "clip.safetensors"
    model = settings.model.model_copy(update={"spec": f"open_clip:RN50@{missing}"})
    settings = settings.model_copy(update={"model": model})
    with pytest.raises(ModelUnavailableError, match="does not exist on this worker"):
        WorkerRuntime(settings).preflight("solo", 1)


def test_preflight_fails_fast_on_an_unreachable_database(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"db": settings.db.model_copy(update={"url": "postgresql://x@127.0.0.1:1/x"})}
    )
    with pytest.raises(DatabaseUnavailableError, match="SKETCHTEXT_DB__URL"):
        WorkerRuntime(settings).preflight("solo", 1)


def test_the_celery_command_finds_an_app_built_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKETCHTEXT_QUEUE__QUEUE", "gpu-env")
    import sketchtext.workers.app as module

    monkeypatch.delitem(module.__dict__, "app", raising=False)
    assert module.app.conf.task_default_queue == "gpu-env"
    monkeypatch.delitem(module.__dict__, "app")


def test_migrated_database_is_used_as_is(tmp_path: Path, settings: Settings) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    MetadataDB(url).upgrade()
    runtime = WorkerRuntime(settings.model_copy(update={"db": settings.db.model_copy(update={"url": url})}))
    runtime.preflight("threads", 1)
    runtime.close()
