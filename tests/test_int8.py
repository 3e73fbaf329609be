"""Precision int8: the onnxruntime image tower is exported once, admitted only when it agrees with fp32, and shares
collections with fp32 vectors of the same model (the documented rule in plugin/model/int8.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from sketchtext.plugin.errors import ConfigError
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.miniature.demo import bundle_dir
from sketchtext.plugin.model import int8, precision
from sketchtext.plugin.model.factory import load_encoder
from sketchtext.plugin.search import SketchTextQuery
from sketchtext.plugin.settings import Settings
from tests.conftest import TINY_SPEC, draw_product

BUILD = int8.build_tower  # the real export, before any test wraps it


@pytest.fixture
def photos(tmp_path: Path) -> list[Image.Image]:
    colours = ["red", "blue", "green", "orange", "purple", "black", "yellow", "grey"]
    return [Image.open(draw_product(tmp_path / f"{i}.png", i, c)) for i, c in enumerate(colours)]


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every export `build_tower` really makes (the real one runs; the list only counts)."""
    made: list[Path] = []

    def counted(encoder, folder: Path) -> None:
        made.append(folder)
        BUILD(encoder, folder)

    monkeypatch.setattr(int8, "build_tower", counted)
    return made


def mini_with_checkpoint() -> tuple[str, Path]:
    bundle = bundle_dir()
    return f"open_clip:sketchtext-mini@{bundle / 'mini-clip.safetensors'}", bundle / "method"


def break_scales(encoder, folder: Path) -> None:
    """A deliberately broken quantisation: the real one, then every weight scale off by up to ±60 % (a fixed seed)."""
    BUILD(encoder, folder)
    path = folder / int8.GRAPH
    graph = onnx.load(str(path))
    rng = np.random.default_rng(0)
    for tensor in graph.graph.initializer:
        if tensor.name.endswith("_scale") and tensor.data_type == onnx.TensorProto.FLOAT:
            scale = numpy_helper.to_array(tensor)
            noisy = (scale * rng.uniform(0.4, 1.6, scale.shape)).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(noisy, tensor.name))
    onnx.save(graph, str(path))


def test_int8_agrees_with_fp32_and_its_export_is_made_once(tmp_path: Path, photos, exports, caplog) -> None:
    fp32 = load_encoder(TINY_SPEC, device="cpu", precision="fp32")
    with caplog.at_level(logging.INFO, logger="sketchtext.plugin.model.int8"):
        first = load_encoder(TINY_SPEC, device="cpu", precision="int8", models_dir=tmp_path / "models")
        second = load_encoder(TINY_SPEC, device="cpu", precision="int8", models_dir=tmp_path / "models")
    assert first.precision == second.precision == "int8"
    assert len(exports) == 1  # the second load found the first one's export
    assert "reusing the int8 image tower" in caplog.text
    ops = {node.op_type for node in onnx.load(str(first.image_tower.path)).graph.node}
    assert "MatMulInteger" in ops and "Conv" in ops and "ConvInteger" not in ops  # MatMuls int8, the patch conv fp32
    options = first.image_tower.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # idle threads free the cores
    assert first.fingerprint == fp32.fingerprint  # the rule: int8 vectors share the model's collections
    measured = first.agreement["int8"]
    assert measured["cosine"] >= precision.AUTO_MIN_COSINE
    assert measured["top10_overlap"] >= precision.AUTO_MIN_TOP10_OVERLAP
    got, expected = first.encode_images(photos), fp32.encode_images(photos)
    assert not np.array_equal(got, expected)  # onnxruntime's int8 ran, not torch
    assert (got * expected).sum(axis=1).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(got, second.encode_images(photos))


def test_a_broken_quantisation_is_refused_and_fp32_is_used(tmp_path: Path, photos, monkeypatch, caplog) -> None:
    monkeypatch.setattr(int8, "build_tower", break_scales)
    with caplog.at_level(logging.WARNING, logger="sketchtext.plugin.model.int8"):
        encoder = load_encoder(TINY_SPEC, device="cpu", precision="int8", models_dir=tmp_path / "models")
    assert encoder.precision == "fp32" and encoder.image_tower is None
    assert "int8 refused" in caplog.text and "using fp32" in caplog.text
    measured = encoder.agreement["int8"]
    assert measured["cosine"] < precision.AUTO_MIN_COSINE or measured["top10_overlap"] < 0.95
    fp32 = load_encoder(TINY_SPEC, device="cpu", precision="fp32")
    np.testing.assert_array_equal(encoder.encode_images(photos), fp32.encode_images(photos))


