"""Writing a generated world to disk (`generate_world`), in the layout below.

Layout written by `generate_world(out_dir)`; paths inside CSVs are relative to `out_dir` (forward slashes),
except `catalog/catalog.csv`, whose `path` is relative to `catalog/` as the catalog reader expects:

    catalog/<category>/<shape>-<colour>-<pattern>.jpg  one photo per shape x colourway (JPEG), scene background
    catalog/catalog.csv   path, sku, title, category, scene, colour, colour2, pattern, shape, split
    sketches/<category>/<shape>-<k>.png                k = 0 .. sketches_per_shape-1, black lines on white (mode L)
    pairs.csv             sketch, photo, split: every sketch of a shape with every photo of that shape
    captions.csv          photo, caption, split, kind: pretraining captions; kind "photo" captions a photo,
                          kind "sketch" captions a sketch as a line drawing (rows only when sketch_captions > 0)
    queries.csv           sketch, text, target, split, category, shape: every sketch of a shape with the attribute
                          phrase of each of its colourways ("in red with white stripes"); target = the one photo
                          of that shape in that colourway
    shapes.csv            shape, category, split, description, params (JSON: parameter name -> value in [0, 1])
    world.json            the config, counts and vocabulary (colours, patterns, scenes, parameter names)

Every image has its own seed derived from (seed, kind, shape index, slot), so output does not depend on the
order or the number of worker processes; `render_photo` / `render_sketch` with that seed redraw a file in memory.

Example:
    >>> from sketchtext.plugin.miniature.generate import generate_world
    >>> generate_world("world", seed=0, shapes_per_category=40, image_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from sketchtext.plugin.errors import ConfigError
from sketchtext.plugin.miniature.families import FAMILIES
from sketchtext.plugin.miniature.world import (
    COLOURS,
    PATTERNS,
    SCENES,
    Colourway,
    MiniatureCfg,
    Product,
    Shape,
    World,
    build_world,
    describe,
    photo_caption,
    render_photo,
    render_sketch,
    sketch_caption,
)

logger = logging.getLogger(__name__)


RenderTask = tuple[str, Path, Shape, Colourway | None, str, int, tuple[int, ...], float]


def _render_task(task: RenderTask) -> None:
    """Render and write one file (runs in a worker process when cfg.workers > 1)."""
    kind, path, shape, cw, scene, size, seed, extra = task
    if kind == "photo" and cw is not None:
        render_photo(shape, cw, scene, size=size, seed=seed).save(path, quality=int(extra))
    else:
        render_sketch(shape, size=size, seed=seed, drop=extra).save(path)


def _render_all(world: World, out: Path) -> None:
    """Render every photo and sketch of the world under `out`."""
    cfg = world.cfg
    for category in cfg.categories:
        (out / "catalog" / category).mkdir(parents=True, exist_ok=True)
        (out / "sketches" / category).mkdir(parents=True, exist_ok=True)
    tasks: list[RenderTask] = []
    for p in world.products:
        seed = (cfg.seed, 1, p.shape.index, p.slot)
        tasks.append(("photo", out / p.photo, p.shape, p.colourway, p.scene, cfg.image_size, seed, cfg.jpeg_quality))
    for shape in world.shapes:
        for k, path in enumerate(world.sketch_paths(shape)):
            seed = (cfg.seed, 2, shape.index, k)
            tasks.append(("sketch", out / path, shape, None, "", cfg.image_size, seed, cfg.sketch_drop))
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            list(pool.map(_render_task, tasks, chunksize=32))
    else:
        for task in tasks:
            _render_task(task)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write a CSV with "\\n" line ends; returns the number of rows."""
    count = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def _write_tables(world: World, out: Path) -> dict[str, Any]:
    """Write the sidecar and the CSVs of the layout; returns their row counts."""
    cfg = world.cfg
    by_shape: dict[int, list[Product]] = {}
    for p in world.products:
        by_shape.setdefault(p.shape.index, []).append(p)
    header = ["path", "sku", "title", "category", "scene", "colour", "colour2", "pattern", "shape", "split"]
    catalog = []
    for p in world.products:
        cw = p.colourway
        row = [p.photo.removeprefix("catalog/"), p.sku, p.title, p.shape.category, p.scene, cw.colour]
        catalog.append([*row, cw.colour2 or "", cw.pattern, p.shape.name, p.shape.split])
    _write_csv(out / "catalog" / "catalog.csv", header, catalog)
    pairs, queries, captions = [], [], []
    for s in world.shapes:
        for sk in world.sketch_paths(s):
            pairs += [(sk, p.photo, s.split) for p in by_shape[s.index]]
            queries += [(sk, p.colourway.phrase, p.photo, s.split, s.category, s.name) for p in by_shape[s.index]]
    for i, p in enumerate(world.products):
        rng = np.random.default_rng([cfg.seed, 3, i])
        for _ in range(cfg.captions_per_photo):
            captions.append((p.photo, photo_caption(p, rng, cfg.name_in_caption), p.shape.split, "photo"))
    for s in world.shapes:
        for k, sk in enumerate(world.sketch_paths(s)):
            rng = np.random.default_rng([cfg.seed, 4, s.index, k])
            for _ in range(cfg.sketch_captions):
                captions.append((sk, sketch_caption(s, rng, cfg.name_in_caption), s.split, "sketch"))
    _write_csv(out / "pairs.csv", ["sketch", "photo", "split"], pairs)
    _write_csv(out / "queries.csv", ["sketch", "text", "target", "split", "category", "shape"], queries)
    _write_csv(out / "captions.csv", ["photo", "caption", "split", "kind"], captions)
    shapes = [(s.name, s.category, s.split, describe(s), json.dumps(s.param_dict())) for s in world.shapes]
    _write_csv(out / "shapes.csv", ["shape", "category", "split", "description", "params"], shapes)
    return {
        "shapes": dict(Counter(s.split for s in world.shapes)),
        "photos": len(world.products),
        "sketches": len(world.shapes) * cfg.sketches_per_shape,
        "colourways": len({p.colourway for p in world.products}),
        "captions": len(captions),
        "pairs": len(pairs),
        "queries": dict(Counter(q[3] for q in queries)),
    }


