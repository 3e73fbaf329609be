"""Remote query encoding through the facade: the hook, the fingerprint it checks, and the installed encoder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from sketchtext.plugin.errors import ModelMismatchError
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.model.remote import RemoteVectors, load_remote_encoder
from sketchtext.plugin.search import SketchTextQuery
from sketchtext.plugin.settings import Settings


class FakeRemote:
    def __init__(self, encoder, fingerprint: str | None = None) -> None:
        self.encoder = encoder
        self.fingerprint = fingerprint or encoder.fingerprint
        self.calls: list[list] = []

    def encode(self, inputs: Sequence, combines: Sequence | None = None) -> RemoteVectors:
        self.calls.append(list(inputs))
        vectors, modes = self.encoder.query_vectors(inputs, combines)
        return RemoteVectors(vectors, self.fingerprint, modes)


def remote_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"queue": settings.queue.model_copy(update={"remote_encode": True})})


def test_remote_encoding_never_loads_the_model_here(settings: Settings, tiny_encoder, catalog: Path) -> None:
    remote = FakeRemote(tiny_encoder)
    plugin = SketchTextPlugin(remote_settings(settings), remote_encoder=remote)
    queries = [SketchTextQuery(sketch=catalog / "shoes/item0.png", text="in red"), SketchTextQuery(text="a bag")]
    encoded = plugin.encode_batch(queries)
    local = SketchTextPlugin(settings, encoder=tiny_encoder).encode_batch(queries)
    assert plugin._encoder is None and len(remote.calls) == 1
    np.testing.assert_allclose(np.stack([e.vector for e in encoded]), np.stack([e.vector for e in local]), atol=1e-6)
    assert [e.mode for e in encoded] == ["sum", "text"] and plugin.query_fingerprint == tiny_encoder.fingerprint


def test_search_checks_the_binding_against_the_workers_model(settings: Settings, tiny_encoder, catalog: Path) -> None:
    with SketchTextPlugin(settings, encoder=tiny_encoder) as local:
        local.ingest(catalog)
    with SketchTextPlugin(remote_settings(settings), remote_encoder=FakeRemote(tiny_encoder)) as plugin:
        (hit,) = plugin.search(SketchTextQuery(sketch=catalog / "bags/item1.jpg", limit=1))
        assert hit.key == "bags/item1.jpg" and plugin._encoder is None
    other = FakeRemote(tiny_encoder, fingerprint="ViT-L-14@elsewhere")
    with (
        SketchTextPlugin(remote_settings(settings), remote_encoder=other) as plugin,
        pytest.raises(ModelMismatchError),
    ):
        plugin.search(SketchTextQuery(text="a bag"))


def test_the_celery_encoder_is_installed_as_the_default(settings: Settings) -> None:
    encoder = load_remote_encoder(settings)
    assert type(encoder).__name__ == "CeleryQueryEncoder"
