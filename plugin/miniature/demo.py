"""`sketchtext demo`: a fresh generated catalogue (a world seed the bundled checkpoint never saw, so every shape is
unseen), ingested into the embedded default with the bundled mini CLIP + method checkpoint, searched in every mode,
scored (Acc@1/Acc@10) and drawn as a contact sheet."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from sketchtext.plugin.errors import ConfigError

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)
MODES = ("sketch", "text", "sum", "composed", "fusion")  # sketch alone, words alone, and three ways to combine


@dataclass(frozen=True)
class DemoCfg:
    """How big the demo catalogue is and how many queries are scored and drawn."""

    seed: int = 2026  # not a reproduce seed: a world the bundled checkpoint never saw
    shapes_per_category: int = 20
    colourways_per_shape: int = 4
    max_queries: int = 240  # scored per mode, a seeded sample of the world's sketch+text queries
    sheet_rows: int = 8  # example queries on the contact sheet
    top_k: int = 5  # results per query on the sheet


SIZES = {
    "tiny": DemoCfg(shapes_per_category=5, colourways_per_shape=2, max_queries=16, sheet_rows=3),
    "default": DemoCfg(),
}


def bundle_dir() -> Path:
    """The bundled demo weights: `mini-clip.safetensors` and the `method/` checkpoint."""
    root = Path(str(resources.files("sketchtext.plugin.data").joinpath("demo")))
    if not (root / "mini-clip.safetensors").is_file() or not (root / "method" / "config.json").is_file():
        raise ConfigError(
            f"The demo checkpoint is missing under {root}; reinstall sketchtext, or make one with "
            "`sketchtext reproduce --out RUN` and copy it with sketchtext.plugin.miniature.reproduce.export_bundle."
        )
    return root


def demo_settings(out: Path, precision: str = "fp32") -> Any:
    from sketchtext.plugin.settings import load_settings

    bundle = bundle_dir()
    return load_settings(
        None,
        data_dir=out / "index",
        model={"spec": f"open_clip:sketchtext-mini@{bundle / 'mini-clip.safetensors'}",
               "checkpoint": bundle / "method", "device": "cpu", "precision": precision},
        store={"collection": "demo"},
    )  # fmt: skip


def score(hits: list[list[str]], targets: list[str]) -> dict[str, float]:
    rank = [keys.index(t) + 1 if t in keys else 10**6 for keys, t in zip(hits, targets, strict=True)]
    r = np.array(rank)
    return {"acc1": float((r <= 1).mean()), "acc10": float((r <= 10).mean()), "n": len(rank)}


def run_demo(
    out: str | Path, size: str = "default", progress: Progress | None = None, precision: str = "fp32"
) -> dict[str, Any]:
    """Generate, ingest, search in every mode, score, draw. Returns the table, its text (with the precision the image
    tower ran at, and what its agreement check measured) and the sheet's path.

    Raises:
        ConfigError: an unknown size, or the bundled checkpoint is missing.
    """
    import torch

    from sketchtext.plugin.facade import SketchTextPlugin
    from sketchtext.plugin.method.pairs import load_queries
    from sketchtext.plugin.miniature.contact_sheet import draw_contact_sheet
    from sketchtext.plugin.miniature.generate import generate_world
    from sketchtext.plugin.search import SketchTextQuery

    if size not in SIZES:
        raise ConfigError(f"Unknown demo size {size!r}; choose one of {', '.join(SIZES)}.")
    cfg, out, say = SIZES[size], Path(out), progress or (lambda stage, done, total: None)
    start = time.perf_counter()
    torch.set_num_threads(1)  # the fastest on a shared 2-core machine
    say("generate", 0, 1)
    world = out / "world"
    generate_world(world, seed=cfg.seed, shapes_per_category=cfg.shapes_per_category,
                   colourways_per_shape=cfg.colourways_per_shape)  # fmt: skip
    say("generate", 1, 1)
    queries = load_queries(world / "queries.csv")
    rng = np.random.default_rng(cfg.seed)
    picked = [queries[i] for i in sorted(rng.choice(len(queries), min(cfg.max_queries, len(queries)), replace=False))]
    targets = [q.target.relative_to(world / "catalog").as_posix() for q in picked]
    table: dict[str, dict[str, float]] = {}
    results: dict[str, list[list[str]]] = {}
    with SketchTextPlugin(demo_settings(out, precision)) as plugin:
        done = 0

        def ingested(batch: int, total: int) -> None:
            nonlocal done
            done += batch
            say("ingest", done, total)

        summary = plugin.ingest(world / "catalog", progress=ingested)
        for i, mode in enumerate(MODES):
            say("search", i, len(MODES))
            batch = [
                SketchTextQuery(sketch=None if mode == "text" else q.sketch, text=None if mode == "sketch" else q.text,
                                combine=mode if mode in ("sum", "composed", "fusion") else None, limit=10)
                for q in picked
            ]  # fmt: skip
            results[mode] = [[h.key or "" for h in hits] for hits in plugin.search_batch(batch)]
            table[mode] = score(results[mode], targets)
        say("search", len(MODES), len(MODES))
        ran = precision_line(precision, plugin.encoder.precision, plugin.encoder.agreement)
    examples = list(range(0, len(picked), max(1, len(picked) // cfg.sheet_rows)))[: cfg.sheet_rows]
    sheet = out / "contact-sheet.png"
    draw_contact_sheet(
        sheet,
        [(picked[i].sketch, picked[i].text, [world / "catalog" / k for k in results["composed"][i][: cfg.top_k]],
          world / "catalog" / targets[i]) for i in examples],
    )  # fmt: skip
    seconds = time.perf_counter() - start
    text = format_table(table, summary.total, len(picked)) + ran
    (out / "table.md").write_text(text, encoding="utf-8")
    log.info("demo in %s: %.0f s", out, seconds)
    return {"table": table, "table_text": text, "contact_sheet": sheet, "seconds": seconds, "precision": ran.strip()}


def precision_line(asked: str, ran: str, agreement: dict[str, dict[str, float]]) -> str:
    """What the image tower ran at, and why: int8 runs only when its check against fp32 passed."""
    measured = agreement.get("int8")
    check = (
        f" (int8 against fp32 on the check photos: lowest cosine {measured['cosine']:.5f}, top-10 overlap "
        f"{measured['top10_overlap']:.3f}{'' if ran == 'int8' else '; refused, below the bar'})"
        if measured
        else ""
    )
    return f"\nImage tower precision: {ran} (asked: {asked}){check}\n"


def format_table(table: dict[str, dict[str, float]], photos: int | None, queries: int) -> str:
    lines = [
        f"Demo catalogue (unseen shapes){f', {photos} photos' if photos else ''}; {queries} sketch+text queries",
        "",
        "| mode | Acc@1 | Acc@10 |",
        "|---|---:|---:|",
    ]
    lines += [f"| {m} | {100 * r['acc1']:.1f} % | {100 * r['acc10']:.1f} % |" for m, r in table.items()]
    return "\n".join(lines) + "\n"
