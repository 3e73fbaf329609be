"""The CLIP encoder: specs, real encodes with the tiny architecture, precision, local checkpoints, offline errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from sketchtext.plugin.errors import ConfigError, ModelUnavailableError
from sketchtext.plugin.model.clip import ClipEncoder, split_preprocess
from sketchtext.plugin.model.factory import load_encoder
from sketchtext.plugin.model.spec import ModelSpec, weights_fingerprint
from tests.conftest import TINY_SPEC, draw_product


@pytest.fixture
def photos(tmp_path: Path) -> list[Image.Image]:
    return [Image.open(draw_product(tmp_path / f"{i}.png", i, c)) for i, c in enumerate(["red", "blue", "green"])]


def test_spec_parsing() -> None:
    assert ModelSpec.parse("open_clip:ViT-B-32@laion2b_s34b_b79k") == ModelSpec("ViT-B-32", "laion2b_s34b_b79k")
    assert ModelSpec.parse("open_clip:ViT-B-32").weights is None
    assert ModelSpec.parse("open_clip:ViT-B-32@/models/x.bin").weights_path == Path("/models/x.bin")
    assert ModelSpec.parse("open_clip:ViT-B-32@laion2b_s34b_b79k").weights_path is None
    for bad in ["ViT-B-32", "clip:ViT-B-32", "open_clip:"]:
        with pytest.raises(ConfigError, match="open_clip:ARCH"):
            ModelSpec.parse(bad)


def test_unknown_architecture_lists_choices() -> None:
    with pytest.raises(ConfigError, match="ViT-B-32"):
        load_encoder("open_clip:NoSuchNet", device="cpu")


def test_tiny_encode_is_normalised_deterministic_and_discriminative(tiny_encoder, photos) -> None:
    vectors = tiny_encoder.encode_images(photos)
    assert vectors.shape == (3, tiny_encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])
    again = load_encoder(TINY_SPEC, device="cpu", precision="fp32").encode_images(photos)
    np.testing.assert_array_equal(vectors, again)  # seeded random init: same weights every time
    texts = tiny_encoder.encode_texts(["a red shoe", "a blue bag"])
    assert texts.shape == (2, tiny_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    assert tiny_encoder.encode_images([]).shape == (0, tiny_encoder.dim)


def test_bf16_embeddings_agree_with_fp32(tiny_encoder, photos) -> None:
    bf16 = load_encoder(TINY_SPEC, device="cpu", precision="bf16")
    cosine = np.sum(bf16.encode_images(photos) * tiny_encoder.encode_images(photos), axis=1)
    assert bf16.encode_images(photos).dtype == np.float32
    assert cosine.min() > 0.99


def test_fp16_on_cpu_is_refused() -> None:
    with pytest.raises(ConfigError, match="bf16"):
        load_encoder(TINY_SPEC, device="cpu", precision="fp16")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_checkpoint_loads_and_is_fingerprinted_by_content(tiny_encoder, photos, tmp_path, suffix) -> None:
    import torch
    from safetensors.torch import save_file

    state = {k: v.detach().clone() + 0.01 for k, v in tiny_encoder.model.state_dict().items()}
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    loaded = load_encoder(f"open_clip:sketchtext-tiny@{path}", device="cpu", precision="fp32")
    assert loaded.fingerprint.startswith("sketchtext-tiny@sha256:")
    assert loaded.fingerprint != tiny_encoder.fingerprint
    assert not np.allclose(loaded.encode_images(photos), tiny_encoder.encode_images(photos))
    assert weights_fingerprint(ModelSpec.parse(f"open_clip:sketchtext-tiny@{path}")) == loaded.fingerprint


def test_missing_checkpoint_file_says_so(tmp_path) -> None:
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_encoder(f"open_clip:sketchtext-tiny@{tmp_path / 'nope.safetensors'}", device="cpu")


def test_offline_pretrained_tag_explains_local_checkpoint(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # fail at once instead of retrying the network
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import, so set it there too
    with pytest.raises(ModelUnavailableError, match="point at it: --model open_clip:ViT-B-32@/path/to/"):
        load_encoder("open_clip:ViT-B-32@laion2b_s34b_b79k", device="cpu")


def test_auto_precision_takes_the_fast_one_only_when_it_agrees(monkeypatch) -> None:
    import torch

    from sketchtext.plugin.model import precision as encoders

    if encoders.fast_precision("cpu") is None:
        pytest.skip("this CPU has no native bf16: auto is always fp32 here")
    monkeypatch.setattr(encoders, "AUTO_MIN_COSINE", 0.0)
    monkeypatch.setattr(encoders, "AUTO_MIN_TOP10_OVERLAP", 0.0)
    assert load_encoder(TINY_SPEC, device="cpu", precision="auto").dtype == torch.bfloat16
    monkeypatch.setattr(encoders, "AUTO_MIN_COSINE", 1.01)  # nothing can agree this well
    assert load_encoder(TINY_SPEC, device="cpu", precision="auto").dtype == torch.float32


def test_precision_agreement_is_measured_on_real_encodes(tiny_encoder) -> None:
    from sketchtext.plugin.model.precision import precision_agreement

    cosine, overlap = precision_agreement(tiny_encoder.model, tiny_encoder.preprocess, "bf16", "cpu")
    assert 0.9 < cosine <= 1.0 and 0.5 < overlap <= 1.0


def test_whole_uint8_images_resized_where_the_model_runs_agree_with_the_pil_preprocess(tiny_encoder, photos) -> None:
    steps = tiny_encoder.pixel_steps
    assert steps.tensor is not None  # open_clip's eval transform has tensor twins
    pixels = tiny_encoder.image_pixels(photos)
    assert [tuple(p.shape) for p in pixels] == [(3, photo.height, photo.width) for photo in photos]
    assert all(p.dtype == torch.uint8 for p in pixels)
    resized = steps.resize_and_crop(pixels, "cpu").numpy().astype(int)
    pil_steps = transforms.Compose(steps.pil)
    by_pil = np.stack([np.asarray(pil_steps(photo.convert("RGB"))) for photo in photos]).transpose(0, 3, 1, 2)
    assert resized.shape == by_pil.shape == (3, 3, tiny_encoder.image_size, tiny_encoder.image_size)
    difference = np.abs(resized - by_pil)
    assert difference.max() <= 2 and difference.mean() < 0.1  # PIL's and torchvision's bicubic differ in rounding
    cosines = (tiny_encoder.encode_image_tensors(pixels) * tiny_encoder.encode_images(photos)).sum(axis=1)
    assert cosines.min() > 0.9999


def test_pil_steps_without_tensor_twins_run_in_decode_threads_bit_identical(tiny_encoder, photos) -> None:
    size = tiny_encoder.image_size
    custom = transforms.Compose(
        [transforms.Resize(size), transforms.CenterCrop(size), lambda image: image]
        + tiny_encoder.preprocess.transforms[-2:]
    )
    encoder = ClipEncoder(
        tiny_encoder.model, custom, tiny_encoder.tokenizer, fingerprint="x", device="cpu", dtype=torch.float32
    )
    assert encoder.pixel_steps is not None and encoder.pixel_steps.tensor is None
    pixels = encoder.image_pixels(photos)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 3, size, size)
    np.testing.assert_array_equal(
        encoder.pixel_steps.normalise(pixels).numpy(), encoder.preprocess_images(photos).numpy()
    )
    np.testing.assert_array_equal(encoder.encode_image_tensors(pixels), encoder.encode_images(photos))


def test_a_preprocess_that_does_not_split_runs_whole(tiny_encoder, photos) -> None:
    custom = transforms.Compose([transforms.Resize(40), transforms.CenterCrop(32), transforms.ToTensor()])
    assert split_preprocess(custom) is None
    assert split_preprocess(lambda image: image) is None
    encoder = ClipEncoder(
        tiny_encoder.model, custom, tiny_encoder.tokenizer, fingerprint="x", device="cpu", dtype=torch.float32
    )
    pixels = encoder.image_pixels(photos)
    assert pixels.dtype == torch.float32 and pixels.shape == (3, 3, 32, 32)
