"""What training optimises and measures: batches of preprocessed sketch–photo pairs, one batch through the method
(DESIGN.md section 4) giving every loss whose weight is not zero, and the validation score."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from sketchtext.plugin.method.evaluation import accuracy, ranks, read_image
from sketchtext.plugin.method.losses import (
    MethodCfg,
    anchor_loss,
    composition_loss,
    neutral_text_loss,
    prompt_consistency_loss,
    reconstruction_loss,
    region_triplet_loss,
    triplet_loss,
)
from sketchtext.plugin.method.pairs import SketchPhotoPair, TextQuery, photos
from sketchtext.plugin.model.composer import ComposedCLIP, pool_regions


def read_phrases(name: str) -> list[str]:
    """A bundled phrase list (`prompts.txt`, `neutral_texts.txt`): one phrase a line, `#` comments."""
    text = resources.files("sketchtext.plugin.data").joinpath(name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def method_losses(
    cc: ComposedCLIP,
    sketches: torch.Tensor,
    photos_px: torch.Tensor,
    prompts: Sequence[torch.Tensor],
    neutrals: Sequence[torch.Tensor],
    cfg: MethodCfg,
) -> dict[str, torch.Tensor]:
    """One batch through the method: s, p⁺ from V; s^w = C_v2w(s); s_L, s_F, s_Δ, s_N from the text tower (one
    pass); every loss whose weight is not zero. The other photos of the batch are the negatives."""
    batch = sketches.shape[0]
    pixels = torch.cat([sketches, photos_px])
    if cfg.lambda_rt > 0:
        features, tokens = cc.images_with_tokens(pixels)
        regions = pool_regions(tokens[batch:], cfg.region_grid)
    else:
        features = cc.images(pixels)
    s, p = features[:batch], features[batch:]
    words = cc.composer.to_word(s)
    context = cc.composer.context
    rows = [[context, words[i : i + 1]] for i in range(batch)]
    if cfg.lambda_tt > 0:
        rows += [[prompts[i], words[i : i + 1]] for i in range(batch)]
    if cfg.lambda_comp > 0 or cfg.lambda_rec > 0:
        delta_words = cc.composer.to_word(p - s)  # Δ = p⁺ − s: what the photo has that the sketch lacks
        rows += [[context, words[i : i + 1], delta_words[i : i + 1]] for i in range(batch)]
    if cfg.lambda_reg > 0:
        rows += [[context, words[i : i + 1], neutrals[i]] for i in range(batch)]
    queries = iter(cc.encode(rows).split(batch))
    s_l = next(queries)
    parts = {"trip": triplet_loss(s_l, p, cfg.margin)}
    if cfg.lambda_anchor > 0:
        parts["anchor"] = anchor_loss(s_l, s)
    if cfg.lambda_rt > 0:
        parts["rt"] = region_triplet_loss(s_l, regions, cfg.margin, cfg.region_temperature)
    if cfg.lambda_tt > 0:
        parts["tt"] = prompt_consistency_loss(s_l, next(queries))
    if cfg.lambda_comp > 0 or cfg.lambda_rec > 0:
        s_delta = next(queries)
        if cfg.lambda_comp > 0:
            parts["comp"] = composition_loss(s_delta, s_l, p, cfg.margin)
        if cfg.lambda_rec > 0:
            size = cc.composer.recon_size
            thumbnails = torch.nn.functional.adaptive_avg_pool2d(photos_px.float(), size)
            recon = cc.composer.reconstruct(torch.cat([s_l, s_delta]).to(context.dtype)).float()
            parts["rec"] = reconstruction_loss(recon, thumbnails.repeat(2, 1, 1, 1))
    if cfg.lambda_reg > 0:
        parts["reg"] = neutral_text_loss(next(queries), s_l, p)
    return parts


class PairImages(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Preprocessed (sketch, photo) pixels of a list of pairs; decoded once up front when the set is small."""

    def __init__(self, pairs: Sequence[SketchPhotoPair], preprocess: Any, preload: bool) -> None:
        self.pairs = list(pairs)
        self.preprocess = preprocess
        paths = sorted({p.sketch for p in self.pairs} | {p.photo for p in self.pairs})
        self.cache = {path: self.load(path) for path in paths} if preload else {}

    def load(self, path: Path) -> torch.Tensor:
        return self.preprocess(read_image(path).convert("RGB"))

    def image(self, path: Path) -> torch.Tensor:
        return self.cache[path] if path in self.cache else self.load(path)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pairs[index]
        return self.image(pair.sketch), self.image(pair.photo)


@torch.inference_mode()
def validate(
    cc: ComposedCLIP, data: PairImages, device: str, batch: int, text_set: Sequence[TextQuery] = ()
) -> dict[str, float]:
    """Trained-sketch FG-SBIR on the validation pairs: s_L of each sketch against the tuned gallery; with
    `text_set`, also the composed queries T_t([P^L; s^w; T_w(text)]) as `composed@K`."""
    gallery = photos(data.pairs)
    index = {path: i for i, path in enumerate(gallery)}
    vectors = []
    for i in range(0, len(gallery), batch):
        pixels = torch.stack([data.image(p) for p in gallery[i : i + batch]]).to(device)
        vectors.append(cc.images(pixels))
    photo_vectors = torch.cat(vectors).cpu().numpy()
    queries = []
    for i in range(0, len(data.pairs), batch):
        pixels = torch.stack([data.image(p.sketch) for p in data.pairs[i : i + batch]]).to(device)
        queries.append(cc.query(cc.composer.to_word(cc.images(pixels))))
    rank = ranks(torch.cat(queries).cpu().numpy(), photo_vectors, [index[p.photo] for p in data.pairs])
    out = {**accuracy(rank, (1, 5, 10)), "mean_rank": float(rank.mean())}
    usable = [q for q in text_set if q.target in index]
    if usable:
        composed = []
        for i in range(0, len(usable), batch):
            chunk = usable[i : i + batch]
            pixels = torch.stack([data.image(q.sketch) for q in chunk]).to(device)
            composed.append(cc.query(cc.composer.to_word(cc.images(pixels)), cc.words([q.text for q in chunk])))
        rank = ranks(torch.cat(composed).cpu().numpy(), photo_vectors, [index[q.target] for q in usable])
        out |= {f"composed{k.removeprefix('acc')}": v for k, v in accuracy(rank, (1, 5, 10)).items()}
    return out
