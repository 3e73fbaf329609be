"""The stand-in foundation CLIP: pretraining lowers the loss, checkpoints load with identical embeddings, probes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sketchtext.cli.main import main
from sketchtext.plugin.errors import ConfigError
from sketchtext.plugin.miniature.files import read_world
from sketchtext.plugin.miniature.generate import generate_world
from sketchtext.plugin.miniature.pretrain import PretrainCfg, pretrain, save_checkpoint
from sketchtext.plugin.miniature.probes import gate, rank_accuracy, run_probes

TINY = dict(arch="sketchtext-tiny", batch_size=6, warmup_steps=2, lr=3e-3)


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(
        out, seed=1, categories=("boot", "chair"), shapes_per_category=8, colourways_per_shape=2, palette_size=8
    )
    return out


def test_pretraining_lowers_the_loss_and_writes_a_sidecar(tiny_world: Path, tmp_path: Path, caplog) -> None:
    steps: list[int] = []
    cfg = PretrainCfg(epochs=4, **TINY)
    with caplog.at_level("WARNING"):
        sidecar = pretrain(tiny_world, tmp_path / "m.safetensors", cfg, lambda s, t, i: steps.append(s))
    assert not [r for r in caplog.records if "No pretrained weights" in r.getMessage()]  # a random start is intended
    losses = [h["loss"] for h in sidecar["history"]]
    assert losses[-1] < losses[0]
    assert steps == list(range(1, sidecar["steps"] + 1))
    on_disk = json.loads((tmp_path / "m.json").read_text())
    assert on_disk["config"]["arch"] == "sketchtext-tiny" and set(on_disk["probes"]["val"]) >= {"photo_shape"}
    assert 1 <= on_disk["best_epoch"] <= 4


def test_pretraining_reads_only_the_train_split(tiny_world: Path) -> None:
    from sketchtext.plugin.miniature.pretrain import build_data

    world = read_world(tiny_world)
    data = build_data(world, lambda texts: np.zeros((len(texts), 4), np.int64), 16, instance_sketch_captions=True)
    train = {p.path for p in world.photos_of("train")} | {s for s, _ in world.sketches_of("train")}
    assert len(data.pixels) == len(train)
    assert sum(len(c) for c in data.captions_of) == sum(1 for r in world.captions if r[2] == "train")


def test_default_pretraining_never_pairs_a_sketch_with_its_photo_or_its_instance(tiny_world: Path) -> None:
    from sketchtext.plugin.miniature.pretrain import IMAGE_TERMS, build_data, sample_batch
    from sketchtext.plugin.miniature.world import category_sketch_captions

    world = read_world(tiny_world)
    cfg = PretrainCfg(**TINY)
    data = build_data(world, lambda texts: np.zeros((len(texts), 4), np.int64), 16, cfg.instance_sketch_captions)
    sketches = {i for _, group in data.groups for i in group}
    names = {s for s, row in world.shapes.items() if row["split"] == "train"}
    shapes = list(world.shape_groups("train"))  # build_data's group order
    category = {i: world.shapes[shapes[g]]["category"] for g, (_, group) in enumerate(data.groups) for i in group}
    rng = np.random.default_rng(0)
    seen: set[str] = set()
    for _ in range(50):
        for term, (left, right) in sample_batch(data, cfg, rng).items():
            seen.add(term)
            for i, j in zip(left, right, strict=True):
                if term in IMAGE_TERMS:
                    assert (i in sketches) == (j in sketches), f"{term} paired a sketch with a photo"
                elif i in sketches:  # a drawing's caption names its category only, never its product line or form
                    text = data.texts[j]
                    assert not any(name in text.split() for name in names), text
                    assert text in category_sketch_captions(category[i]), text
    assert seen == {"caption", "sketch_caption", "image_image"}
    leaky = PretrainCfg(**TINY, sketch_photo_weight=1.0)  # the option still exists, off by default
    assert "sketch_photo" in sample_batch(data, leaky, rng)


def test_checkpoint_loads_through_load_encoder_with_identical_embeddings(tiny_world: Path, tmp_path: Path) -> None:
    import open_clip
    import torch

    from sketchtext.plugin.model.factory import load_encoder
    from sketchtext.plugin.model.spec import register_bundled_configs

    register_bundled_configs()
    model, _, _ = open_clip.create_model_and_transforms("sketchtext-tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "ck.safetensors"
    save_checkpoint(model, path, PretrainCfg(arch="sketchtext-tiny"))
    loaded = load_encoder(f"open_clip:sketchtext-tiny@{path}", device="cpu", precision="fp32")  # auto may pick bf16
    images = [Image.open(tiny_world / p).convert("RGB") for p in list(read_world(tiny_world).photos)[:4]]
    pixels = loaded.preprocess_images(images)
    with torch.no_grad():
        in_memory = model.encode_image(pixels, normalize=True).numpy()
        text = model.encode_text(loaded.tokenizer(["a red boot"]), normalize=True).numpy()
    np.testing.assert_array_equal(loaded.encode_images(images), in_memory)
    np.testing.assert_array_equal(loaded.encode_texts(["a red boot"]), text)


def test_probes_return_accuracies_in_range(tiny_world: Path, tiny_encoder) -> None:
    results = run_probes(read_world(tiny_world), tiny_encoder, "test")
    assert {"photo_shape", "sketch_shape", "desc_shape", "name_shape", "colour_photo", "query_sum"} <= set(results)
    for r in results.values():
        assert 0.0 <= r.chance1 <= 1.0 and 0.0 <= r.acc1 <= r.acc10 <= 1.0 and r.n > 0
    assert "sketch_category" in results
    assert set(gate(results)) == {"photo_shape_acc1", "sketch_category_acc1", "name_shape_acc10", "colour_photo_acc10"}


def test_rank_accuracy_counts_the_first_positive() -> None:
    sims = np.array([[0.9, 0.5, 0.1], [0.2, 0.3, 0.8]], np.float32)
    positive = np.array([[False, True, False], [False, False, True]])
    r = rank_accuracy(sims, positive)
    assert (r.acc1, r.acc10, r.n) == (0.5, 1.0, 2) and r.chance1 == pytest.approx(1 / 3, abs=1e-3)
    excluded = rank_accuracy(sims, positive, np.array([[True, False, False], [False, False, False]]))
    assert excluded.acc1 == 1.0


def test_bad_settings_say_what_to_do(tiny_world: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=".safetensors"):
        pretrain(tiny_world, tmp_path / "m.pt", PretrainCfg(**TINY))
    with pytest.raises(ConfigError, match="sketchtext generate"):
        pretrain(tmp_path / "nowhere", tmp_path / "m.safetensors", PretrainCfg(**TINY))


def test_cli_pretrain_and_probe(tiny_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.safetensors"
    args = ["pretrain", "--data", str(tiny_world), "--out", str(out), "--arch", "sketchtext-tiny"]
    result = CliRunner().invoke(main, [*args, "--epochs", "1", "--batch-size", "6", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["steps"] >= 1 and out.is_file()
    spec = f"open_clip:sketchtext-tiny@{out}"
    probed = CliRunner().invoke(main, ["probe", "--model", spec, "--data", str(tiny_world), "--json"])
    assert probed.exit_code == 0, probed.output
    report = json.loads(probed.output)
    assert report["split"] == "val" and 0.0 <= report["probes"]["sketch_shape"]["acc10"] <= 1.0
    table = CliRunner().invoke(main, ["probe", "--model", spec, "--data", str(tiny_world), "--split", "test"])
    assert "| photo_shape |" in table.output
    missing = CliRunner().invoke(main, ["probe", "--model", spec, "--data", str(tmp_path)])
    assert missing.exit_code == 1 and "error:" in missing.output


def test_the_bundled_mini_architecture_builds_and_encodes(tiny_world: Path) -> None:
    from sketchtext.plugin.model.factory import load_encoder

    encoder = load_encoder("open_clip:sketchtext-mini", device="cpu")
    image = Image.open(tiny_world / next(iter(read_world(tiny_world).photos))).convert("RGB")
    assert encoder.encode_images([image]).shape == (1, 128) == encoder.encode_texts(["a red boot"]).shape


def test_the_same_seed_gives_the_same_checkpoint(tiny_world: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    cfg = PretrainCfg(epochs=1, **TINY)
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    pretrain(tiny_world, first, cfg)
    pretrain(tiny_world, second, cfg)
    a, b = load_file(str(first)), load_file(str(second))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