def generate_world(
    out_dir: str | os.PathLike[str], cfg: MiniatureCfg | None = None, **overrides: Any
) -> dict[str, Any]:
    """Generate a world and write its files (layout in the module docstring).

    Args:
        out_dir: folder to write into; created if missing. Existing files of the same names are overwritten.
        cfg: the world's settings; defaults to `MiniatureCfg()`.
        **overrides: `MiniatureCfg` fields to replace, e.g. `seed=3, shapes_per_category=8, image_size=224`.

    Returns:
        A summary: out_dir, seconds, render_seconds and the counts of shapes (per split), photos, sketches,
        colourways, captions, pairs and queries (per split).

    Raises:
        ConfigError: the config or an override is invalid.

    Example:
        >>> summary = generate_world("/tmp/world", seed=1, shapes_per_category=10)  # doctest: +SKIP
        >>> summary["photos"]  # doctest: +SKIP
        160
    """
    start = time.perf_counter()
    try:
        cfg = dataclasses.replace(cfg or MiniatureCfg(), **overrides)
    except TypeError as exc:
        raise ConfigError(f"{exc}; valid settings: {[f.name for f in dataclasses.fields(MiniatureCfg)]}.") from exc
    world = build_world(cfg)
    out = Path(out_dir)
    _render_all(world, out)
    render_s = time.perf_counter() - start
    counts = _write_tables(world, out)
    meta = {
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "workers"},  # same output for any
        "counts": counts,
        "colours": COLOURS,
        "patterns": list(PATTERNS),
        "scenes": SCENES,
        "params": {c: [p.name for p in FAMILIES[c].params] for c in cfg.categories},
    }
    (out / "world.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    seconds = time.perf_counter() - start
    logger.info("Generated %d photos and %d sketches in %s (%.1fs)", counts["photos"], counts["sketches"], out, seconds)
    return {"out_dir": str(out), "seconds": round(seconds, 3), "render_seconds": round(render_s, 3), **counts}
