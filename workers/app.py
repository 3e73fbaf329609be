"""The Celery app, built from settings: broker and results from `SKETCHTEXT_QUEUE__*`, one `gpu` queue, JSON only.

Delivery: late acknowledgement, prefetch 1, and redelivery when a worker dies (`task_reject_on_worker_lost`; with
Redis after `visibility_timeout_s`, with RabbitMQ as soon as the connection drops). Retried and redelivered batches
are harmless: point ids are deterministic and SQL says what is embedded.

Pools. CUDA and fork do not mix, and the model must load once per process: on a GPU run one worker process per GPU
with `--pool solo` (the default of `sketchtext worker`; the model loads on the first task, in that process).
`--pool prefork` forks its children first and each child loads the model lazily on its first task; the parent never
does (fine on CPUs; on one GPU it costs one model copy per child). `--pool threads` shares one model between threads.
The embedded Qdrant store allows one process, so with it only `--pool solo` works; use a Qdrant server for more.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sketchtext.plugin.settings import Settings
from sketchtext.workers.names import SketchTextCelery

CONNECT_TIMEOUT_S = 5.0


def result_backend_for(settings: Settings) -> str:
    """The configured result backend; else the broker itself for Redis, and `rpc://` for RabbitMQ."""
    queue = settings.queue
    if queue.result_backend:
        return queue.result_backend
    if queue.broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
        return "rpc://"
    return queue.broker_url


def make_celery(settings: Settings) -> SketchTextCelery:
    """A Celery app for `settings`, with sketchtext's tasks registered; nothing connects until used."""
    from sketchtext.workers.runtime import WorkerRuntime
    from sketchtext.workers.tasks import register_tasks

    queue = settings.queue
    app = SketchTextCelery("sketchtext", broker=queue.broker_url, backend=result_backend_for(settings))
    visibility = queue.visibility_timeout_s
    app.conf.update(
        # JSON only: task arguments are keys, paths and text; never pickles, tensors or images.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_default_queue=queue.queue,
        task_routes={"sketchtext.*": {"queue": queue.queue}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_deduplicate_successful_tasks=True,
        # The broker gives an unacknowledged batch to another worker when this one loses it; stop working on it too.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options={
            "visibility_timeout": visibility,  # Redis: redeliver unacknowledged batches after this long
            "unacked_restore_interval": max(1, min(60, int(visibility / 10))),
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
        },
        broker_connection_timeout=CONNECT_TIMEOUT_S,
        broker_connection_retry_on_startup=True,
        redis_socket_connect_timeout=CONNECT_TIMEOUT_S,
        # Senders fail fast when the broker is down; workers keep reconnecting on their own.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        result_expires=timedelta(days=1),
        worker_send_task_events=False,
        enable_utc=True,
    )
    app.sketchtext_settings = settings
    app.sketchtext_runtime = WorkerRuntime(settings)
    register_tasks(app)
    return app


def __getattr__(name: str) -> Any:
    """`celery -A sketchtext.workers.app worker ...` finds `app`, built from the environment on first access."""
    if name == "app":
        from sketchtext.plugin.settings import load_settings

        value = make_celery(load_settings())
        globals()["app"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
