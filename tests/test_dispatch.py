"""The queued ingest driver without a queue: planning, pending rows, progress from SQL, reruns, failures, stops."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from sketchtext.plugin.db import AssetStatus, MetadataDB
from sketchtext.plugin.errors import CatalogError, QueueError
from sketchtext.plugin.ingest.pipeline import BatchResult, IngestContext, ingest_batch, remove_assets
from sketchtext.plugin.ingest.queued import BatchJob, entries_for_job, result_from_json, result_to_json, run_queued
from sketchtext.plugin.store.qdrant import QdrantStore, open_local
from tests.conftest import draw_product


class Done:
    def __init__(self, result: BatchResult | Exception) -> None:
        self.result = result

    def done(self) -> bool:
        return True

    def outcome(self) -> BatchResult:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class InlineDispatcher:
    """Runs each job at once, through the same path a worker takes (JSON round trip, entries from SQL)."""

    def __init__(self, ctx: IngestContext, fail_on: int | None = None) -> None:
        self.ctx = ctx
        self.jobs: list[BatchJob] = []
        self.fail_on = fail_on

    def send(self, job: BatchJob) -> Done:
        job = BatchJob.from_json(result_json_roundtrip(job.to_json()))
        self.jobs.append(job)
        if self.fail_on is not None and len(self.jobs) == self.fail_on:
            return Done(QueueError("A batch failed on a worker: boom."))
        result = ingest_batch(self.ctx, entries_for_job(self.ctx.db, job))
        return Done(result_from_json(result_json_roundtrip(result_to_json(result))))

    def prune(self, collection: str, keys: Sequence[str]) -> Done:
        remove_assets(self.ctx.store, self.ctx.db, self.ctx.collection, keys)
        return Done(BatchResult())


def result_json_roundtrip(value: dict) -> dict:
    import json

    return json.loads(json.dumps(value))


@pytest.fixture
def ctx(tmp_path: Path, tiny_encoder) -> IngestContext:
    db = MetadataDB(f"sqlite:///{tmp_path / 'meta.db'}")
    db.upgrade()
    store = QdrantStore(open_local(tmp_path / "qdrant"), owns_client=True)
    context = IngestContext(tiny_encoder, store, db, "things")
    context.ensure_collection()
    yield context
    store.close()


def run(ctx: IngestContext, catalog: Path, dispatcher: InlineDispatcher | None = None, **kwargs):
    dispatcher = dispatcher or InlineDispatcher(ctx)
    summary = run_queued(
        ctx.db,
        dispatcher,
        catalog,
        collection=ctx.collection,
        fingerprint=ctx.encoder.fingerprint,
        batch_size=2,
        poll_s=0,
        **kwargs,
    )
    return summary, dispatcher


def test_queued_run_embeds_everything_and_reports_progress_from_sql(ctx: IngestContext, catalog: Path) -> None:
    seen: list[tuple[int, int]] = []
    summary, dispatcher = run(ctx, catalog, progress=lambda done, total: seen.append((done, total)))
    assert (len(summary.result.embedded), summary.total) == (6, 6) and len(dispatcher.jobs) == 3
    assert seen[-1] == (6, 6) and all(total == 6 for _, total in seen)
    assert ctx.db.status_counts("things") == {"embedded": 6} and ctx.store.count("things") == 6
    # the worker saw the sidecar metadata through the pending rows
    rows = ctx.db.assets_by_key("things", ["shoes/item0.png"])
    assert rows["shoes/item0.png"].sku == "SKU-0" and rows["shoes/item0.png"].extra == {"colour": "red"}
    (run_row,) = ctx.db.latest_runs(1)
    assert (run_row.status, run_row.embedded, run_row.total) == ("completed", 6, 6)
    assert dispatcher.jobs[0].root == str(catalog.absolute()) and dispatcher.jobs[0].run_id == run_row.id


def test_a_rerun_sends_only_what_is_not_embedded_or_changed(ctx: IngestContext, catalog: Path) -> None:
    run(ctx, catalog)
    again, dispatcher = run(ctx, catalog)
    assert dispatcher.jobs == [] and len(again.result.unchanged) == 6
    draw_product(catalog / "bags/item1.jpg", 9, "yellow")  # changed bytes
    (catalog / "bags/new.png").write_bytes((catalog / "shoes/item0.png").read_bytes())  # a new file
    (catalog / "broken.jpg").write_text("not an image")
    changed, dispatcher = run(ctx, catalog)
    sent = sorted(key for job in dispatcher.jobs for key in job.keys)
    assert sent == ["bags/item1.jpg", "bags/new.png", "broken.jpg"]
    assert sorted(changed.result.embedded) == ["bags/item1.jpg", "bags/new.png"]
    assert changed.result.failed.keys() == {"broken.jpg"} and len(changed.result.unchanged) == 5
    assert ctx.db.status_counts("things") == {"embedded": 7, "failed": 1} and ctx.store.count("things") == 7
    # a failed file is tried again on the next run, as inline
    _, dispatcher = run(ctx, catalog)
    assert [key for job in dispatcher.jobs for key in job.keys] == ["broken.jpg"]


def test_same_size_change_and_another_model_are_detected(ctx: IngestContext, catalog: Path) -> None:
    run(ctx, catalog)
    path = catalog / "shoes/item0.png"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    _, dispatcher = run(ctx, catalog)
    assert [key for job in dispatcher.jobs for key in job.keys] == ["shoes/item0.png"]
    plan_other = run_queued(
        ctx.db,
        recorder := Recorder(),
        catalog,
        collection="things",
        fingerprint="another-model",
        batch_size=100,
        poll_s=0,
    )
    assert plan_other.total == 6 and len(recorder.jobs[0].keys) == 6 and recorder.jobs[0].fingerprint == "another-model"


class Recorder:
    def __init__(self) -> None:
        self.jobs: list[BatchJob] = []

    def send(self, job: BatchJob) -> Done:
        self.jobs.append(job)
        return Done(BatchResult())

    def prune(self, collection: str, keys: Sequence[str]) -> Done:
        return Done(BatchResult())


def test_a_failed_batch_ends_the_run_and_a_rerun_finishes_it(ctx: IngestContext, catalog: Path) -> None:
    with pytest.raises(QueueError, match="boom"):
        run(ctx, catalog, InlineDispatcher(ctx, fail_on=2), max_in_flight=1)
    (failed_run,) = ctx.db.latest_runs(1)
    assert failed_run.status == "failed"
    counts = ctx.db.status_counts("things")
    assert counts.get("embedded", 0) == 2 and counts["pending"] == 4  # the rest waits, nothing is lost
    summary, dispatcher = run(ctx, catalog)
    assert sorted(summary.result.embedded) == sorted(k for job in dispatcher.jobs for k in job.keys)
    assert len(summary.result.embedded) == 4 and ctx.db.status_counts("things") == {"embedded": 6}


def test_stopping_marks_the_run_interrupted_and_sends_no_more(ctx: IngestContext, catalog: Path) -> None:
    dispatcher = InlineDispatcher(ctx)

    def stop_after_first(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(ctx, catalog, dispatcher, max_in_flight=1, progress=stop_after_first)
    assert len(dispatcher.jobs) == 1 and ctx.db.latest_runs(1)[0].status == "interrupted"
    _, rerun = run(ctx, catalog)
    assert len([k for job in rerun.jobs for k in job.keys]) == 4


def test_prune_goes_through_the_dispatcher(ctx: IngestContext, catalog: Path) -> None:
    run(ctx, catalog)
    (catalog / "shoes/item2.jpg").unlink()
    summary, _ = run(ctx, catalog, prune=True)
    assert summary.pruned == ["shoes/item2.jpg"] and ctx.store.count("things") == 5


def test_jobs_refuse_paths_outside_the_catalog_and_missing_folders(ctx: IngestContext, catalog: Path) -> None:
    job = BatchJob(1, "things", str(catalog), ("../secret.png",), "fp")
    with pytest.raises(QueueError, match="outside the catalog"):
        entries_for_job(ctx.db, job)
    with pytest.raises(CatalogError, match="mount the catalog at the same path"):
        entries_for_job(ctx.db, BatchJob(1, "things", str(catalog / "nope"), ("a.png",), "fp"))
    with pytest.raises(QueueError, match="another sketchtext version"):
        BatchJob.from_json({"keys": []})


def test_stale_pending_rows_do_not_hold_progress_back(ctx: IngestContext, catalog: Path) -> None:
    ctx.db.save_assets([{"collection": "things", "key": "gone.png", "status": AssetStatus.PENDING}])
    seen: list[tuple[int, int]] = []
    run(ctx, catalog, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6, 6)
