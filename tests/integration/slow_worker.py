"""`sketchtext worker` whose Qdrant writes linger before SQL hears of them, so a test can kill it in between.

Run as a script (not collected by pytest): `python slow_worker.py worker ...`. SKETCHTEXT_TEST_SLOW_UPSERT_S sets the
pause after each write (default 0.5 s). With SKETCHTEXT_TEST_HANG_AFTER=N, the write after the first N stops for good
between its Qdrant write and its SQL update and touches the file SKETCHTEXT_TEST_GAP_MARKER names, so a test kills the
worker at that very point. With SKETCHTEXT_TEST_HOLD_AFTER=N, every write after the first N waits until the file
SKETCHTEXT_TEST_RESUME names exists, so a test acts while a run is certainly unfinished, however fast or busy the
machine.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sketchtext.cli.main import main
from sketchtext.plugin.store.base import VectorStore
from sketchtext.plugin.store.edge import EdgeStore
from sketchtext.plugin.store.qdrant import QdrantStore

_upserts = {QdrantStore: QdrantStore.upsert, EdgeStore: EdgeStore.upsert}


_written = [0]


def hold_if_asked() -> None:
    hold_after = os.environ.get("SKETCHTEXT_TEST_HOLD_AFTER")
    _written[0] += 1
    if hold_after is not None and _written[0] > int(hold_after):
        while not Path(os.environ["SKETCHTEXT_TEST_RESUME"]).exists():
            time.sleep(0.02)


def slow_upsert(self: VectorStore, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    hold_if_asked()
    _upserts[type(self)](self, *args, **kwargs)  # type: ignore[index]
    hang_after = os.environ.get("SKETCHTEXT_TEST_HANG_AFTER")
    if hang_after is not None and _written[0] > int(hang_after):
        Path(os.environ["SKETCHTEXT_TEST_GAP_MARKER"]).touch()
        threading.Event().wait()  # points written, SQL not told: here until the test kills the process
    time.sleep(float(os.environ.get("SKETCHTEXT_TEST_SLOW_UPSERT_S", "0.5")))


QdrantStore.upsert = slow_upsert  # type: ignore[method-assign]
EdgeStore.upsert = slow_upsert  # type: ignore[method-assign]

if __name__ == "__main__":
    main(prog_name="sketchtext")
