"""Device and precision: resolving "auto", and admitting a fast precision only when it agrees with fp32."""

from __future__ import annotations

import io
import logging
from importlib import resources
from typing import TYPE_CHECKING, Any

from sketchtext.plugin.errors import ConfigError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("Device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu or auto.")
    return device


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# When precision is "auto", a faster precision is used only if its embeddings agree with fp32 this well.
AUTO_MIN_COSINE = 0.999
AUTO_MIN_TOP10_OVERLAP = 0.95


def check_precision(precision: str, device: str) -> None:
    if precision == "fp16" and device == "cpu":
        raise ConfigError("fp16 is not supported on the CPU; use precision bf16 or fp32.")


def fast_precision(device: str) -> str | None:
    """The faster precision worth trying on this device: fp16 on CUDA, bf16 on CPUs with native bf16 support."""
    import torch

    if device == "cuda":
        return "fp16"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


def check_photos() -> list[Image.Image]:
    """The precision check's photos: 32 generated product photos shipped in `sketchtext.plugin.data/check` (drawn
    once by the miniature world; shipped so that loading a model never imports the miniature)."""
    from PIL import Image

    folder = resources.files("sketchtext.plugin.data").joinpath("check")
    photos = []
    for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if item.name.endswith(".jpg"):
            with item.open("rb") as fh:
                photos.append(Image.open(io.BytesIO(fh.read())).convert("RGB"))
    return photos


def precision_agreement(model: Any, preprocess: Any, precision: str, device: str) -> tuple[float, float]:
    """(lowest cosine, mean top-10 neighbour overlap) between fp32 and `precision` embeddings of the check photos."""
    import copy

    import torch

    photos = check_photos()
    pixels = torch.stack([preprocess(photo) for photo in photos]).to(device)
    dtype = getattr(torch, DTYPES[precision])
    fast = copy.deepcopy(model).to(dtype)
    with torch.inference_mode():
        reference = torch.nn.functional.normalize(model.encode_image(pixels).float(), dim=-1)
        candidate = torch.nn.functional.normalize(fast.encode_image(pixels.to(dtype)).float(), dim=-1)
    cosine = float((reference * candidate).sum(-1).min())
    k = min(10, len(photos) - 1)
    ref_top = (reference @ reference.T).topk(k + 1).indices[:, 1:]
    cand_top = (candidate @ candidate.T).topk(k + 1).indices[:, 1:]
    overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ref_top, cand_top, strict=True))
    return cosine, overlap / (k * len(photos))


def choose_precision(model: Any, preprocess: Any, precision: str, device: str) -> str:
    """Resolve "auto": the fast precision if its embeddings agree with fp32 (cosine and top-10 overlap), else fp32."""
    if precision != "auto":
        check_precision(precision, device)
        return precision
    fast = fast_precision(device)
    if fast is None:
        return "fp32"
    cosine, overlap = precision_agreement(model, preprocess, fast, device)
    chosen = fast if cosine >= AUTO_MIN_COSINE and overlap >= AUTO_MIN_TOP10_OVERLAP else "fp32"
    log.info(
        "precision auto: %s agrees with fp32 at cosine %.5f, top-10 overlap %.3f -> %s", fast, cosine, overlap, chosen
    )
    return chosen
