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


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # torch's; int8 is onnxruntime's (model/int8.py)
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
# A faster precision is used only if its embeddings agree with fp32 this well: bf16/fp16 when "auto" picks them,
# int8 always (asked for or picked by "auto"), since its vectors share collections with fp32 ones.
AUTO_MIN_COSINE = 0.999
AUTO_MIN_TOP10_OVERLAP = 0.95


def check_precision(precision: str, device: str) -> None:
    if precision == "fp16" and device == "cpu":
        raise ConfigError("fp16 is not supported on the CPU; use precision bf16, int8 or fp32.")
    if precision == "int8" and device != "cpu":
        raise ConfigError("int8 runs the image tower on the CPU (onnxruntime); use --device cpu, or fp16 on a GPU.")


def fast_precision(device: str) -> str | None:
    """The faster precision worth trying on this device: fp16 on CUDA, bf16 on CPUs with native bf16 support, else
    int8 when onnxruntime (and the exporter) are installed."""
    import importlib.util

    import torch

    if device == "cuda":
        return "fp16"
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bf16"
    needed = ("onnxruntime", "onnx", "onnxscript")
    return "int8" if all(importlib.util.find_spec(name) is not None for name in needed) else None


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
        return agreement(model.encode_image(pixels), fast.encode_image(pixels.to(dtype)))


def agreement(reference: Any, candidate: Any) -> tuple[float, float]:
    """(lowest cosine, mean top-10 neighbour overlap) between two encodes (N, D) of the same photos."""
    import torch

    reference = torch.nn.functional.normalize(torch.as_tensor(reference).float(), dim=-1)
    candidate = torch.nn.functional.normalize(torch.as_tensor(candidate).float(), dim=-1)
    cosine = float((reference * candidate).sum(-1).min())
    k = min(10, len(reference) - 1)
    ref_top = (reference @ reference.T).topk(k + 1).indices[:, 1:]
    cand_top = (candidate @ candidate.T).topk(k + 1).indices[:, 1:]
    overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ref_top, cand_top, strict=True))
    return cosine, overlap / (k * len(reference))


def agrees(cosine: float, overlap: float) -> bool:
    return cosine >= AUTO_MIN_COSINE and overlap >= AUTO_MIN_TOP10_OVERLAP


def choose_precision(model: Any, preprocess: Any, precision: str, device: str) -> str:
    """Resolve "auto": the fast precision if its embeddings agree with fp32 (cosine and top-10 overlap), else fp32;
    int8 is returned unchecked (`model.int8.admit_int8` checks it on the built encoder)."""
    if precision != "auto":
        check_precision(precision, device)
        return precision
    fast = fast_precision(device)
    if fast is None:
        return "fp32"
    if fast == "int8":  # checked once the encoder is built: the export must carry a checkpoint's tuned norms
        return fast
    cosine, overlap = precision_agreement(model, preprocess, fast, device)
    chosen = fast if agrees(cosine, overlap) else "fp32"
    log.info(
        "precision auto: %s agrees with fp32 at cosine %.5f, top-10 overlap %.3f -> %s", fast, cosine, overlap, chosen
    )
    return chosen
