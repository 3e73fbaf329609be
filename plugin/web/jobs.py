"""Ingest runs inside `sketchtext serve`: the same ingest unit in a background thread, one run at a time, while
searches keep answering (the server holds the embedded store, so other processes hand their ingest to it)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sketchtext.plugin.errors import IngestBusyError, IngestCancelledError, SketchTextError
from sketchtext.plugin.facade import SketchTextPlugin

log = logging.getLogger(__name__)


@dataclass
class IngestJob:
    """One run: its progress, and its summary or error once it ends."""

    catalog: Path
    prune: bool
    run_id: int | None = None
    state: str = "starting"  # starting, running, completed, interrupted, failed
    done: int = 0
    total: int = 0
    summary: dict[str, Any] | None = None
    error: str | None = None
    exception: SketchTextError | None = None  # why it ended early, for the route that started it
    cancel: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)  # run_id known, or the job over

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "state": self.state,
            "catalog": str(self.catalog),
            "done": self.done,
            "total": self.total,
            "summary": self.summary,
            "error": self.error,
        }

    @property
    def finished(self) -> bool:
        return self.state in ("completed", "interrupted", "failed")


class IngestJobs:
    """Starts ingest runs on the server's plugin, one at a time, and answers for them by run id."""

    def __init__(self, plugin: SketchTextPlugin) -> None:
        self.plugin = plugin
        self._lock = threading.Lock()
        self._jobs: dict[int, IngestJob] = {}
        self._current: IngestJob | None = None

    def start(self, catalog: Path, *, prune: bool = False) -> IngestJob:
        """Begin a run in the background; returns once SQL has its run id (or it ended before it had one)."""
        with self._lock:
            if self._current is not None and not self._current.finished:
                running = self._current.run_id
                raise IngestBusyError(
                    f"This server is already running ingest run {running}; follow it (GET /api/ingest/{running}) "
                    "and start the next one when it ends."
                )
            job = self._current = IngestJob(catalog, prune)
        threading.Thread(target=self._run, args=(job,), name="sketchtext-ingest", daemon=True).start()
        job.started.wait()
        return job

    def get(self, run_id: int) -> IngestJob | None:
        with self._lock:
            return self._jobs.get(run_id)

    @property
    def current(self) -> IngestJob | None:
        """The latest run this server started (running or ended)."""
        return self._current

    def _record(self, job: IngestJob, run_id: int) -> None:
        with self._lock:
            job.run_id = run_id
            self._jobs[run_id] = job
        job.state = "running"
        job.started.set()

    def _run(self, job: IngestJob) -> None:
        def progress(done: int, total: int) -> None:
            job.done += done
            job.total = total
            if job.cancel.is_set():
                raise IngestCancelledError(f"Ingest run {job.run_id} was cancelled; rerun it to finish.")

        try:
            summary = self.plugin.ingest(
                job.catalog, prune=job.prune, progress=progress, on_start=lambda run_id: self._record(job, run_id)
            )
            if job.run_id is None:
                self._record(job, summary.run_id)
            job.summary, job.state = summary.as_dict(), "completed"
        except IngestCancelledError as exc:
            job.error, job.state = str(exc), "interrupted"
        except SketchTextError as exc:
            job.error, job.exception, job.state = str(exc), exc, "failed"
        except Exception as exc:  # the server keeps serving; the run says why it stopped
            log.exception("ingest of %s failed", job.catalog)
            job.error, job.state = f"Internal error ({type(exc).__name__}); the server log has the details.", "failed"
        finally:
            job.started.set()
