"""Taking turns with the model: on a CPU, decoding and writing pause while the forward pass runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class ModelTurn:
    """Where the model runs on the CPU, decoding and writing wait while it runs, and run while it waits for them.

    Overlapped, they would take cores from the model's threads, and each pause of one of those threads stalls the
    others at the next barrier: on 2 cores decoding beside the forward cost it about twice decoding's own CPU time.
    The same holds for onnxruntime's int8 tower, with or without its threads spinning (measured overlapped vs gated
    on 2 shared cores: no faster for ViT-S-32 or ViT-B-32, tests/benchmarks/README.md), so one rule serves both.
    Beside a GPU the CPU is free while the model runs, and everything overlaps."""

    def __init__(self, device: str) -> None:
        self.shares_cpu = device == "cpu"
        self._model_idle = threading.Event()
        self._model_idle.set()

    @contextmanager
    def model_runs(self) -> Iterator[None]:
        if self.shares_cpu:
            self._model_idle.clear()
        try:
            yield
        finally:
            self._model_idle.set()

    def wait(self) -> float:
        """Block while the model runs on the CPU (between images and batches, so waits are short); seconds waited."""
        if self._model_idle.is_set():
            return 0.0
        started = time.perf_counter()
        self._model_idle.wait()
        return time.perf_counter() - started
