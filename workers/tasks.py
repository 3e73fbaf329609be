"""The tasks: thin wrappers that hand JSON arguments to the worker runtime, which runs the library's unit of work.

Transient failures (database or Qdrant unreachable, broker trouble) are retried with exponential backoff; anything
else fails the task for good and reaches the `sketchtext ingest --queue` driver. Unreadable images are not task
failures: the unit of work records them as failed assets and goes on.
"""

from __future__ import annotations

from typing import Any, cast

from celery import Task
from celery.states import STARTED
from kombu.exceptions import OperationalError

from sketchtext.plugin.errors import DatabaseUnavailableError, StoreUnavailableError
from sketchtext.plugin.ingest.queued import BatchJob, result_to_json
from sketchtext.workers.names import TASK_ENCODE, TASK_INGEST, TASK_PRUNE, SketchTextCelery

TRANSIENT: tuple[type[Exception], ...] = (DatabaseUnavailableError, StoreUnavailableError, OperationalError)
RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,  # 2, 4, 8, ... seconds
    "retry_backoff_max": 120,  # stays well below the visibility timeout, which also covers retry countdowns
    "retry_jitter": True,
    "max_retries": 10,
    "resultrepr_maxsize": 200,  # worker logs show the start of a result, not every key
}


def runtime_of(task: Task) -> Any:
    return cast(SketchTextCelery, task.app).sketchtext_runtime


def started(task: Task) -> None:
    """Say in the task's state which worker process holds it, so the driver sends it again if that process dies
    (`sketchtext.plugin.ingest.queued.Reviver`) rather than wait out the broker's visibility timeout."""
    if not task.request.is_eager:  # run in-process (`apply`): no broker holds it, no one to tell
        task.update_state(state=STARTED, meta={"worker": runtime_of(task).worker_name()})


def register_tasks(app: SketchTextCelery) -> None:
    """Register sketchtext's tasks on `app` under fixed names (senders use the names, not the functions)."""

    @app.task(name=TASK_INGEST, bind=True, shared=False, **RETRY)
    def ingest_batch(self: Task, job: dict[str, Any]) -> dict[str, Any]:
        """Embed one batch of catalog entries (keys under a catalog root) into a collection."""
        started(self)
        return result_to_json(runtime_of(self).ingest(BatchJob.from_json(job)))

    @app.task(name=TASK_PRUNE, bind=True, shared=False, **RETRY)
    def prune(self: Task, collection: str, keys: list[str]) -> dict[str, Any]:
        """Delete the vectors and rows of assets whose files are gone."""
        started(self)
        return result_to_json(runtime_of(self).prune(str(collection), [str(k) for k in keys]))

    # No retries: the host waits with a timeout and a late answer is useless (senders also set `expires`).
    @app.task(name=TASK_ENCODE, bind=True, shared=False, acks_late=False, resultrepr_maxsize=120)
    def encode_query(self: Task, queries: list[dict[str, Any]]) -> dict[str, Any]:
        """Query vectors for sketches (base64 PNG) and texts, with the fingerprint of the model that made them."""
        result: dict[str, Any] = runtime_of(self).encode(queries)
        return result
