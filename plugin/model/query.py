"""The query-encoder contract: what turns prepared queries (a sketch image and/or words) into search vectors.

Four encoders keep it: `ClipEncoder` (zero-shot CLIP), `ComposedEncoder` (a trained sketchtext checkpoint),
`OnnxEncoder` (either of them exported, run by onnxruntime without torch) and `RemoteEncoder` (a worker elsewhere
encodes). The facade picks one when it starts and then only calls this. What the composing encoders share (which
mode a query takes, how the tower outputs become its vector) lives here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol, cast, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from sketchtext.plugin.errors import QueryError

if TYPE_CHECKING:
    from PIL import Image

Mode = Literal["sketch", "text", "sum", "composed", "fusion"]
Combine = Literal["composed", "sum", "fusion"]  # how a sketch and text become one vector
COMBINES: tuple[Combine, ...] = ("composed", "sum", "fusion")
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


def composed_modes(inputs: Sequence[QueryInput], combines: Sequence[Combine | None] | None, default: str) -> list[Mode]:
    """The mode of each input with a trained checkpoint: a sketch with text is combined as asked, else `default`."""
    modes: list[Mode] = []
    for (sketch, text), combine in zip(inputs, combines or [None] * len(inputs), strict=True):
        if sketch is not None and text:
            mode = combine or default
            if mode not in COMBINES:
                raise QueryError(f"Unknown combine mode {mode!r}; choose one of {', '.join(COMBINES)}.")
            modes.append(cast(Mode, mode))
        else:
            modes.append("sketch" if sketch is not None else "text")
    return modes


def unit(vector: NDArray[np.float32]) -> NDArray[np.float32]:
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)


def mix(
    modes: Sequence[Mode],
    dim: int,
    composed: dict[int, NDArray[np.float32]],
    images: dict[int, NDArray[np.float32]],
    texts: dict[int, NDArray[np.float32]],
) -> NDArray[np.float32]:
    """Each row's query vector from its tower outputs (unit vectors, by row): the composed one for a sketch alone or
    composed, the text's, their normalised sum, or the late fusion of composed and sum."""
    out = np.zeros((len(modes), dim), np.float32)
    for i, mode in enumerate(modes):
        if mode in ("sketch", "composed"):
            out[i] = composed[i]
        elif mode == "text":
            out[i] = texts[i]
        elif mode == "sum":
            out[i] = unit(images[i] + texts[i])
        else:  # late fusion: equal weights on the composed and the summed query's cosine scores
            out[i] = unit(composed[i] + unit(images[i] + texts[i]))
    return out
