"""Pretraining of the stand-in foundation CLIP on a generated world, readable top to bottom (nanoGPT style).

What a web-scale CLIP knows, and no more, taught on the train split of a world only (val picks the best epoch,
test is never read here): open_clip's ClipLoss on photo–caption pairs (captions name product lines and describe
form, so the text tower gets words for shapes), on line drawings with *category-level* captions only ("a sketch
of a boot": the drawings of the web), and photo–photo pairs of the same shape in two colourways (so the image
tower encodes shape, not just colour). Every batch holds distinct shapes, so no in-batch negative is the same
product.

Two options, off by default, leak the downstream task (FG-SBIR's own supervision) into the foundation model and
make its "zero-shot" baselines an FG-SBIR model: `sketch_photo_weight > 0` (a sketch paired with a photo of its
shape) and `instance_sketch_captions` (the captions.csv rows of sketches, which name the product line and its
form, so a sketch and its photo meet through the text tower).

The bundled `sketchtext-mini` has a small convolutional image tower (timm's `test_resnet` through open_clip's
timm adapter): on 2 shared CPU cores, tiny ViTs (patch 8 or 16) were still at chance on the image-image term after
400 steps, while the CNN separated shapes within the first epoch.

Stages: data (files -> uint8 pixels and tokens), model (an open_clip config, seeded init), losses, loop,
checkpoint (safetensors, loadable as `open_clip:ARCH@FILE`, plus a JSON sidecar with the config and probes).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from sketchtext.plugin.errors import ConfigError
from sketchtext.plugin.miniature.files import WorldFiles, read_world
from sketchtext.plugin.miniature.world import category_sketch_captions

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class PretrainCfg:
    """Settings of one pretraining run; the same settings, world and seed give the same checkpoint."""

    arch: str = "sketchtext-mini"
    seed: int = 0
    epochs: int = 4  # an epoch shows every train photo once as an anchor
    batch_size: int = 32  # distinct shapes per step
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 10
    shift: int = 4  # random translation in pixels (edge-padded)
    caption_weight: float = 2.0  # photo <-> caption; 2 keeps colour words (1 lost them: colour Acc@10 78% vs 88%)
    sketch_caption_weight: float = 1.0  # sketch <-> category-level caption ("a line drawing of a boot")
    image_image_weight: float = 1.0  # photo <-> same shape in another colourway
    sketch_photo_weight: float = 0.0  # sketch <-> photo of its shape; leaks the downstream task, keep 0
    instance_sketch_captions: bool = False  # sketches captioned by captions.csv rows; leaks the downstream task
    threads: int = 1  # torch threads; on the shared 2-core machine 1 thread ran ~8x faster than 2 (OpenMP spin)
    save_dtype: str = "fp16"  # the saved weights; the in-memory model is rounded the same way, so both agree
    eval_split: str = "val"


@dataclass
class TrainData:
    """The train split as tensors: pixels (uint8) of photos then sketches, caption tokens, shape groups."""

    pixels: torch.Tensor  # (N, 3, S, S) uint8
    tokens: torch.Tensor  # (C, L) int64
    captions_of: list[list[int]]  # image index -> caption rows
    groups: list[tuple[list[int], list[int]]]  # shape -> (photo indices, sketch indices)
    texts: list[str]  # caption row -> its text


IMAGE_TERMS = ("image_image", "sketch_photo")  # terms whose partners are images; the others pair captions


def load_pixels(root: Path, paths: list[str], size: int) -> np.ndarray:
    """uint8 RGB pixels (N, 3, size, size), resized with bicubic like open_clip's preprocess when needed."""
    out = np.empty((len(paths), 3, size, size), np.uint8)
    for i, p in enumerate(paths):
        with Image.open(root / p) as file:
            rgb = file.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
        out[i] = np.asarray(rgb).transpose(2, 0, 1)
    return out


