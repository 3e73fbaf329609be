"""Query encoding on a GPU worker, for hosts without one: the interface the facade calls.

The library does not import a queue. The implementation is found through the `sketchtext.remote_encoders` entry
point group; sketchtext itself registers `celery` (the Celery front end in `workers/`, see pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from sketchtext.plugin.errors import ConfigError
from sketchtext.plugin.model.query import Combine, Mode, QueryInput

if TYPE_CHECKING:
    from sketchtext.plugin.settings import Settings

ENTRY_POINT_GROUP = "sketchtext.remote_encoders"
DEFAULT_REMOTE = "celery"


@dataclass(frozen=True)
class RemoteVectors:
    """Query vectors made elsewhere, and the fingerprint of the model that made them."""

    vectors: NDArray[np.float32]
    fingerprint: str
    modes: list[Mode]


class RemoteQueryEncoder(Protocol):
    """Encodes prepared queries (sketch image or None, text or None) somewhere else, within a timeout."""

    def encode(
        self, inputs: Sequence[QueryInput], combines: Sequence[Combine | None] | None = None
    ) -> RemoteVectors: ...


class RemoteEncoder:
    """The query-encoder contract over a remote encoder: the vectors and the fingerprint of the model that made them
    come back from elsewhere; no model loads in this process."""

    def __init__(self, remote: RemoteQueryEncoder) -> None:
        self.remote = remote
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            raise ConfigError("No query was encoded remotely yet, so the remote model is not known; encode one first.")
        return self._fingerprint

    def query_vectors(
        self, inputs: Sequence[QueryInput], combines: Sequence[Combine | None] | None = None
    ) -> tuple[NDArray[np.float32], list[Mode]]:
        result = self.remote.encode(inputs, combines)
        self._fingerprint = result.fingerprint
        return result.vectors, result.modes


def load_remote_encoder(settings: Settings, name: str = DEFAULT_REMOTE) -> RemoteQueryEncoder:
    """The remote encoder registered under `name`, built from settings."""
    found = list(entry_points(group=ENTRY_POINT_GROUP, name=name))
    if not found:
        raise ConfigError(
            f"Remote query encoding is on (SKETCHTEXT_QUEUE__REMOTE_ENCODE) but no remote encoder named {name!r} is "
            "installed; reinstall sketchtext (`pip install sketchtext`), or turn remote encoding off."
        )
    factory = found[0].load()
    encoder: RemoteQueryEncoder = factory(settings)
    return encoder
