"""`sketchtext export-onnx`: what a query needs, as ONNX graphs and arrays that `OnnxEncoder` runs without torch.

An export folder holds `image.onnx` (the image tower, with a checkpoint's tuned norms), `text.onnx` (the text tower
fed token embeddings and the EOT position, as `composer.encode_sequences`), `converter.onnx` (C_v2w, with a
checkpoint), `token_embedding.npy` (T_w), `context.npy` (P^L, with a checkpoint), CLIP's BPE merges file and
`manifest.json`: the fingerprint (the torch encoder's, so the collection binding holds), the preprocessing, the
sizes and the versions it was made with. Every graph has a dynamic batch axis; the text tower also a dynamic length.
"""

from __future__ import annotations

import json
import logging
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sketchtext.plugin.errors import ModelError
from sketchtext.plugin.files import write_atomic
from sketchtext.plugin.model.clip import ClipEncoder
from sketchtext.plugin.model.composed import ComposedEncoder
from sketchtext.plugin.model.composer import context_length, pool_at_eot, special_ids
from sketchtext.plugin.model.factory import load_encoder
from sketchtext.plugin.model.onnx import FORMAT, MANIFEST, MERGES
from sketchtext.plugin.model.onnx_graph import DEFAULT_OPSET, ImageTower, TextTower, export_graph

log = logging.getLogger(__name__)


def preprocess_manifest(encoder: ClipEncoder) -> dict[str, Any]:
    """open_clip's eval preprocess as plain values (resize the short side, centre crop, normalise), or an error."""
    from torchvision import transforms

    steps = encoder.pixel_steps
    resize = [s for s in steps.pil if isinstance(s, transforms.Resize)] if steps else []
    crop = [s for s in steps.pil if isinstance(s, transforms.CenterCrop)] if steps else []
    if steps is None or len(resize) != 1 or len(crop) != 1 or steps.tensor is None:
        raise ModelError(
            "This model's image preprocess is not open_clip's resize + centre crop + normalise, so an export could "
            "not reproduce it; export a model with the default preprocess (resize_mode 'shortest')."
        )
    size = resize[0].size
    if not isinstance(size, int) and len(size) != 1:
        raise ModelError(f"The preprocess resizes to a fixed {size}, not the short side; export cannot follow it.")
    interpolation = resize[0].interpolation.value
    if interpolation not in ("bicubic", "bilinear", "nearest"):
        raise ModelError(f"The preprocess resizes with {interpolation}; an export supports bicubic or bilinear.")
    return {
        "resize": int(size if isinstance(size, int) else size[0]),
        "interpolation": interpolation,
        "crop": [int(v) for v in crop[0].size],
        "mean": list(steps.mean),
        "std": list(steps.std),
    }


def merges_file(tokenizer: Any) -> Path:
    """open_clip's BPE merges file, when the tokenizer is its plain `SimpleTokenizer` (the one the export repeats)."""
    import open_clip
    from open_clip.tokenizer import SimpleTokenizer

    if type(tokenizer) is not SimpleTokenizer or tokenizer.reduction_fn is not None or tokenizer.vocab_size != 49408:
        raise ModelError(
            f"An ONNX export repeats open_clip's CLIP BPE tokenizer; this model uses {type(tokenizer).__name__}."
        )
    return Path(open_clip.__file__).parent / MERGES


def versions() -> dict[str, str]:
    found = {}
    for package in ("torch", "open_clip_torch", "onnx", "onnxruntime"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def export_onnx(
    spec: str, out: Path, *, checkpoint: Path | str | None = None, opset: int = DEFAULT_OPSET
) -> dict[str, Any]:
    """Export the query side of `spec` (with a trained `checkpoint`, its composed queries) into `out`; returns the
    manifest."""
    encoder = load_encoder(spec, device="cpu", precision="fp32", checkpoint=checkpoint)
    model = encoder.model
    sot, eot = special_ids(encoder.tokenizer)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "fingerprint": encoder.fingerprint,
        "source": {"spec": spec, "checkpoint": str(checkpoint) if checkpoint else None},
        "dim": encoder.dim,
        "image_size": encoder.image_size,
        "preprocess": preprocess_manifest(encoder),
        "text": {
            "context_length": context_length(model),
            "token_width": int(model.token_embedding.weight.shape[1]),
            "sot": sot,
            "eot": eot,
            "pad": 0,
            "trim": pool_at_eot(model),
        },
        "precision": "fp32",
        "opset": opset,
        "versions": versions(),
    }
    merges = merges_file(encoder.tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    side = encoder.image_size
    export_graph(ImageTower(model), (torch.zeros(2, 3, side, side),), out / "image.onnx", ["pixels"], opset)
    width = manifest["text"]["token_width"]
    export_graph(
        TextTower(model),
        (torch.zeros(2, 5, width), torch.tensor([4, 2])),
        out / "text.onnx",
        ["embeddings", "eot_index"],
        opset,
    )
    np.save(out / "token_embedding.npy", model.token_embedding.weight.detach().float().numpy())
    shutil.copyfile(merges, out / MERGES)
    if isinstance(encoder, ComposedEncoder):
        composer = encoder.composer
        export_graph(composer.c_v2w, (torch.zeros(2, encoder.dim),), out / "converter.onnx", ["features"], opset)
        np.save(out / "context.npy", composer.context.detach().float().numpy())
        manifest["checkpoint"] = {"fingerprint": encoder.checkpoint.fingerprint, "combine": encoder.default_combine}
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    log.info("exported %s (%s) to %s", spec, encoder.fingerprint, out)
    return manifest
