"""What the workers' modules share: the task names and the app class (so that tasks and the app need not import
each other)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import Celery

from sketchtext.plugin.settings import Settings

if TYPE_CHECKING:
    from sketchtext.workers.runtime import WorkerRuntime

TASK_INGEST = "sketchtext.ingest_batch"
TASK_ENCODE = "sketchtext.encode_query"
TASK_PRUNE = "sketchtext.prune"


class SketchTextCelery(Celery):  # type: ignore[misc]
    """A Celery app that carries the settings it was built from and the worker process's runtime."""

    sketchtext_settings: Settings
    sketchtext_runtime: WorkerRuntime
