"""`sketchtext train`: learn V's LayerNorms, C_v2w, P^L and G from sketch–photo pairs (DESIGN.md section 4).

Top to bottom: settings, data, the method's forward pass and losses, validation, the loop, resuming. Seeded;
validation Acc@1/Acc@10 after every epoch; the best epoch is the checkpoint; the last epoch's state lets a rerun
with the same --out resume; mixed precision and bigger batches on CUDA; gradient accumulation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sketchtext.plugin.errors import ConfigError, DatasetError
from sketchtext.plugin.method.losses import MethodCfg, total_loss
from sketchtext.plugin.method.objective import PairImages, method_losses, read_phrases, validate
from sketchtext.plugin.method.pairs import (
    PairSet,
    SketchPhotoPair,
    hold_out,
    load_pairs,
    load_queries,
    photos,
    queries_for,
)
from sketchtext.plugin.method.resume import load_state, run_identity, save_state
from sketchtext.plugin.model.checkpoint import (
    CheckpointInfo,
    read_checkpoint,
    save_checkpoint,
    trained_state,
    update_config,
)
from sketchtext.plugin.model.composer import ComposedCLIP, ComposerCfg, build_composer, freeze_for_training
from sketchtext.plugin.model.precision import resolve_device
from sketchtext.plugin.model.spec import ModelSpec, create_clip, weights_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainCfg:
    """How to train (the method's own settings are `MethodCfg` and `ComposerCfg`)."""

    epochs: int = 10
    batch_size: int = 0  # pairs per micro-batch; 0 means 64 on CUDA, 16 on the CPU
    accumulate: int = 1  # micro-batches per optimiser step
    lr: float = 1e-3
    aux_warmup: float = 0.25  # share of the planned steps over which the auxiliary λs ramp up from 0
    weight_decay: float = 0.0
    seed: int = 0
    val_fraction: float = 0.15  # photos held out of train for validation when the data has no val split
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit); for throughput checks
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling)
    workers: int = 0  # image decoding processes when the set is too big to preload
    preload_images: int = 4096  # decode and preprocess up to this many images once, up front
    batch_by_folder: bool = False  # each batch from one photo folder (a category): fine-grained in-batch negatives
    select_by: str = "composed"  # the best epoch: val "composed" Acc@1 (when the data has text queries) or "sketch"


@dataclass(frozen=True)
class TrainEvent:
    """What a progress callback hears: each optimiser step and each finished epoch."""

    kind: Literal["step", "epoch"]
    epoch: int
    epochs: int
    step: int = 0
    steps: int = 0
    loss: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """The outcome of a run: where the best checkpoint is and how it measured."""

    checkpoint: CheckpointInfo | None
    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, Any]]
    pairs_per_s: float
    start_epoch: int


def better(metrics: dict[str, float], best: dict[str, float] | None, select_by: str = "sketch") -> bool:
    """Whether an epoch beats the best so far: by val composed Acc@1/@10 when asked and measured, else sketch."""

    def key(m: dict[str, float]) -> tuple[float, ...]:
        sketch = (m["acc@1"], m["acc@10"], -m["mean_rank"])
        return (m["composed@1"], m["composed@10"], *sketch) if select_by == "composed" and "composed@1" in m else sketch

    return best is None or key(metrics) > key(best)


