"""ONNX export and the onnxruntime query encoder: the same vectors, modes, binding and hits as the torch encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
from click.testing import CliRunner
from PIL import Image

from sketchtext.cli.main import main
from sketchtext.plugin.errors import ConfigError, ModelMismatchError, QueryError
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.miniature.demo import bundle_dir, demo_settings
from sketchtext.plugin.model.factory import load_encoder
from sketchtext.plugin.model.onnx import OnnxEncoder, open_export
from sketchtext.plugin.model.spec import ModelSpec
from sketchtext.plugin.model.tokenizer import ClipTokenizer
from sketchtext.plugin.search import SketchTextQuery
from tests.conftest import TINY_SPEC

MODES = ("sketch", "text", "sum", "composed", "fusion")
TEXTS = [
    "in shiny red leather",
    "A striped wool SCARF, on a beach!!",
    "naïve café — 東京 🎉 &amp; &lt;b&gt; ﬁne ＡＢＣ",
    "it's 2026 and we'll see what they've got",
    "x" * 400,  # longer than the context: cut where the torch path cuts
    "in winter",
]


def export(args: list[str]) -> dict:
    result = CliRunner().invoke(main, ["export-onnx", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, out = bundle_dir(), tmp_path_factory.mktemp("demo-onnx")
    export(["--model", f"open_clip:sketchtext-mini@{bundle / 'mini-clip.safetensors'}", "--checkpoint",
            str(bundle / "method"), "--out", str(out)])  # fmt: skip
    return out


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-onnx")
    export(["--model", TINY_SPEC, "--out", str(out)])
    return out


def sketches(n: int) -> list[Image.Image]:
    """Line drawings of varied sizes and aspect ratios (the resize and crop must match the torch preprocess)."""
    from PIL import ImageDraw

    images = []
    for i in range(n):
        image = Image.new("RGB" if i % 2 else "L", (80 + 37 * i, 60 + 23 * (i % 3)), "white")
        draw = ImageDraw.Draw(image)
        draw.ellipse((5 + i, 4, 50 + 9 * i, 40 + 5 * i), outline="black", width=3)
        draw.line((0, 0, 70, 50 + i), fill="black", width=2)
        images.append(image)
    return images


def query(q, mode: str) -> SketchTextQuery:
    combine = mode if mode in ("sum", "composed", "fusion") else None
    sketch, text = None if mode == "text" else q.sketch, None if mode == "sketch" else q.text
    return SketchTextQuery(sketch=sketch, text=text, combine=combine, limit=10)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_tokenizer_gives_open_clip_tokens() -> None:
    merges = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    ours, theirs = ClipTokenizer(merges, 77), open_clip.get_tokenizer("ViT-B-32")
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789 .,!?'-&;éüßøçñ東京語🎉\t\n")
    texts = [*TEXTS, "", "   ", "<start_of_text>dog<end_of_text>"]
    texts += ["".join(rng.choice(alphabet, size=int(rng.integers(1, 60)))) for _ in range(200)]
    for text in texts:
        assert ours.encode(text) == theirs.encode(text), text
        sequence, row = ours.sequence(text), theirs([text])[0].tolist()  # padded with 0, which is also "!"
        assert row == sequence + [0] * (77 - len(sequence)), text


@pytest.mark.parametrize("which", ["demo", "tiny"])
def test_onnx_query_vectors_match_torch_per_mode(which: str, demo_export: Path, tiny_export: Path) -> None:
    folder = demo_export if which == "demo" else tiny_export
    manifest = json.loads((folder / "manifest.json").read_text())
    source = manifest["source"]
    torch_encoder = load_encoder(source["spec"], device="cpu", precision="fp32", checkpoint=source["checkpoint"])
    onnx_encoder = OnnxEncoder(folder)
    assert onnx_encoder.fingerprint == torch_encoder.fingerprint
    images = sketches(len(TEXTS))
    modes = MODES if which == "demo" else ("sketch", "text", "sum")
    for mode in modes:
        pairs = zip(images, TEXTS, strict=True)
        inputs = [(None if mode == "text" else s, None if mode == "sketch" else t) for s, t in pairs]
        combines = [mode if mode in ("sum", "composed", "fusion") else None] * len(inputs)
        expected, expected_modes = torch_encoder.query_vectors(inputs, combines)
        got, got_modes = onnx_encoder.query_vectors(inputs, combines)
        assert got_modes == expected_modes == [mode] * len(inputs)
        assert cosines(expected, got).min() >= 0.9999, mode
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_a_zero_shot_export_only_sums(tiny_export: Path) -> None:
    encoder = OnnxEncoder(tiny_export)
    with pytest.raises(QueryError, match="--checkpoint"):
        encoder.query_vectors([(sketches(1)[0], "in red")], ["composed"])


def test_export_searches_the_collection_its_model_made_with_the_same_hits(
    demo_export: Path, tiny_export: Path, tmp_path: Path
) -> None:
    from sketchtext.plugin.method.pairs import load_queries
    from sketchtext.plugin.miniature.generate import generate_world

    world = tmp_path / "world"
    generate_world(world, seed=7, shapes_per_category=4, colourways_per_shape=2)
    queries = load_queries(world / "queries.csv")[:12]
    torch_settings = demo_settings(tmp_path)
    with SketchTextPlugin(torch_settings) as plugin:
        plugin.ingest(world / "catalog")
        batches = {mode: [query(q, mode) for q in queries] for mode in MODES}
        expected = {mode: [[h.key for h in hits] for hits in plugin.search_batch(b)] for mode, b in batches.items()}
    onnx_settings = torch_settings.model_copy(
        update={"model": torch_settings.model.model_copy(update={"spec": f"onnx:{demo_export}", "checkpoint": None})}
    )
    with SketchTextPlugin(onnx_settings) as plugin:
        got = {mode: [[h.key for h in hits] for hits in plugin.search_batch(b)] for mode, b in batches.items()}
        assert plugin._encoder is None  # no torch model was loaded to search
    for mode in MODES:
        for want, have in zip(expected[mode], got[mode], strict=True):
            assert len(set(want) & set(have)) / len(want) == 1.0, mode
    other = onnx_settings.model_copy(
        update={"model": onnx_settings.model.model_copy(update={"spec": f"onnx:{tiny_export}"})}
    )
    with SketchTextPlugin(other) as plugin, pytest.raises(ModelMismatchError):
        plugin.search(batches["sketch"][0])


def test_onnx_specs_are_for_queries_only(tiny_export: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="queries only"):
        ModelSpec.parse(f"onnx:{tiny_export}")
    with pytest.raises(ConfigError, match="carries its checkpoint"):
        open_export(tiny_export, tmp_path)
    with pytest.raises(Exception, match="export-onnx"):
        OnnxEncoder(tmp_path)