def build_data(world: WorldFiles, tokenizer: Any, size: int, instance_sketch_captions: bool = False) -> TrainData:
    """Read the train split's photos, sketches and captions (never another split's); sketches get category-level
    captions unless `instance_sketch_captions`."""
    import torch

    groups_by_shape = world.shape_groups("train")
    if not groups_by_shape:
        raise ConfigError(f"{world.root} has no train photos; pretraining needs a world with a train split.")
    paths: list[str] = []
    groups = []
    for photos, sketches in groups_by_shape.values():
        first = len(paths)
        paths += photos
        mid = len(paths)
        paths += sketches
        groups.append((list(range(first, mid)), list(range(mid, len(paths)))))
    index = {p: i for i, p in enumerate(paths)}
    sketches = {s for _, group in groups_by_shape.values() for s in group}
    rows = [
        (index[path], text)
        for path, text, split, _ in world.captions
        if split == "train" and path in index and (instance_sketch_captions or path not in sketches)
    ]
    if not instance_sketch_captions:
        for shape, (_, group) in groups_by_shape.items():
            texts = category_sketch_captions(world.shapes[shape]["category"])
            rows += [(index[s], text) for s in group for text in texts]
    captions_of: list[list[int]] = [[] for _ in paths]
    for row, (i, _) in enumerate(rows):
        captions_of[i].append(row)
    pixels = torch.from_numpy(load_pixels(world.root, paths, size))
    texts = [t for _, t in rows]
    return TrainData(pixels, tokenizer(texts), captions_of, groups, texts)


def sample_batch(data: TrainData, cfg: PretrainCfg, rng: np.random.Generator) -> dict[str, tuple[list[int], list[int]]]:
    """The pairs of one step, by loss term: (image indices, partners), partners being caption rows or, for
    `IMAGE_TERMS`, image indices. Distinct shapes; for each an anchor photo, the same shape in another colourway, a
    sketch, and captions. Only the terms with a weight appear, so the batch shows exactly what the model is taught."""
    picks = rng.choice(len(data.groups), size=min(cfg.batch_size, len(data.groups)), replace=False)
    a_s, b_s, s_s, cap_a, cap_s = [], [], [], [], []
    for g in picks:
        photos, sketches = data.groups[g]
        a, b = rng.choice(photos, size=2, replace=False) if len(photos) > 1 else (photos[0], photos[0])
        s = int(rng.choice(sketches)) if sketches else int(a)
        a_s.append(int(a))
        b_s.append(int(b))
        s_s.append(s)
        cap_a.append(int(rng.choice(data.captions_of[a])) if data.captions_of[a] else -1)
        cap_s.append(int(rng.choice(data.captions_of[s])) if data.captions_of[s] and sketches else -1)
    terms = {
        "caption": (cfg.caption_weight, a_s, cap_a),
        "sketch_caption": (cfg.sketch_caption_weight, s_s, cap_s),
        "image_image": (cfg.image_image_weight, a_s, b_s),
        "sketch_photo": (cfg.sketch_photo_weight, s_s, b_s),
    }
    return {name: (left, right) for name, (weight, left, right) in terms.items() if weight and min(right) >= 0}


def to_input(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, shift: int, gen: Any) -> torch.Tensor:
    """Normalise like open_clip's preprocess, with a random edge-padded shift per image when training."""
    import torch

    x = pixels.float().div_(255)
    if shift:
        n, size = x.shape[0], x.shape[-1]
        padded = torch.nn.functional.pad(x, (shift,) * 4, mode="replicate")
        dx, dy = torch.randint(0, 2 * shift + 1, (2, n), generator=gen).tolist()
        x = torch.stack([padded[i, :, dy[i] : dy[i] + size, dx[i] : dx[i] + size] for i in range(n)])
    return (x - mean) / std


def save_checkpoint(model: Any, out: Path, cfg: PretrainCfg) -> None:
    """Save the weights as safetensors in `cfg.save_dtype`, rounding the in-memory model the same way so that
    `load_encoder("open_clip:ARCH@out")` gives exactly the embeddings of `model`."""
    import torch
    from safetensors.torch import save_file

    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if cfg.save_dtype not in dtypes:
        raise ConfigError(f"save_dtype must be one of {sorted(dtypes)}, got {cfg.save_dtype!r}.")
    state = {k: v.detach().to(dtypes[cfg.save_dtype]).contiguous() for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata={"arch": cfg.arch, "config": json.dumps(dataclasses.asdict(cfg))})


