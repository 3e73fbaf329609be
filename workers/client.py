"""The sending side: check the broker, send batches and follow them, encode queries on a worker with a timeout."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from celery.states import STARTED
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url

from sketchtext.plugin.errors import QueueError, QueueUnavailableError, SketchTextError
from sketchtext.plugin.ingest.pipeline import BatchResult
from sketchtext.plugin.ingest.queued import BatchJob, result_from_json
from sketchtext.plugin.model.query import Combine, QueryInput
from sketchtext.plugin.model.remote import RemoteVectors
from sketchtext.plugin.settings import Settings
from sketchtext.workers.app import make_celery
from sketchtext.workers.names import TASK_ENCODE, TASK_INGEST, TASK_PRUNE, SketchTextCelery

if TYPE_CHECKING:
    from PIL import Image


def transport_errors(app: SketchTextCelery) -> tuple[type[BaseException], ...]:
    """What a dead broker or result backend raises (kombu's, the transport's and the backend's own)."""
    errors: list[type[BaseException]] = [OperationalError, ConnectionError, TimeoutError]
    try:
        import redis.exceptions

        errors.append(redis.exceptions.ConnectionError)
        errors.append(redis.exceptions.TimeoutError)
    except ImportError:  # pragma: no cover - redis comes with celery[redis]
        pass
    errors.extend(getattr(app.backend, "connection_errors", ()) or ())
    return tuple(errors)


def unavailable(app: SketchTextCelery, what: str, exc: BaseException) -> QueueUnavailableError:
    broker = maybe_sanitize_url(app.conf.broker_url)
    reason = str(exc).rstrip(".")
    return QueueUnavailableError(
        f"The Celery broker or result backend ({broker}) is unreachable while trying to {what}: {reason}. "
        "Start it (Redis or RabbitMQ) or point SKETCHTEXT_QUEUE__BROKER_URL at it."
    )


@contextmanager
def translated(app: SketchTextCelery, what: str) -> Iterator[None]:
    """Broker and result backend failures as QueueUnavailableError; a task's own failure as a QueueError."""
    try:
        yield
    except SketchTextError:
        raise  # a worker's own error, rebuilt from the result backend: its message already says what to do
    except transport_errors(app) as exc:
        raise unavailable(app, what, exc) from exc
    except CeleryTimeoutError:
        raise
    except Exception as exc:
        raise QueueError(
            f"A task failed on a worker while trying to {what}: {type(exc).__name__}: {exc}. Fix the cause and "
            "retry; for `sketchtext ingest --queue`, what is not embedded yet stays pending for the rerun."
        ) from exc


def forget(app: SketchTextCelery, result: AsyncResult) -> None:
    """Drop a read result from the backend now rather than when it expires (best effort)."""
    try:
        result.forget()
    except transport_errors(app):
        pass


def check_broker(app: SketchTextCelery) -> None:
    """Raise QueueUnavailableError quickly (one retry) unless the broker and a Redis result backend answer."""
    with translated(app, "connect"):
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.5, timeout=5)
        client = getattr(app.backend, "client", None)
        if client is not None and hasattr(client, "ping"):
            client.ping()


def workers_on_queue(app: SketchTextCelery, timeout: float = 1.0) -> list[str]:
    """Names of the workers that consume sketchtext's queue now (empty when none answers within `timeout`)."""
    queue = app.sketchtext_settings.queue.queue
    with translated(app, "ask the workers"):
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return sorted(name for name, queues in replies.items() if any(q.get("name") == queue for q in queues or []))


class CeleryTicket:
    """A sent task as a `sketchtext.plugin.ingest.queued.Ticket`: its result, and what it takes to send it again."""

    def __init__(self, app: SketchTextCelery, name: str, args: list[Any]) -> None:
        self.app = app
        self.name = name
        self.args = args
        self.result = self.send()

    def send(self, task_id: str | None = None) -> AsyncResult:
        queue = self.app.sketchtext_settings.queue.queue
        with translated(self.app, f"send {self.name}"):
            return self.app.send_task(self.name, args=self.args, queue=queue, task_id=task_id)

    def done(self) -> bool:
        with translated(self.app, "follow a batch"):
            return bool(self.result.ready())

    def started_by(self) -> str | None:
        """The worker process named in the task's STARTED state (`workers.tasks` writes it), if that is its state."""
        with translated(self.app, "follow a batch"):
            meta = self.app.backend.get_task_meta(self.result.id)
        info = meta.get("result")
        if meta.get("status") != STARTED or not isinstance(info, dict) or not isinstance(info.get("worker"), str):
            return None
        return str(info["worker"])

    def resend(self) -> None:
        """The same task under the same id: this ticket follows the new delivery, and a worker that gets the old one
        late skips it as done (`worker_deduplicate_successful_tasks`) or writes the same points and rows again."""
        self.send(self.result.id)

    def outcome(self) -> BatchResult:
        try:
            with translated(self.app, "run a batch"):
                value = self.result.get(propagate=True, timeout=30)
        finally:
            forget(self.app, self.result)
        return result_from_json(value)


class CeleryDispatcher:
    """Sends ingest batches and prune jobs to the `gpu` queue (a `sketchtext.plugin.ingest.queued.Dispatcher`)."""

    def __init__(self, app: SketchTextCelery) -> None:
        self.app = app

    def send(self, job: BatchJob) -> CeleryTicket:
        return CeleryTicket(self.app, TASK_INGEST, [job.to_json()])

    def prune(self, collection: str, keys: Sequence[str]) -> CeleryTicket:
        return CeleryTicket(self.app, TASK_PRUNE, [collection, list(keys)])


def sketch_png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class CeleryQueryEncoder:
    """Encodes queries on a worker (`encode_query` on the `gpu` queue) within `queue.encode_timeout_s`.

    Registered as the `celery` entry point of `sketchtext.remote_encoders`; the facade uses it when
    `SKETCHTEXT_QUEUE__REMOTE_ENCODE=true`.
    """

    def __init__(self, settings: Settings, app: SketchTextCelery | None = None) -> None:
        self.settings = settings
        self.app = app or make_celery(settings)

    def encode(self, inputs: Sequence[QueryInput], combines: Sequence[Combine | None] | None = None) -> RemoteVectors:
        queue = self.settings.queue
        payload: list[dict[str, Any]] = [
            {"sketch": sketch_png_base64(sketch) if sketch is not None else None, "text": text, "combine": combine}
            for (sketch, text), combine in zip(inputs, combines or [None] * len(inputs), strict=True)
        ]
        timeout = queue.encode_timeout_s
        with translated(self.app, "encode a query on a worker"):
            result = self.app.send_task(TASK_ENCODE, args=[payload], queue=queue.queue, expires=timeout)
            try:
                value = result.get(timeout=timeout, propagate=True)
            except CeleryTimeoutError as exc:
                raise QueueError(
                    f"No worker encoded the query within {timeout:g}s (queue {queue.queue!r} at "
                    f"{maybe_sanitize_url(queue.broker_url)}). Start a worker (`sketchtext worker`), or raise "
                    "SKETCHTEXT_QUEUE__ENCODE_TIMEOUT_S if the workers are busy."
                ) from exc
            finally:
                forget(self.app, result)
        vectors = np.asarray(value["vectors"], dtype=np.float32).reshape(len(inputs), -1)
        return RemoteVectors(vectors=vectors, fingerprint=str(value["fingerprint"]), modes=list(value["modes"]))
