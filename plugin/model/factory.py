"""One entry point for loading a model: `load_encoder(spec, checkpoint=...)` gives the zero-shot CLIP encoder, or
the composed one when a trained checkpoint is named."""

from __future__ import annotations

import logging
from pathlib import Path

from sketchtext.plugin.model.checkpoint import read_checkpoint
from sketchtext.plugin.model.clip import ClipEncoder
from sketchtext.plugin.model.composed import ComposedEncoder, check_base
from sketchtext.plugin.model.precision import DTYPES, check_precision, choose_precision, resolve_device
from sketchtext.plugin.model.spec import ModelSpec, create_clip, weights_fingerprint

log = logging.getLogger(__name__)


def load_encoder(
    spec: str | ModelSpec, *, device: str = "auto", precision: str = "auto", checkpoint: Path | str | None = None
) -> ClipEncoder:
    """Load a CLIP encoder for a model spec on a device at a precision ("auto" checks the fast one against fp32);
    with a trained sketchtext `checkpoint` folder, a `ComposedEncoder` (tuned image tower, composed queries,
    fingerprint bound to the checkpoint)."""
    import torch

    parsed = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)
    info = read_checkpoint(checkpoint) if checkpoint is not None else None
    base_fingerprint = weights_fingerprint(parsed)
    if info is not None:
        check_base(info, base_fingerprint, f"model {parsed}")
    resolved = resolve_device(device)
    if precision != "auto":
        check_precision(precision, resolved)  # before the (slow) model build
    model, preprocess, tokenizer = create_clip(parsed, resolved)
    chosen = choose_precision(model, preprocess, precision, resolved)
    dtype = getattr(torch, DTYPES[chosen])
    if info is None:
        log.info("loaded %s on %s as %s", parsed, resolved, chosen)
        return ClipEncoder(model, preprocess, tokenizer, fingerprint=base_fingerprint, device=resolved, dtype=dtype)
    log.info("loaded %s with checkpoint %s (%s) on %s as %s", parsed, info.path, info.fingerprint, resolved, chosen)
    return ComposedEncoder(
        model, preprocess, tokenizer, info, base_fingerprint=base_fingerprint, device=resolved, dtype=dtype
    )
