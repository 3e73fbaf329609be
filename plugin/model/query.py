"""The query-encoder contract: what turns prepared queries (a sketch image and/or words) into search vectors.

Three encoders keep it: `ClipEncoder` (zero-shot CLIP), `ComposedEncoder` (a trained sketchtext checkpoint) and
`RemoteEncoder` (a worker elsewhere encodes). The facade picks one when it starts and then only calls this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from PIL import Image

Mode = Literal["sketch", "text", "sum", "composed", "fusion"]
Combine = Literal["composed", "sum", "fusion"]  # how a sketch and text become one vector
QueryInput = tuple["Image.Image | None", "str | None"]  # (sketch, text), at least one of them set
# CLIP reads at most 77 tokens; anything past this many characters could never count, so it is cut with a warning.
MAX_TEXT_CHARS = 1_000


@runtime_checkable
class QueryEncoder(Protocol):
    """Makes L2-normalised query vectors, and names the model that makes them (a collection's binding)."""

    @property
    def fingerprint(self) -> str: ...

    def query_vectors(
        self, inputs: Sequence[QueryInput], combines: Sequence[Combine | None] | None = None
    ) -> tuple[NDArray[np.float32], list[Mode]]:
        """One vector per (sketch, text) input, and the mode each was made with; `combines` asks how a sketch and
        text are combined (None: the encoder's default)."""
        ...


def query_mode(sketch: object | None, text: str | None) -> Mode:
    """The zero-shot mode of an input: a sketch with text can only be summed without a checkpoint."""
    return "sum" if sketch is not None and text else ("sketch" if sketch is not None else "text")
