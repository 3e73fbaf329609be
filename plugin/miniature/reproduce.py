"""One seeded run of the hermetic miniature of the paper, stage by stage, each stage reading the files of the last:
generate a world → pretrain the stand-in CLIP on its photo–caption train split → probe it → train the method on
sketch–photo pairs (train split; val picks the epoch) → evaluate on the held-out test shapes → `table.json` and
`table.md`. The evaluation (queries, gallery, metrics) is `sketchtext eval`'s, untouched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sketchtext.plugin.errors import ConfigError

if TYPE_CHECKING:
    from sketchtext.plugin.method.losses import MethodCfg
    from sketchtext.plugin.method.training import TrainCfg

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class ReproduceCfg:
    """Sizes of each stage; `SIZES` holds the named presets."""

    seed: int = 0
    categories: tuple[str, ...] = ("boot", "chair", "bag", "lamp")  # the shape families of the world
    colours: tuple[str, ...] = ()  # the world's colour vocabulary (MiniatureCfg.colours); empty: every colour
    shapes_per_category: int = 300
    colourways_per_shape: int = 4
    pretrain_epochs: int = 8  # 4 gave a weaker foundation (photo→same shape 43 % @1 on val vs 65 %)
    pretrain_batch: int = 32
    method_epochs: int = 2  # 150 steps, 2 and 4 epochs compared in the README
    method_steps: int = 0  # optimiser steps of the method (0: whole epochs)
    method_batch: int = 16
    method_lr: float = 3e-4  # best composed Acc@1 on val of 1e-4, 3e-4, 1e-3, 3e-3 (README, the paper in miniature)
    batch_by_folder: bool = False  # method batches from one category each (TrainCfg.batch_by_folder)
    method_lambdas: dict[str, float] = field(default_factory=dict)  # MethodCfg overrides, e.g. {"rt": 0.5}
    method_early: tuple[str, ...] = ()  # MethodCfg.early: auxiliary terms not ramped up
    threads: int = 1  # on the shared 2-core machine one torch thread ran fastest


SIZES: dict[str, ReproduceCfg] = {
    "micro": ReproduceCfg(shapes_per_category=10, colourways_per_shape=2, pretrain_epochs=1, pretrain_batch=8,
                          method_steps=2, method_batch=4),
    "small": ReproduceCfg(shapes_per_category=40, pretrain_epochs=3, method_epochs=1, method_steps=60),
    "full": ReproduceCfg(),
}  # fmt: skip

ROWS = (  # (row label, evaluation mode)
    ("zero-shot sketch", "zero_shot_sketch"),
    ("trained sketch", "sketch"),
    ("text only", "zero_shot_text"),
    ("zero-shot sum", "zero_shot_sum"),
    ("composed sketch+text", "composed"),
    ("late fusion", "fusion"),
    ("trained sketch + regions", "sketch+regions"),
    ("composed sketch+text + regions", "composed+regions"),
    ("late fusion + regions", "fusion+regions"),
    ("oracle: target's own Δ^w", "oracle"),
)


def config_for(size: str, seed: int = 0, **overrides: Any) -> ReproduceCfg:
    if size not in SIZES:
        raise ConfigError(f"Unknown size {size!r}; choose one of {', '.join(SIZES)}.")
    return replace(SIZES[size], seed=seed, **overrides)


def method_configs(cfg: dict[str, Any]) -> tuple[TrainCfg, MethodCfg]:
    """The method's settings of a run, from its `ReproduceCfg` as a dict (as table.json keeps it)."""
    from sketchtext.plugin.method.losses import MethodCfg
    from sketchtext.plugin.method.training import TrainCfg

    tcfg = TrainCfg(
        epochs=cfg["method_epochs"],
        batch_size=cfg["method_batch"],
        seed=cfg["seed"],
        max_steps=cfg["method_steps"],
        lr=cfg["method_lr"],
        batch_by_folder=cfg["batch_by_folder"],
    )
    lambdas = {f"lambda_{k}": v for k, v in cfg["method_lambdas"].items()}
    return tcfg, MethodCfg(**lambdas, early=tuple(cfg.get("method_early", ())))


def oracle_accuracy(checkpoint: Path, data: Path, split: str = "test", batch: int = 64) -> dict[str, Any]:
    """Composed queries whose tail is the target photo's own Δ^w = C_v2w(p⁺ − s) instead of words: the ceiling of
    the composition path, so a failure of plumbing can be told from a failure of representation."""
    import torch

    from sketchtext.plugin.method.evaluation import accuracy, gallery_vectors, ranks, read_image
    from sketchtext.plugin.method.pairs import load_pairs, load_queries, photos, queries_for
    from sketchtext.plugin.model.checkpoint import read_checkpoint
    from sketchtext.plugin.model.composed import ComposedEncoder
    from sketchtext.plugin.model.factory import load_encoder

    info = read_checkpoint(checkpoint)
    gallery = photos(load_pairs(data).split(split))
    text_set = queries_for(load_queries(data / "queries.csv"), gallery, {split})
    enc = ComposedEncoder.wrap(load_encoder(info.base_spec, device="cpu", precision="fp32"), info)
    vectors = gallery_vectors(enc, gallery, batch)
    index = {p.resolve(): i for i, p in enumerate(gallery)}
    out = []
    with torch.inference_mode():
        for i in range(0, len(text_set), batch):
            chunk = text_set[i : i + batch]
            sk = enc.composed.images(enc.preprocess_images([read_image(q.sketch) for q in chunk]))
            ph = torch.from_numpy(vectors[[index[q.target.resolve()] for q in chunk]])
            words, delta = enc.composer.to_word(sk), enc.composer.to_word(ph - sk)
            out.append(enc.composed.query(words, [delta[j : j + 1] for j in range(len(chunk))]).numpy())
    rank = ranks(np.concatenate(out), vectors, [index[q.target.resolve()] for q in text_set])
    return {"n": len(rank), "accuracy": accuracy(rank), "mean_rank": float(rank.mean())}