def test_auto_takes_int8_on_a_cpu_only_when_it_agrees(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(precision, "fast_precision", lambda device: "int8")  # as on a CPU without native bf16
    assert load_encoder(TINY_SPEC, device="cpu", precision="auto", models_dir=tmp_path / "good").precision == "int8"
    monkeypatch.setattr(int8, "build_tower", break_scales)
    assert load_encoder(TINY_SPEC, device="cpu", precision="auto", models_dir=tmp_path / "bad").precision == "fp32"


def test_int8_is_for_the_cpu() -> None:
    with pytest.raises(ConfigError, match="--device cpu"):
        precision.check_precision("int8", "cuda")


def test_a_checkpoint_exports_with_its_tuned_norms(tmp_path: Path, photos, exports) -> None:
    spec, checkpoint = mini_with_checkpoint()
    tuned = load_encoder(spec, device="cpu", precision="int8", checkpoint=checkpoint, models_dir=tmp_path)
    base = load_encoder(spec, device="cpu", precision="int8", models_dir=tmp_path)
    assert tuned.precision == base.precision == "int8"
    assert len(exports) == 2 and exports[0] != exports[1]  # one per fingerprint: the checkpoint's is its own
    tuned_fp32 = load_encoder(spec, device="cpu", precision="fp32", checkpoint=checkpoint)
    got, expected = tuned.encode_images(photos), tuned_fp32.encode_images(photos)
    assert (got * expected).sum(axis=1).min() >= 0.999
    assert (base.encode_images(photos) * expected).sum(axis=1).min() < 0.99  # the tuned norms made the difference
    vectors, modes = tuned.query_vectors([(photos[0], "in red")], ["composed"])
    reference, _ = tuned_fp32.query_vectors([(photos[0], "in red")], ["composed"])
    assert modes == ["composed"] and float(vectors[0] @ reference[0]) >= 0.999


def test_a_collection_made_with_fp32_is_searched_with_int8(settings: Settings, catalog: Path, tmp_path) -> None:
    fp32 = settings.model_copy(update={"model": settings.model.model_copy(update={"precision": "fp32"})})
    int8_settings = settings.model_copy(update={"model": settings.model.model_copy(update={"precision": "int8"})})
    keys = sorted(p.relative_to(catalog).as_posix() for p in catalog.rglob("item*"))
    queries = [SketchTextQuery(sketch=catalog / key, limit=6) for key in keys]
    with SketchTextPlugin(fp32) as plugin:
        assert plugin.ingest(catalog).as_dict()["embedded"] == len(keys)
        expected = plugin.search_batch(queries)
    with SketchTextPlugin(int8_settings) as plugin:
        assert plugin.encoder.precision == "int8"
        got = plugin.search_batch(queries)  # the binding holds: same model, and int8 agrees with it
        again = plugin.ingest(catalog).as_dict()  # and ingest with int8 finds the fp32 vectors current
    assert again["unchanged"] == len(keys) and again["embedded"] == 0
    for key, hits, reference in zip(keys, got, expected, strict=True):
        assert hits[0].key == reference[0].key == key  # each photo as a sketch finds itself first
        scores = {h.key: h.score for h in reference}
        assert all(abs(h.score - scores[h.key]) < 0.01 for h in hits if h.key in scores)


@pytest.mark.parametrize("tower", ["vit", "cnn-checkpoint"])
def test_int8_gives_the_photo_regions_too_when_they_agree(tmp_path: Path, photos, tower: str) -> None:
    spec, checkpoint = (TINY_SPEC, None) if tower == "vit" else mini_with_checkpoint()
    encoder = load_encoder(spec, device="cpu", precision="int8", checkpoint=checkpoint, models_dir=tmp_path)
    fp32 = load_encoder(spec, device="cpu", precision="fp32", checkpoint=checkpoint)
    assert encoder.precision == "int8" and encoder.image_tower.has_tokens and encoder.image_tower.regions
    measured = encoder.agreement["int8"]
    assert measured["regions_cosine"] >= precision.AUTO_MIN_COSINE
    assert measured["regions_top10_overlap"] >= precision.AUTO_MIN_TOP10_OVERLAP
    pixels = encoder.preprocess_images(photos)
    vectors, regions = encoder.encode_image_regions(pixels)
    reference_vectors, reference = fp32.encode_image_regions(pixels)
    assert regions.shape == reference.shape == (len(photos), encoder.region_grid**2, encoder.dim)
    assert not np.array_equal(regions, reference)  # onnxruntime's int8 ran, not torch
    assert (regions * reference).sum(-1).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(regions, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(vectors, encoder.encode_images(photos))  # one int8 pass gives both
    assert (vectors * reference_vectors).sum(-1).min() >= 0.999


def test_int8_regions_that_disagree_stay_fp32(tmp_path: Path, photos, monkeypatch, caplog) -> None:
    monkeypatch.setattr(int8, "int8_agreement", lambda encoder, tower: ((1.0, 1.0), (0.9, 0.5)))
    with caplog.at_level(logging.WARNING, logger="sketchtext.plugin.model.int8"):
        encoder = load_encoder(TINY_SPEC, device="cpu", precision="int8", models_dir=tmp_path)
    assert encoder.precision == "int8" and not encoder.image_tower.regions  # the features are int8, the regions not
    assert "int8 regions refused" in caplog.text and "photo regions stay fp32" in caplog.text
    assert encoder.agreement["int8"]["regions_cosine"] == 0.9
    fp32 = load_encoder(TINY_SPEC, device="cpu", precision="fp32")
    pixels = encoder.preprocess_images(photos)
    np.testing.assert_array_equal(encoder.encode_image_regions(pixels)[1], fp32.encode_image_regions(pixels)[1])
