"""Region-aware search on the embedded store (Qdrant Edge): bytes per photo and query latency with and without the
regions rerank, in one run, on one store.

    .venv/bin/python tests/benchmarks/bench_regions.py [--photos 10000] [--dim 512] [--grid 2] [--queries 300]

Two collections hold the same points (unit vectors with a category payload): one plain, one with each photo's
grid² region rows beside its global vector (ingest's layout: a MaxSim multivector of rows mixed with the global
vector, HNSW off, on disk). Each query is filtered to one category and asks for 10 hits; the plain query and the
two-stage query (prefetch 50 by the global vector, then the rows' MaxSim, which is the weighted rerank at the
collection's mix; a `--weight` other than the mix runs the formula instead) run alternately on the same query
vectors, one request each, so the machine's drift hits both alike. Bytes are the shard folders on disk after a
flush. Vectors are random unit vectors: latency and bytes depend on sizes, not on values. Prints one JSON object;
progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from sketchtext.plugin.store.base import build_filter
from sketchtext.plugin.store.edge import EdgeStore
from sketchtext.plugin.store.regions import RegionSearch

CATEGORIES = ("boot", "chair", "bag", "lamp")
BATCH = 500


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def fill(store: EdgeStore, photos: int, dim: int, grid: int) -> dict[str, float]:
    """Both collections with the same points; seconds spent writing each."""
    rng = np.random.default_rng(0)
    store.ensure_collection("plain", dim, "bench")
    store.ensure_collection("regions", dim, "bench", region_grid=grid)
    seconds = {"plain": 0.0, "regions": 0.0}
    for start in range(0, photos, BATCH):
        n = min(BATCH, photos - start)
        ids = [uuid.uuid5(uuid.NAMESPACE_URL, f"photo{start + i}") for i in range(n)]
        vectors = unit(rng.normal(size=(n, dim)))
        regions = unit(rng.normal(size=(n, grid * grid, dim)))
        payloads = [{"key": f"photo{start + i}", "category": CATEGORIES[(start + i) % 4]} for i in range(n)]
        began = time.perf_counter()
        store.upsert("plain", ids, vectors, payloads)
        seconds["plain"] += time.perf_counter() - began
        began = time.perf_counter()
        store.upsert("regions", ids, vectors, payloads, regions=regions)
        seconds["regions"] += time.perf_counter() - began
    return seconds


def timed(run: Any) -> float:
    began = time.perf_counter()
    run()
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--grid", type=int, default=2)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--prefetch", type=int, default=RegionSearch().prefetch)
    parser.add_argument("--weight", type=float, default=RegionSearch().weight)
    args = parser.parse_args()
    search = RegionSearch(prefetch=args.prefetch, weight=args.weight)
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore(Path(tmp) / "edge")
        with store:
            log(f"writing {args.photos} photos twice (dim {args.dim}, {args.grid}x{args.grid} regions)")
            write_s = fill(store, args.photos, args.dim, args.grid)
            store.optimize("plain")
            store.optimize("regions")
            rng = np.random.default_rng(1)
            queries = unit(rng.normal(size=(args.queries, args.dim)))
            filters = [build_filter({"category": CATEGORIES[i % 4]}) for i in range(args.queries)]
            for i in range(10):  # warm both paths (shards loaded, pages cached)
                store.query("plain", queries[i], query_filter=filters[i])
                store.query_regions_batch("regions", [(queries[i], filters[i], 10)], search)
            plain, rerank = [], []
            for i, (query, query_filter) in enumerate(zip(queries, filters, strict=True)):
                pair = [
                    lambda q=query, f=query_filter: store.query("plain", q, query_filter=f, limit=10),
                    lambda q=query, f=query_filter: store.query_regions_batch("regions", [(q, f, 10)], search),
                ]
                first = i % 2  # alternate which runs first
                a = timed(pair[first])
                b = timed(pair[1 - first])
                plain.append(b if first else a)
                rerank.append(a if first else b)
            sizes = {name: folder_bytes(store.shard_path(name)) for name in ("plain", "regions")}
    p50_plain, p50_rerank = statistics.median(plain), statistics.median(rerank)
    p99 = {name: float(np.percentile(values, 99)) for name, values in (("plain", plain), ("rerank", rerank))}
    result = {
        "photos": args.photos,
        "dim": args.dim,
        "regions_per_photo": args.grid**2,
        "queries": args.queries,
        "prefetch": search.prefetch,
        "weight": search.weight,
        "query_p50_ms": {"plain": round(p50_plain, 3), "rerank": round(p50_rerank, 3)},
        "query_p99_ms": {k: round(v, 3) for k, v in p99.items()},
        "p50_ratio": round(p50_rerank / p50_plain, 3),
        "disk_bytes_per_photo": {k: round(v / args.photos) for k, v in sizes.items()},
        "extra_bytes_per_photo": round((sizes["regions"] - sizes["plain"]) / args.photos),
        "region_bytes_per_photo_raw": args.grid**2 * args.dim * 4,
        "write_s": {k: round(v, 2) for k, v in write_s.items()},
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