def table_rows(report: dict[str, Any], oracle: dict[str, Any]) -> list[dict[str, Any]]:
    by_mode = {r["mode"]: r for r in report["results"]} | {"oracle": oracle}
    return [
        {"row": label, "mode": mode, "n": by_mode[mode]["n"], "acc1": by_mode[mode]["accuracy"]["acc@1"],
         "acc10": by_mode[mode]["accuracy"]["acc@10"]}
        for label, mode in ROWS if mode in by_mode
    ]  # fmt: skip


def format_markdown(table: dict[str, Any]) -> str:
    lines = [
        f"Held-out test shapes, seed {table['config']['seed']}, size {table['size']}, families "
        f"{', '.join(table['config']['categories'])}: gallery of "
        f"{table['gallery']} photos, {table['sketches']} sketches, {table['text_queries']} sketch+text queries.",
        "",
        "| mode | queries | Acc@1 | Acc@10 |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['row']} | {r['n']} | {100 * r['acc1']:.1f} % | {100 * r['acc10']:.1f} % |" for r in table["rows"]]
    secs = table["seconds"]
    lines += ["", "Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items())]
    return "\n".join(lines) + "\n"


def reproduce(out: str | Path, size: str = "full", cfg: ReproduceCfg | None = None, progress: Progress | None = None
              ) -> dict[str, Any]:  # fmt: skip
    """Run every stage into `out` (world/, mini-clip.safetensors, method/, table.json, table.md); returns the table.

    Raises:
        ConfigError: an unknown size or invalid setting.
    """
    import torch

    from sketchtext.plugin.method.evaluation import evaluate
    from sketchtext.plugin.method.training import train
    from sketchtext.plugin.miniature.generate import generate_world
    from sketchtext.plugin.miniature.pretrain import PretrainCfg, pretrain
    from sketchtext.plugin.store.regions import RegionSearch

    cfg = cfg or config_for(size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    say = progress or (lambda stage, done, total: None)
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    def timed(stage: str) -> None:
        seconds[stage] = time.perf_counter() - start - sum(seconds.values())

    world = out / "world"
    say("generate", 0, 1)
    generate_world(world, seed=cfg.seed, categories=cfg.categories, colours=cfg.colours,
                   shapes_per_category=cfg.shapes_per_category,
                   colourways_per_shape=cfg.colourways_per_shape)  # fmt: skip
    timed("generate")
    clip = out / "mini-clip.safetensors"
    pcfg = PretrainCfg(seed=cfg.seed, epochs=cfg.pretrain_epochs, batch_size=cfg.pretrain_batch, threads=cfg.threads)
    sidecar = pretrain(world, clip, pcfg, lambda step, total, info: say("pretrain", step, total))
    timed("pretrain")
    base = f"open_clip:sketchtext-mini@{clip.resolve()}"
    method_dir = out / "method"
    tcfg, method = method_configs(asdict(cfg))
    result = train(base, world, method_dir, cfg=tcfg, method=method, device="cpu",
                   progress=lambda e: say("train", e.step, e.steps))  # fmt: skip
    timed("train")
    say("evaluate", 0, 1)
    report = evaluate(method_dir, world, split="test", device="cpu", regions=RegionSearch()).as_dict()
    oracle = oracle_accuracy(method_dir, world)
    timed("evaluate")
    seconds["total"] = time.perf_counter() - start
    table = {
        "size": size,
        "config": asdict(cfg),
        "base": base,
        "pretrain": sidecar.get("config"),
        "probes": sidecar.get("probes"),
        "gates": sidecar.get("gates"),
        "method": {"best_epoch": result.best_epoch, "best": result.best, "combine": result.checkpoint.combine
                   if result.checkpoint else None},
        "gallery": report["gallery"],
        "sketches": report["sketches"],
        "text_queries": report["text_queries"],
        "rows": table_rows(report, oracle),
        "all_modes": report["results"],
        "seconds": seconds,
    }  # fmt: skip
    (out / "table.json").write_text(json.dumps(table, indent=2), encoding="utf-8")
    (out / "table.md").write_text(format_markdown(table), encoding="utf-8")
    log.info("reproduced into %s in %.0f s", out, seconds["total"])
    return table


def export_bundle(run: str | Path, dest: str | Path) -> list[Path]:
    """Copy a run's mini CLIP and method checkpoint (weights and config only, no resume state) to `dest`, the
    layout `sketchtext demo` loads: `mini-clip.safetensors`, `method/model.safetensors`, `method/config.json`."""
    import shutil

    run, dest = Path(run), Path(dest)
    files = [(name, name) for name in ("mini-clip.safetensors", "method/model.safetensors", "method/config.json")]
    files += [("table.md", "table.md"), ("table.json", "table.json")]
    written = []
    for src, dst in files:
        if not (run / src).is_file():
            raise ConfigError(f"{run / src} is missing; run `sketchtext reproduce --out {run}` first.")
        (dest / dst).parent.mkdir(parents=True, exist_ok=True)
        written.append(Path(shutil.copyfile(run / src, dest / dst)))
    return written
