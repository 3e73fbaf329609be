"""Runs never lie: a run whose driver is gone says interrupted, and a queued run with no consumer says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from sketchtext.plugin.db import MetadataDB
from sketchtext.plugin.ingest.queued import BatchJob, Reviver, run_queued
from sketchtext.plugin.ingest.runs import ingest_lock, settle_runs, worker_gone, worker_lock


class Never:
    """A ticket of a batch no worker ever takes."""

    def done(self) -> bool:
        return False

    def outcome(self):  # pragma: no cover - never done
        raise AssertionError

    def started_by(self) -> str | None:
        return None

    def resend(self) -> None:  # pragma: no cover - never started
        raise AssertionError


class Started(Never):
    """A ticket of a batch that a worker process (by its lock's name) took and never finished."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.sent_again = 0

    def started_by(self) -> str | None:
        return self.worker

    def resend(self) -> None:
        self.sent_again += 1


class NoConsumer:
    def send(self, job: BatchJob) -> Never:
        return Never()

    def prune(self, collection: str, keys):  # pragma: no cover - no prune here
        raise AssertionError


def test_a_run_left_running_is_interrupted_once_no_driver_holds_its_lock(db_url: str) -> None:
    db = MetadataDB(db_url)
    db.upgrade()
    run = db.start_run("c", "/cat", "tiny@x", 3)  # a driver that died without a word
    with ingest_lock(db, "c"):  # while a driver holds the lock, its run is live
        other = MetadataDB(db_url)
        settle_runs(other, ["c"])
        assert other.latest_runs(1)[0].status == "running"
        other.engine.dispose()
    settle_runs(db, ["c"])
    assert [(r.id, r.status) for r in db.latest_runs(1)] == [(run, "interrupted")]


def test_a_queued_run_with_no_consumer_is_told_after_the_stall(catalog: Path, db_url: str) -> None:
    db = MetadataDB(db_url)
    db.upgrade()
    now = [0.0]
    heard: list[float] = []

    def clock() -> float:
        now[0] += 10.0  # each look at the clock is ten seconds later: no sleep, the test drives time
        return now[0]

    def stalled(seconds: float) -> None:
        heard.append(seconds)
        raise KeyboardInterrupt  # what a user does next; ends the driver at a point the test controls

    with pytest.raises(KeyboardInterrupt):
        run_queued(
            db, NoConsumer(), catalog, collection="c", fingerprint="tiny@x", poll_s=0, stalled=stalled, clock=clock
        )
    assert len(heard) == 1 and heard[0] >= 30.0
    assert db.latest_runs(1)[0].status == "interrupted"
    assert db.status_counts("c") == {"pending": 6}


def test_a_batch_whose_worker_died_is_sent_again_once_and_a_live_workers_is_left_alone(db_url: str) -> None:
    db = MetadataDB(db_url)
    db.upgrade()
    worker = MetadataDB(db_url)  # another connection, as a worker process has
    live, dead, queued = Started("host:1:live"), Started("host:2:dead"), Never()
    with worker_lock(worker, "host:1:live"), worker_lock(worker, "host:2:dead"):
        assert not worker_gone(db, "host:2:dead")
    with worker_lock(worker, "host:1:live"):  # host:2 let go of its lock: it died, even by SIGKILL
        revive = Reviver(db, every_s=0)
        assert revive([live, dead, queued]) == 1
        assert (live.sent_again, dead.sent_again) == (0, 1)
        assert revive([live, dead, queued]) == 0  # sent once; its state still names the dead worker until taken
        dead.worker = "host:3:taken-then-died-too"
        assert revive([live, dead, queued]) == 1 and dead.sent_again == 2
    assert worker_gone(db, "host:1:live")
    worker.engine.dispose()
    db.engine.dispose()