def pretrain(
    world_dir: str | Path, out: str | Path, cfg: PretrainCfg | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Pretrain a CLIP on a world's train split and save it as safetensors with a JSON sidecar.

    Args:
        world_dir: a folder in the layout of `sketchtext.plugin.miniature.world`.
        out: the checkpoint file to write (`.safetensors`); the sidecar is the same path with `.json`.
        cfg: settings; defaults to `PretrainCfg()`.
        progress: called as `progress(step, total_steps, info)` after every step.

    Returns:
        The sidecar's content: config, wall time, loss history and probe results.

    Raises:
        ConfigError: the world lacks a train split, or a setting is invalid.
    """
    import open_clip
    import torch

    from sketchtext.plugin.miniature.probes import gate, run_probes, score
    from sketchtext.plugin.model.clip import ClipEncoder
    from sketchtext.plugin.model.spec import quiet_random_init, register_bundled_configs

    cfg = cfg or PretrainCfg()
    if cfg.epochs < 1 or cfg.batch_size < 2:
        raise ConfigError(f"epochs must be >= 1 and batch_size >= 2, got {cfg.epochs} and {cfg.batch_size}.")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"Checkpoint {out} must end in .safetensors so that load_encoder reads it safely.")
    start = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    world = read_world(world_dir)

    # model: an open_clip config, seeded random init
    register_bundled_configs()
    if cfg.arch not in open_clip.list_models():
        raise ConfigError(f"Unknown architecture {cfg.arch!r}; bundled ones start with 'sketchtext-'.")
    torch.manual_seed(cfg.seed)
    with quiet_random_init():  # a random start is what pretraining means
        model, _, preprocess = open_clip.create_model_and_transforms(cfg.arch)
    tokenizer = open_clip.get_tokenizer(cfg.arch)
    size = int(model.visual.image_size[0])
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)

    # data
    data = build_data(world, tokenizer, size, cfg.instance_sketch_captions)
    n_photos = sum(len(p) for p, _ in data.groups)
    steps_per_epoch = max(1, math.ceil(n_photos / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    log.info("pretraining %s on %d shapes, %d images, %d steps", cfg.arch, len(data.groups), len(data.pixels), total)

    # losses and optimiser: open_clip's ClipLoss for every pair of embeddings
    clip_loss = open_clip.loss.ClipLoss()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    encoder = ClipEncoder(model, preprocess, tokenizer, fingerprint="in-memory", device="cpu", dtype=torch.float32)

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))

    # loop
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, 0, {})
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        sums: dict[str, float] = {}
        for _ in range(steps_per_epoch):
            batch = sample_batch(data, cfg, rng)
            ids = sorted({i for t, (left, right) in batch.items() for i in left + (right if t in IMAGE_TERMS else [])})
            at = {i: k for k, i in enumerate(ids)}
            feats = model.encode_image(to_input(data.pixels[ids], mean, std, cfg.shift, gen), normalize=True)
            scale = model.logit_scale.exp()
            parts: dict[str, torch.Tensor] = {}
            for term, (left, right) in batch.items():
                other = (
                    feats[[at[i] for i in right]]
                    if term in IMAGE_TERMS
                    else model.encode_text(data.tokens[right], normalize=True)
                )
                parts[term] = getattr(cfg, f"{term}_weight") * clip_loss(feats[[at[i] for i in left]], other, scale)
            if not parts:
                raise ConfigError("Every loss weight is zero (or the world has no captions); enable one term.")
            loss = torch.stack(list(parts.values())).sum()
            for group in optim.param_groups:
                group["lr"] = lr_at(step)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
            for k, v in {"loss": loss, **parts}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            if progress is not None:
                progress(step, total, {"epoch": epoch, "loss": float(loss.detach())})
        model.eval()
        probes = run_probes(world, encoder, cfg.eval_split, names=False)
        record = {"epoch": epoch + 1, **{k: round(v / steps_per_epoch, 4) for k, v in sums.items()}}
        record["score"] = round(score(probes), 4)
        history.append(record)
        log.info("epoch %d: %s", epoch + 1, record)
        if record["score"] > best[0]:
            best = (record["score"], epoch + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})

    # checkpoint: the best epoch on the eval split
    model.load_state_dict(best[2])
    save_checkpoint(model, out, cfg)
    final = run_probes(world, encoder, cfg.eval_split)
    sidecar = {
        "arch": cfg.arch,
        "spec": f"open_clip:{cfg.arch}@{out.resolve()}",
        "config": dataclasses.asdict(cfg),
        "world": str(Path(world_dir).resolve()),
        "best_epoch": best[1],
        "steps": total,
        "seconds": round(time.perf_counter() - start, 1),
        "bytes": out.stat().st_size,
        "history": history,
        "probes": {cfg.eval_split: {k: dataclasses.asdict(v) for k, v in final.items()}},
        "gates": gate(final),
    }
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    log.info("saved %s (%d bytes) in %.0fs", out, sidecar["bytes"], sidecar["seconds"])
    return sidecar
