"""Find similar with words ("like this one, in red") on the miniature: photo + words vs words alone, in one run.

    python tests/benchmarks/bench_like.py [--size default|tiny] [--out DIR]

The demo's world (a seed the bundled checkpoint never saw) is ingested with the bundled mini CLIP and method
checkpoint. For each of the demo's sampled sketch+text queries (target: a shape in one colourway), "this one" is
another photo of the same shape in another colourway, and the words are the query's words for the target's
colourway. Modes, each scored by the target's rank (Acc@1, Acc@5, Acc@10), "this one" left out of its own hits:
words alone; like alone (its stored vector); like + words (its photo in the sketch's place, composed, sum and fusion);
and the sketch + words (composed) for reference. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.method.pairs import load_queries
from sketchtext.plugin.miniature.demo import SIZES, demo_settings
from sketchtext.plugin.miniature.files import read_world
from sketchtext.plugin.miniature.generate import generate_world
from sketchtext.plugin.search import SketchTextQuery

LIMIT = 50


def accuracy(ranks: list[int]) -> dict[str, float]:
    r = np.array(ranks)
    return {f"acc{k}": round(float((r <= k).mean()), 3) for k in (1, 5, 10)} | {"n": len(ranks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cfg = SIZES[args.size]
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-like-"))
    torch.set_num_threads(1)
    world = out / "world"
    generate_world(world, seed=cfg.seed, shapes_per_category=cfg.shapes_per_category,
                   colourways_per_shape=cfg.colourways_per_shape)  # fmt: skip
    files = read_world(world)
    queries = load_queries(world / "queries.csv")
    rng = np.random.default_rng(cfg.seed)
    picked = [queries[i] for i in sorted(rng.choice(len(queries), min(cfg.max_queries, len(queries)), replace=False))]
    catalog = world / "catalog"
    by_shape: dict[str, list[str]] = {}
    for photo in files.photos.values():
        by_shape.setdefault(photo.shape, []).append((world / photo.path).relative_to(catalog).as_posix())
    cases = []
    for query in picked:
        target = query.target.relative_to(catalog).as_posix()
        shape = files.photos[query.target.relative_to(world).as_posix()].shape
        others = sorted(k for k in by_shape[shape] if k != target)
        if others:
            cases.append((query, target, others[int(rng.integers(len(others)))]))

    def like_words(combine: str):
        return lambda q, like: SketchTextQuery(like=like, text=q.text, combine=combine, limit=LIMIT)

    modes = {
        "words alone": lambda q, like: SketchTextQuery(text=q.text, limit=LIMIT),
        "like alone": lambda q, like: SketchTextQuery(like=like, limit=LIMIT),
        **{f"like + words ({combine})": like_words(combine) for combine in ("composed", "sum", "fusion")},
        "sketch + words (composed)": lambda q, like: SketchTextQuery(
            sketch=q.sketch, text=q.text, combine="composed", limit=LIMIT
        ),
    }
    table: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    with SketchTextPlugin(demo_settings(out)) as plugin:
        summary = plugin.ingest(catalog)
        for name, make in modes.items():
            start = time.perf_counter()
            results = plugin.search_batch([make(q, like) for q, _, like in cases])
            seconds[name] = round(time.perf_counter() - start, 2)
            ranks = []
            for hits, (_, target, like) in zip(results, cases, strict=True):
                keys = [h.key for h in hits if h.key != like]  # "this one" is what the user already has
                ranks.append(keys.index(target) + 1 if target in keys else 10**6)
            table[name] = accuracy(ranks)
    print(json.dumps({"photos": summary.total, "queries": len(cases), "table": table, "seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
