"""Generated catalogue embeddings: seeded product photos encoded by a tiny CLIP image tower.

Vector-index quality is measured on these rather than on random vectors: like real catalogue embeddings they are
anisotropic and clustered (by category, shape family, colour, pattern, scene), which is what HNSW graphs and
filtered search see in production. The photos are drawn at 64 px straight into arrays, so 100 000 of them render
and encode in well under a minute on two CPU cores.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from sketchtext.plugin.model.clip import ClipEncoder

SIZE = 64
CATEGORIES = tuple(
    f"{kind}-{line}" for kind in ("shoe", "bag", "hat", "lamp", "mug") for line in ("classic", "sport", "luxe", "kids")
)
PALETTE = np.array(
    [
        (200, 30, 35), (240, 120, 20), (245, 205, 40), (50, 150, 60), (0, 130, 130), (40, 90, 200), (20, 30, 90),
        (120, 50, 160), (240, 130, 180), (120, 70, 35), (25, 25, 25), (240, 240, 235), (128, 128, 128),
    ],
    dtype=np.float64,
)  # fmt: skip
SCENES = np.array([(250, 250, 250), (235, 220, 180), (150, 150, 155), (225, 235, 245), (110, 160, 90)], np.float64)
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    base = PALETTE[rng.integers(len(PALETTE))] + rng.normal(0, 12, 3)
    return tuple(int(c) for c in np.clip(base, 0, 255))  # type: ignore[return-value]


def draw_product(rng: np.random.Generator, category: int) -> Image.Image:
    """One product photo: a category's silhouette family with its own proportions, colourway and scene."""
    family, line = divmod(category, 4)
    scene = SCENES[rng.integers(len(SCENES))] + rng.normal(0, 6, 3)
    image = Image.new("RGB", (SIZE, SIZE), tuple(int(c) for c in np.clip(scene, 0, 255)))
    draw = ImageDraw.Draw(image)
    main, second = _colour(rng), _colour(rng)
    cx, cy = SIZE / 2 + rng.normal(0, 3), SIZE / 2 + rng.normal(0, 3)
    w = SIZE * (0.25 + 0.08 * line + 0.1 * rng.random())
    h = SIZE * (0.2 + 0.05 * (3 - line) + 0.1 * rng.random())
    box = (cx - w, cy - h, cx + w, cy + h)
    if family == 0:  # shoe: sole and upper
        draw.rectangle((box[0], cy + h * 0.5, box[2], box[3]), fill=second)
        draw.polygon([(box[0], cy + h * 0.5), (box[0], box[1]), (cx, box[1]), (box[2], cy + h * 0.5)], fill=main)
    elif family == 1:  # bag: body and handle
        draw.arc((cx - w * 0.5, box[1] - h * 0.6, cx + w * 0.5, box[1] + h * 0.6), 180, 360, fill=second, width=3)
        draw.rectangle(box, fill=main, outline=second, width=2)
    elif family == 2:  # hat: brim and crown
        draw.ellipse((box[0], cy, box[2], box[3]), fill=second)
        draw.ellipse((cx - w * 0.55, box[1], cx + w * 0.55, cy + h * 0.6), fill=main)
    elif family == 3:  # lamp: shade and stand
        draw.line((cx, cy, cx, box[3]), fill=second, width=3)
        draw.polygon([(cx - w * 0.4, box[1]), (cx + w * 0.4, box[1]), (box[2], cy), (box[0], cy)], fill=main)
    else:  # mug: body and handle
        draw.ellipse((box[2] - w * 0.3, cy - h * 0.4, box[2] + w * 0.3, cy + h * 0.4), outline=second, width=3)
        draw.rectangle((box[0], box[1], box[2] - w * 0.1, box[3]), fill=main)
    pattern = rng.integers(4)
    if pattern == 1:  # stripes
        step = int(rng.integers(4, 9))
        for x in range(int(box[0]), int(box[2]), step):
            draw.line((x, cy - h * 0.3, x, cy + h * 0.3), fill=second, width=1)
    elif pattern == 2:  # dots
        for _ in range(int(rng.integers(3, 9))):
            x, y = rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3])
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=second)
    elif pattern == 3:  # a logo
        draw.regular_polygon((cx, cy, 4 + 4 * rng.random()), int(rng.integers(3, 7)), fill=second)
    return image


def render_catalogue(n: int, seed: int = 0) -> tuple[NDArray[np.uint8], list[str]]:
    """`n` product photos (n, 64, 64, 3) and their categories; skewed like a real catalogue (some big categories)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(CATEGORIES) + 1) ** 0.7
    picks = rng.choice(len(CATEGORIES), size=n, p=weights / weights.sum())
    pixels = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i, category in enumerate(picks):
        pixels[i] = np.asarray(draw_product(rng, int(category)))
    return pixels, [CATEGORIES[c] for c in picks]


def tiny_encoder(dim: int) -> ClipEncoder:
    """The bundled `sketchtext-tiny` image tower, twice as wide, with a `dim`-wide projection (seeded random init)."""
    import open_clip

    from sketchtext.plugin.model.factory import load_encoder
    from sketchtext.plugin.model.spec import register_bundled_configs

    register_bundled_configs()
    name = f"sketchtext-tiny-{dim}"
    if name not in open_clip.list_models():
        config = dict(open_clip.get_model_config("sketchtext-tiny"))
        config["embed_dim"] = dim
        config["vision_cfg"] = {**config["vision_cfg"], "width": 128}  # rank up to 128, not 64
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{name}.json"
            path.write_text(json.dumps(config))
            open_clip.add_model_config(path)
    return load_encoder(f"open_clip:{name}", device="cpu", precision="fp32")


def encode(encoder: ClipEncoder, pixels: NDArray[np.uint8], batch: int = 2048) -> NDArray[np.float32]:
    import torch

    out = np.empty((len(pixels), encoder.dim), np.float32)
    for start in range(0, len(pixels), batch):
        chunk = (pixels[start : start + batch].astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
        tensor = torch.from_numpy(np.ascontiguousarray(chunk.transpose(0, 3, 1, 2)))
        out[start : start + batch] = encoder.encode_image_tensors(tensor)
    return out


def catalogue_embeddings(n: int, *, dim: int = 512, seed: int = 0) -> tuple[NDArray[np.float32], list[str]]:
    """Embeddings of `n` generated product photos and their categories."""
    pixels, categories = render_catalogue(n, seed)
    return encode(tiny_encoder(dim), pixels), categories


def recall_at_k(found: list[list[object]], truth: list[list[object]], k: int = 10) -> float:
    """Mean share of the true top-k that a search returned."""
    hits = [len(set(f[:k]) & set(t[:k])) / max(1, min(k, len(t))) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) if hits else math.nan