def autocast_dtype(device: str, cfg: TrainCfg) -> torch.dtype | None:
    if device != "cuda" or not cfg.amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def epoch_batches(
    pairs: list[SketchPhotoPair], batch_size: int, by_folder: bool, generator: torch.Generator
) -> list[list[int]]:
    """One epoch's batches of pair indices, shuffled; with `by_folder` each batch holds pairs whose photos share a
    folder (the catalog's category), as FG-SBIR trains within one category, so negatives differ in fine shape."""
    order = torch.randperm(len(pairs), generator=generator).tolist()
    groups: dict[Path, list[int]] = {}
    for i in order:
        groups.setdefault(pairs[i].photo.parent if by_folder else Path(), []).append(i)
    batches = [g[i : i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]
    batches = [b for b in batches if len(b) >= 2]
    if by_folder:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def split_pairs(pair_set: PairSet, cfg: TrainCfg) -> tuple[list[SketchPhotoPair], list[SketchPhotoPair], str]:
    """Training and validation pairs: the data's val split, or photos held out of train when it has none."""
    train_pairs = pair_set.split("train")
    if pair_set.has("val"):
        return train_pairs, pair_set.split("val"), "val split"
    train_pairs, val_pairs = hold_out(train_pairs, cfg.val_fraction, cfg.seed)
    return train_pairs, val_pairs, f"{len(photos(val_pairs))} training photos held out"


def train(
    base: str,
    data: Path,
    out: Path,
    *,
    cfg: TrainCfg | None = None,
    method: MethodCfg | None = None,
    composer_cfg: ComposerCfg | None = None,
    device: str = "auto",
    queries: Path | None = None,
    progress: Callable[[TrainEvent], None] | None = None,
) -> TrainResult:
    """Train on the pairs in `data`, writing the best checkpoint (and resumable state) to `out`.

    `queries` (default: `queries.csv` in `data`, if any) gives validation text queries, on which the composed,
    sum and fusion modes are compared after training; the best is recorded in the checkpoint.
    """
    cfg, method, composer_cfg = cfg or TrainCfg(), method or MethodCfg(), composer_cfg or ComposerCfg()
    if cfg.epochs < 1 or cfg.accumulate < 1 or cfg.batch_size < 0:
        raise ConfigError("epochs and accumulate must be at least 1, batch size at least 0 (0 = automatic).")
    if cfg.select_by not in ("composed", "sketch"):
        raise ConfigError(f"select_by must be 'composed' or 'sketch', got {cfg.select_by!r}.")
    # data
    pair_set = load_pairs(data)
    train_pairs, val_pairs, val_source = split_pairs(pair_set, cfg)
    if len(train_pairs) < 2:
        raise DatasetError(f"{data} has {len(train_pairs)} training pair(s); training needs at least 2 (negatives).")
    device = resolve_device(device)
    batch_size = cfg.batch_size or (64 if device == "cuda" else 16)
    spec = ModelSpec.parse(base)
    identity = run_identity(weights_fingerprint(spec), pair_set.fingerprint(), cfg, method, composer_cfg)

    # model: frozen CLIP, trained LayerNorms of V, fresh composer; or the state of an earlier run in `out`
    torch.manual_seed(cfg.seed)
    model, preprocess, tokenizer = create_clip(spec, device)
    composer = build_composer(model, tokenizer, composer_cfg)
    optimizer = torch.optim.AdamW(freeze_for_training(model, composer), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = load_state(out, identity, model, composer, optimizer)
    start, history, best = (state.epoch, state.history, state.best) if state else (0, [], None)
    cc = ComposedCLIP(model, tokenizer, composer)
    amp_dtype = autocast_dtype(device, cfg)
    scaler = torch.amp.GradScaler(device, enabled=amp_dtype == torch.float16)

    preload = len(train_pairs) + len(val_pairs) <= cfg.preload_images // 2
    train_set, val_set = PairImages(train_pairs, preprocess, preload), PairImages(val_pairs, preprocess, True)
    prompt_words, neutral_words = cc.words(read_phrases("prompts.txt")), cc.words(read_phrases("neutral_texts.txt"))
    config = {
        "base": {"spec": str(spec), "fingerprint": identity["base"]},
        "dims": {"image": composer.c_v2w[0].in_features, "token": int(composer.context.shape[1]),
                 "context_tokens": int(composer.context.shape[0]),
                 "context_length": int(model.positional_embedding.shape[0])},
        "composer": asdict(composer_cfg),
        "method": asdict(method),
        "train": {**asdict(cfg), "batch_size": batch_size, "device": device},
        "prompt": composer_cfg.context_prompt,
        "data": {"fingerprint": identity["data"], "layout": pair_set.layout, "root": str(data),
                 "pairs": {"train": len(train_pairs), "val": len(val_pairs)}, "validation": val_source},
        "combine": {"mode": "composed", "source": "default (not measured yet)", "measured": {}},
    }  # fmt: skip
    # the count does not depend on the shuffle, so any generator gives every epoch's
    batches_per_epoch = len(epoch_batches(train_pairs, batch_size, cfg.batch_by_folder, torch.Generator()))
    steps_per_epoch = -(-batches_per_epoch // cfg.accumulate)
    warmup_steps = cfg.aux_warmup * cfg.epochs * steps_per_epoch
    text_set = []
    queries = queries or (data / "queries.csv" if (data / "queries.csv").is_file() else None)
    if queries is not None:
        splits = {"val"} if pair_set.has("val") else {"train", "val"}
        text_set = queries_for(load_queries(queries), photos(val_pairs), splits)
    val_text = text_set if cfg.select_by == "composed" else []
    if not history:
        untrained = validate(cc, val_set, device, batch_size, val_text)
        history.append({"epoch": 0, **{f"val_{k}": v for k, v in untrained.items()}})
        log.info("untrained: %s", json.dumps(history[-1]))

    # the loop
    steps, seen, busy = start * steps_per_epoch, 0, 0.0
    model.eval()  # CLIP has no dropout; LayerNorm behaves the same either way
    for epoch in range(start, cfg.epochs):
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # so a resumed run repeats it
        batches = epoch_batches(train_pairs, batch_size, cfg.batch_by_folder, generator)
        loader = torch.utils.data.DataLoader(
            train_set, batch_sampler=batches, num_workers=0 if preload else cfg.workers
        )
        tick, losses = time.perf_counter(), []
        for k, (sketches, photo_px) in enumerate(loader):
            pick = torch.randint(1 << 30, (2, len(sketches)), generator=generator).tolist()
            prompts = [prompt_words[i % len(prompt_words)] for i in pick[0]]
            neutrals = [neutral_words[i % len(neutral_words)] for i in pick[1]]
            with torch.autocast(device, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                parts = method_losses(cc, sketches.to(device), photo_px.to(device), prompts, neutrals, method)
                loss = total_loss(parts, method, min(1.0, steps / warmup_steps) if warmup_steps else 1.0)
            scaler.scale(loss / cfg.accumulate).backward()
            losses.append(
                {name: float(value.detach()) for name, value in parts.items()} | {"total": float(loss.detach())}
            )
            seen += len(sketches)
            if (k + 1) % cfg.accumulate == 0 or k + 1 == len(batches):
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
            if progress:
                progress(TrainEvent("step", epoch + 1, cfg.epochs, k + 1, len(batches), float(loss.detach())))
            if cfg.max_steps and steps - start * steps_per_epoch >= cfg.max_steps:
                break
        busy += time.perf_counter() - tick

        # validation, the best checkpoint, the state to resume from
        metrics = validate(cc, val_set, device, batch_size, val_text)
        mean_losses = {f"loss_{name}": float(np.mean([row[name] for row in losses])) for name in losses[0]}
        history.append({"epoch": epoch + 1, **mean_losses, **{f"val_{k}": v for k, v in metrics.items()}})
        log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs, json.dumps(history[-1]))
        if better(metrics, best, cfg.select_by):
            best = {"epoch": epoch + 1, **metrics}
            save_checkpoint(out, model, composer, {**config, "validation": best, "history": history})
        save_state(out, identity, epoch + 1, trained_state(model, composer), optimizer, history, best)
        if progress:
            progress(TrainEvent("epoch", epoch + 1, cfg.epochs, metrics=metrics | {"loss": mean_losses["loss_total"]}))
        if cfg.max_steps and steps - start * steps_per_epoch >= cfg.max_steps:
            break

    info = None
    if best is not None:
        info = record_best_combine(read_checkpoint(out), model, preprocess, tokenizer, text_set, photos(val_pairs))
    rate = seen / busy if busy else 0.0
    return TrainResult(info, int(best["epoch"]) if best else 0, best or {}, history, rate, start)


def record_best_combine(
    info: CheckpointInfo,
    model: Any,
    preprocess: Any,
    tokenizer: Any,
    text_set: list[Any],
    gallery: list[Path],
) -> CheckpointInfo:
    """Measure composed, sum and fusion on the validation text queries and record the best in the checkpoint."""
    if not text_set:
        combine = {"mode": "composed", "source": "default: no validation text queries", "measured": {}}
        return update_config(info, combine=combine)
    from sketchtext.plugin.method.evaluation import measure
    from sketchtext.plugin.model.clip import ClipEncoder
    from sketchtext.plugin.model.composed import ComposedEncoder

    device = str(next(model.parameters()).device.type)
    base = ClipEncoder(
        model, preprocess, tokenizer, fingerprint=info.base_fingerprint, device=device, dtype=torch.float32
    )
    encoder = ComposedEncoder.wrap(base, info)
    results = measure(encoder, ["composed", "sum", "fusion"], [], text_set, gallery)
    best = max(results, key=lambda r: (r.accuracy["acc@1"], r.accuracy["acc@10"]))  # first wins ties: composed
    measured = {r.mode: r.accuracy for r in results}
    source = f"best Acc@1 on {len(text_set)} validation text queries"
    log.info("combine modes on validation: %s; recording %s", measured, best.mode)
    return update_config(info, combine={"mode": best.mode, "source": source, "measured": measured})
