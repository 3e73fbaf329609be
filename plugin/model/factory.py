"""One entry point for loading a model: `load_encoder(spec, checkpoint=...)` gives the zero-shot CLIP encoder, or
the composed one when a trained checkpoint is named."""

from __future__ import annotations

import logging
from pathlib import Path

from sketchtext.plugin.model.checkpoint import read_checkpoint
from sketchtext.plugin.model.clip import ClipEncoder
from sketchtext.plugin.model.composed import ComposedEncoder, check_base
from sketchtext.plugin.model.int8 import admit_int8, require_runtime
from sketchtext.plugin.model.precision import DTYPES, check_precision, choose_precision, resolve_device
from sketchtext.plugin.model.spec import ModelSpec, create_clip, weights_fingerprint

log = logging.getLogger(__name__)


def load_encoder(
    spec: str | ModelSpec,
    *,
    device: str = "auto",
    precision: str = "auto",
    checkpoint: Path | str | None = None,
    models_dir: Path | None = None,
) -> ClipEncoder:
    """Load a CLIP encoder for a model spec on a device at a precision ("auto" checks the fast one against fp32);
    with a trained sketchtext `checkpoint` folder, a `ComposedEncoder` (tuned image tower, composed queries,
    fingerprint bound to the checkpoint). int8 (asked for, or auto's pick on a CPU without native bf16) runs the image
    tower in onnxruntime, exported once into `models_dir`, and only when it agrees with fp32 (`model.int8`)."""
    import torch

    parsed = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)
    info = read_checkpoint(checkpoint) if checkpoint is not None else None
    base_fingerprint = weights_fingerprint(parsed)
    if info is not None:
        check_base(info, base_fingerprint, f"model {parsed}")
    resolved = resolve_device(device)
    if precision != "auto":
        check_precision(precision, resolved)  # before the (slow) model build
    if precision == "int8":
        require_runtime()
    model, preprocess, tokenizer = create_clip(parsed, resolved)
    chosen = choose_precision(model, preprocess, precision, resolved)
    dtype = getattr(torch, DTYPES["fp32" if chosen == "int8" else chosen])
    if info is None:
        encoder = ClipEncoder(model, preprocess, tokenizer, fingerprint=base_fingerprint, device=resolved, dtype=dtype)
    else:
        encoder = ComposedEncoder(
            model, preprocess, tokenizer, info, base_fingerprint=base_fingerprint, device=resolved, dtype=dtype
        )
    if chosen == "int8":
        admit_int8(encoder, models_dir)
    with_checkpoint = f" with checkpoint {info.path} ({info.fingerprint})" if info is not None else ""
    log.info("loaded %s%s on %s as %s", parsed, with_checkpoint, resolved, encoder.precision)
    return encoder
