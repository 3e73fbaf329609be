"""Serving with a trained checkpoint: a `ClipEncoder` whose image tower carries the tuned LayerNorms (so its gallery
vectors, and its fingerprint, differ from the base model's) and which makes composed query vectors."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.nn import functional as F

from sketchtext.plugin.errors import CheckpointError
from sketchtext.plugin.model.checkpoint import CheckpointInfo, apply_checkpoint
from sketchtext.plugin.model.clip import ClipEncoder
from sketchtext.plugin.model.composer import ComposedCLIP
from sketchtext.plugin.model.query import Combine, Mode, QueryInput, composed_modes, mix

log = logging.getLogger(__name__)


class ComposedEncoder(ClipEncoder):
    """A CLIP encoder with a sketchtext checkpoint applied.

    Images go through the tuned image tower; a sketch alone becomes s_L = T_t([P^L; s^w]); a sketch with text is
    composed (T_t([P^L; s^w; T_w(text)])), summed (normalise(V(S) + text)) or both fused, as the query asks or
    as the checkpoint measured best; text alone is CLIP's own text embedding.
    """

    def __init__(
        self, model: Any, preprocess: Any, tokenizer: Any, info: CheckpointInfo, *, base_fingerprint: str,
        device: str, dtype: torch.dtype,
    ) -> None:  # fmt: skip
        composer = apply_checkpoint(model, tokenizer, info)
        super().__init__(
            model,
            preprocess,
            tokenizer,
            fingerprint=f"{base_fingerprint}+{info.fingerprint}",
            device=device,
            dtype=dtype,
        )
        self.composer = composer.to(device=device, dtype=dtype)
        self.composed = ComposedCLIP(self.model, tokenizer, self.composer)
        self.checkpoint = info
        self.base_fingerprint = base_fingerprint
        self.region_grid = int(info.config.get("method", {}).get("region_grid", ClipEncoder.region_grid))
        self.regions_by_default = True

    @classmethod
    def wrap(cls, encoder: ClipEncoder, info: CheckpointInfo) -> ComposedEncoder:
        """Apply a checkpoint to an already loaded base encoder (its model is changed in place)."""
        check_base(info, encoder.fingerprint, "the loaded model")
        return cls(
            encoder.model, encoder.preprocess, encoder.tokenizer, info,
            base_fingerprint=encoder.fingerprint, device=encoder.device, dtype=encoder.dtype,
        )  # fmt: skip

    @property
    def default_combine(self) -> str:
        return self.checkpoint.combine

    def query_vectors(
        self, inputs: Sequence[QueryInput], combines: Sequence[Combine | None] | None = None
    ) -> tuple[NDArray[np.float32], list[Mode]]:
        """Query vectors for (sketch, text) pairs, one pass per tower, and the mode each was made with."""
        modes = composed_modes(inputs, combines, self.default_combine)
        sketch_rows = [i for i, (s, _) in enumerate(inputs) if s is not None]
        text_rows = [i for i, mode in enumerate(modes) if mode in ("text", "sum", "fusion")]
        texts = dict(zip(text_rows, self.encode_texts([inputs[i][1] or "" for i in text_rows]), strict=True))
        composed: dict[int, NDArray[np.float32]] = {}
        images: dict[int, NDArray[np.float32]] = {}
        with torch.inference_mode():
            if sketch_rows:  # the image tower at the encoder's precision (int8 when admitted), as for photos
                pixels = self.preprocess_images([inputs[i][0] for i in sketch_rows]).to(self.device)
                features = F.normalize(self.image_features(pixels).float(), dim=-1)
                words = self.composer.to_word(features.to(self.dtype))
                tails = [
                    self.composed.words([inputs[i][1] or ""])[0] if modes[i] in ("composed", "fusion") else None
                    for i in sketch_rows
                ]
                vectors = self.composed.query(words, tails).cpu().numpy()
                composed = dict(zip(sketch_rows, vectors, strict=True))
                images = dict(zip(sketch_rows, features.cpu().numpy(), strict=True))
        return mix(modes, self.dim, composed, images, texts), modes


def check_base(info: CheckpointInfo, fingerprint: str, what: str) -> None:
    if fingerprint != info.base_fingerprint:
        raise CheckpointError(
            f"Checkpoint {info.path} was trained on {info.base_spec} (weights {info.base_fingerprint}), but "
            f"{what} has weights {fingerprint}; use --model {info.base_spec} (or a copy of its weights file)."
        )
