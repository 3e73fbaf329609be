"""Serving with a checkpoint: identical query embeddings after save → load, a tuned gallery bound to the checkpoint,
and the query mode picked from what a query holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sketchtext.plugin.errors import CheckpointError, ModelMismatchError, QueryError
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.model.checkpoint import read_checkpoint, save_checkpoint, update_config
from sketchtext.plugin.model.composer import ComposedCLIP, ComposerCfg, build_composer, layernorm_state
from sketchtext.plugin.model.factory import load_encoder
from sketchtext.plugin.model.spec import ModelSpec, create_clip
from sketchtext.plugin.search import SketchTextQuery
from sketchtext.plugin.settings import Settings
from tests.conftest import TINY_SPEC
from tests.generated_pairs import make_pairs


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory):
    """A checkpoint of perturbed ("trained") LayerNorms and composer, and the objects it was saved from."""
    model, preprocess, tokenizer = create_clip(ModelSpec.parse(TINY_SPEC))
    torch.manual_seed(1)
    composer = build_composer(model, tokenizer, ComposerCfg())
    with torch.no_grad():
        for param in [*layernorm_state(model).values(), *composer.parameters()]:
            param.add_(0.05 * torch.randn_like(param))
    folder = tmp_path_factory.mktemp("ckpt")
    config = {"base": {"spec": TINY_SPEC, "fingerprint": "sketchtext-tiny@random-seed0"}, "composer": {}}
    info = save_checkpoint(folder, model, composer, config)
    return info, ComposedCLIP(model, tokenizer, composer), preprocess


@pytest.fixture(scope="module")
def sketches(tmp_path_factory: pytest.TempPathFactory) -> list[Image.Image]:
    root = make_pairs(tmp_path_factory.mktemp("pairs"), photos=4, splits=(4, 0, 0))
    return [Image.open(path).convert("RGB") for path in sorted((root / "sketches").glob("*.png"))]


def test_save_then_load_gives_identical_query_embeddings(made, sketches, tiny_encoder) -> None:
    info, cc, preprocess = made
    encoder = load_encoder(TINY_SPEC, device="cpu", precision="fp32", checkpoint=info.path)
    assert encoder.fingerprint == f"sketchtext-tiny@random-seed0+{info.fingerprint}"
    pixels = torch.stack([preprocess(s) for s in sketches])
    texts = ["in red", "in blue", "in tan suede with a buckle", "in green"]
    with torch.no_grad():
        features = cc.images(pixels)
        sketch_only = cc.query(cc.composer.to_word(features)).numpy()
        composed = cc.query(cc.composer.to_word(features), cc.words(texts)).numpy()
    vectors, modes = encoder.query_vectors([(s, None) for s in sketches])
    assert modes == ["sketch"] * 4 and np.array_equal(vectors, sketch_only)
    vectors, modes = encoder.query_vectors(list(zip(sketches, texts, strict=True)), ["composed"] * 4)
    assert modes == ["composed"] * 4 and np.array_equal(vectors, composed)
    # the gallery comes from the tuned image tower: not the base model's vectors
    assert np.array_equal(encoder.encode_images(sketches), features.numpy())
    assert not np.allclose(encoder.encode_images(sketches), tiny_encoder.encode_images(sketches), atol=1e-3)


def test_modes_follow_the_query_and_the_recorded_best(made, sketches, tmp_path: Path) -> None:
    info, _, _ = made
    encoder = load_encoder(TINY_SPEC, device="cpu", precision="fp32", checkpoint=info.path)
    inputs = [(sketches[0], None), (None, "a red shoe"), (sketches[1], "in red"), (sketches[2], "in red")]
    vectors, modes = encoder.query_vectors(inputs, [None, None, None, "fusion"])
    assert modes == ["sketch", "text", "composed", "fusion"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    summed, _ = encoder.query_vectors(inputs[2:3], ["sum"])
    image, text = encoder.encode_images([sketches[1]])[0], encoder.encode_texts(["in red"])[0]
    np.testing.assert_allclose(summed[0], (image + text) / np.linalg.norm(image + text), rtol=1e-5, atol=1e-6)
    with pytest.raises(QueryError, match="composed, sum, fusion"):
        encoder.query_vectors(inputs[2:3], ["mean"])  # type: ignore[list-item]
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("model.safetensors", "config.json"):
        (copy / name).write_bytes((info.path / name).read_bytes())
    update_config(read_checkpoint(copy), combine={"mode": "sum", "source": "test", "measured": {}})
    recorded = load_encoder(TINY_SPEC, device="cpu", precision="fp32", checkpoint=copy)
    assert recorded.query_vectors(inputs[2:3])[1] == ["sum"]


def test_without_a_checkpoint_only_the_sum_combines(tiny_encoder, sketches) -> None:
    assert tiny_encoder.query_vectors([(sketches[0], "in red")])[1] == ["sum"]
    with pytest.raises(QueryError, match="needs a trained checkpoint"):
        tiny_encoder.query_vectors([(sketches[0], "in red")], ["composed"])


def test_checkpoint_errors(made, tmp_path: Path) -> None:
    info, _, _ = made
    with pytest.raises(CheckpointError, match="--model open_clip:sketchtext-tiny"):
        load_encoder("open_clip:ViT-B-32", device="cpu", precision="fp32", checkpoint=info.path)
    with pytest.raises(CheckpointError, match="not a sketchtext checkpoint"):
        load_encoder(TINY_SPEC, device="cpu", precision="fp32", checkpoint=tmp_path)
    (tmp_path / "model.safetensors").write_bytes((info.path / "model.safetensors").read_bytes() + b" ")
    (tmp_path / "config.json").write_bytes((info.path / "config.json").read_bytes())
    with pytest.raises(CheckpointError, match="modified or partly copied"):
        read_checkpoint(tmp_path)


def test_plugin_serves_composed_queries_from_a_bound_collection(made, catalog: Path, tmp_path: Path) -> None:
    info, _, _ = made
    model = {"spec": TINY_SPEC, "device": "cpu", "precision": "fp32", "checkpoint": info.path}
    sketch = catalog / "shoes" / "item0.png"
    with SketchTextPlugin(Settings(data_dir=tmp_path / "data", model=model)) as plugin:
        assert plugin.ingest(catalog).as_dict()["embedded"] == 6
        encoded = plugin.encode_batch(
            [SketchTextQuery(sketch=sketch), SketchTextQuery(sketch=sketch, text="in red", combine="fusion")]
        )
        assert [e.mode for e in encoded] == ["sketch", "fusion"]
        hits = plugin.search(SketchTextQuery(sketch=sketch, text="in red", category="shoes", limit=3))
        assert hits and {h.payload["category"] for h in hits} == {"shoes"}
    plain = {"spec": TINY_SPEC, "device": "cpu", "precision": "fp32"}
    with (
        SketchTextPlugin(Settings(data_dir=tmp_path / "data", model=plain)) as plugin,
        pytest.raises(ModelMismatchError, match=info.fingerprint),
    ):
        plugin.search(SketchTextQuery(text="a shoe"))
