"""Scale benchmark of the embedded stores, side by side: Qdrant Edge vs qdrant-client's local mode.

    python -m tests.benchmarks.bench_store_scale [--sizes 10000,100000] [--queries 200] [--local-queries 20]

Vectors are generated catalogue embeddings (tests/generated_catalogue.py: product photos through a tiny CLIP image
tower with a 512-d projection), cached between runs. Each point carries its category; each query is the embedding
of another generated photo, filtered to that photo's category. Every backend and size is built in one subprocess
and served (reopen + queries) in another, so each peak RSS is that backend's alone. Ground truth for recall@10 is
exact cosine top-10 within the filter, computed with numpy. Prints one JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

DIM = 512
BATCH = 1000
COLLECTION = "bench"
FINGERPRINT = "bench-catalogue-512"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the data, made once and cached
def catalogue(cache: Path, n: int, queries: int) -> dict[str, Path]:
    """Embeddings of `n` catalogue photos and `queries` query photos, with categories, under `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    files = {
        "vectors": cache / f"catalogue-{n}-{DIM}.npy",
        "categories": cache / f"catalogue-{n}.json",
        "queries": cache / f"queries-{queries}-{DIM}.npy",
        "query_categories": cache / f"queries-{queries}.json",
    }
    if all(f.exists() for f in files.values()):
        return files
    from tests.generated_catalogue import encode, render_catalogue, tiny_encoder

    started = time.perf_counter()
    encoder = tiny_encoder(DIM)
    pixels, categories = render_catalogue(n, seed=0)
    np.save(files["vectors"], encode(encoder, pixels))
    files["categories"].write_text(json.dumps(categories))
    del pixels
    query_pixels, query_categories = render_catalogue(queries, seed=1)
    np.save(files["queries"], encode(encoder, query_pixels))
    files["query_categories"].write_text(json.dumps(query_categories))
    log(f"generated {n} catalogue embeddings in {time.perf_counter() - started:.0f}s")
    return files


def read_rows(path: Path, start: int, stop: int) -> np.ndarray:
    """Rows of a .npy file read into private memory (not a memory map, so they leave RSS when dropped)."""
    with path.open("rb") as fh:
        np.lib.format.read_magic(fh)
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        width = shape[1]
        fh.seek(start * width * dtype.itemsize, os.SEEK_CUR)
        return np.fromfile(fh, dtype=dtype, count=(stop - start) * width).reshape(-1, width)


def ground_truth(files: dict[str, Path], n: int, queries: int) -> list[dict[str, list[int]]]:
    vectors = np.load(files["vectors"], mmap_mode="r")[:n]
    categories = np.array(json.loads(files["categories"].read_text())[:n])
    query_vectors = np.load(files["queries"])[:queries]
    query_categories = json.loads(files["query_categories"].read_text())[:queries]
    scores = np.asarray(vectors @ query_vectors.T)
    truth = []
    for j, category in enumerate(query_categories):
        column = scores[:, j]
        filtered = np.where(categories == category, column, -np.inf)
        truth.append({"all": np.argsort(-column)[:10].tolist(), "filtered": np.argsort(-filtered)[:10].tolist()})
    return truth


# -- the child processes
def open_backend(backend: str, folder: Path, exact: bool = False) -> Any:
    if backend == "edge":
        from sketchtext.plugin.store.edge import EdgeStore
        from sketchtext.plugin.store.edge_config import EdgeIndexCfg

        return EdgeStore(folder, index=EdgeIndexCfg(exact_below=10**12) if exact else None)
    from sketchtext.plugin.store.qdrant import QdrantStore, open_local

    return QdrantStore(open_local(folder), owns_client=True)


def child_build(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    warnings.simplefilter("ignore")  # local mode warns that it ignores payload indexes
    categories = json.loads(Path(args.categories).read_text())
    baseline = peak_rss_mb()
    store = open_backend(args.backend, Path(args.folder))
    store.ensure_collection(COLLECTION, DIM, FINGERPRINT)
    note = None
    if args.backend == "local":
        # Local mode commits every point to SQLite on its own; with fsync that is 1-20 ms a point on a shared disk,
        # hours at 100k. Building without fsync changes the build time only: reopen and queries read the same file.
        store.client._client.collections[COLLECTION].storage.storage.execute("PRAGMA synchronous=OFF")
        note = "built with SQLite synchronous=OFF (local mode commits each point)"
    started = time.perf_counter()
    for start in range(0, args.n, BATCH):
        stop = min(start + BATCH, args.n)
        vectors = read_rows(Path(args.vectors), start, stop)
        store.upsert(COLLECTION, list(range(start, stop)), vectors, [{"category": c} for c in categories[start:stop]])
    insert_s = time.perf_counter() - started
    started = time.perf_counter()
    store.optimize(COLLECTION)
    index_s = time.perf_counter() - started
    store.close()
    size = sum(f.stat().st_blocks * 512 for f in Path(args.folder).rglob("*") if f.is_file())  # allocated, not apparent
    return {
        **({"note": note} if note else {}),
        "insert_s": round(insert_s, 2),
        "index_s": round(index_s, 2),
        "disk_mb": round(size / 2**20, 1),
        "build_peak_rss_mb": round(peak_rss_mb()),
        "baseline_rss_mb": round(baseline),
    }


def child_serve(args: argparse.Namespace) -> dict[str, Any]:
    from sketchtext.plugin.store.base import build_filter

    queries = np.load(args.queries)[: args.q]
    query_categories = json.loads(Path(args.query_categories).read_text())[: args.q]
    baseline = peak_rss_mb()
    started = time.perf_counter()
    store = open_backend(args.backend, Path(args.folder))
    count = store.count(COLLECTION)  # Edge loads the shard on first use: part of reopening
    reopen_s = time.perf_counter() - started

    def run(with_filter: bool, limit: int, over: Any = store) -> tuple[list[float], list[list[int]]]:
        times, found = [], []
        for vector, category in zip(queries[:limit], query_categories[:limit], strict=True):
            query_filter = build_filter({"category": category}) if with_filter else None
            t = time.perf_counter()
            hits = over.query(COLLECTION, vector, query_filter=query_filter, limit=10)
            times.append(time.perf_counter() - t)
            found.append([int(h.id) for h in hits])
        return times, found

    run(True, 3)  # warm-up
    filtered_t, filtered = run(True, args.q)
    unfiltered_t, unfiltered = run(False, min(args.q, args.unfiltered))
    result = {
        "points": count,
        "reopen_s": round(reopen_s, 3),
        "queries": len(filtered_t),
        "filtered_p50_ms": round(1000 * float(np.percentile(filtered_t, 50)), 2),
        "filtered_p99_ms": round(1000 * float(np.percentile(filtered_t, 99)), 2),
        "unfiltered_p50_ms": round(1000 * float(np.percentile(unfiltered_t, 50)), 2),
        "serve_peak_rss_mb": round(peak_rss_mb()),
        "baseline_rss_mb": round(baseline),
        "found": {"filtered": filtered, "all": unfiltered},
    }
    if args.backend == "edge":
        info = store.shard(COLLECTION).info()
        result["indexed_vectors"] = info.indexed_vectors_count
        result["search"] = "exact" if store.search_params(COLLECTION).exact else f"hnsw ef={store.index.hnsw_ef}"
        store.close()
        exact = open_backend("edge", Path(args.folder), exact=True)
        exact_t, _ = run(True, args.q, over=exact)
        result["exact_filtered_p50_ms"] = round(1000 * float(np.percentile(exact_t, 50)), 2)
        exact.close()
    else:
        store.close()
    return result


def child(args: argparse.Namespace) -> None:
    result = child_build(args) if args.child == "build" else child_serve(args)
    print(json.dumps(result))


def spawn(phase: str, **options: Any) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.benchmarks.bench_store_scale", "--child", phase]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    if out.returncode != 0:
        raise RuntimeError(f"{phase} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return round(float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=False)])), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="edge,local")
    parser.add_argument("--queries", type=int, default=200, help="filtered queries per Edge run")
    parser.add_argument("--local-queries", type=int, default=20, help="per local-mode run (~0.7 s each at 100k)")
    parser.add_argument("--unfiltered", type=int, default=50, help="unfiltered queries per run (at most --queries)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sketchtext-bench-cache")
    parser.add_argument("--work", type=Path, default=None, help="where the stores go (default: a temporary folder)")
    # child-process options
    parser.add_argument("--child", choices=["build", "serve"])
    for name in ("backend", "folder", "vectors", "categories", "queries-file", "query-categories"):
        parser.add_argument(f"--{name}")
    parser.add_argument("--n", type=int)
    parser.add_argument("--q", type=int)
    args = parser.parse_args()
    if args.child:
        args.queries = args.queries_file
        child(args)
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    started = time.perf_counter()
    files = catalogue(args.cache, max(sizes), args.queries)
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": round(os.getloadavg()[0], 1),  # other work on the machine skews timings
            "python": platform.python_version(),
            "qdrant_edge_py": version("qdrant-edge-py"),
            "qdrant_client": version("qdrant-client"),
        },
        "data": {
            "dim": DIM,
            "vectors": "generated catalogue photos -> sketchtext-tiny image tower, 512-d projection",
            "categories": len(set(json.loads(files["categories"].read_text()))),
            "filter": "category of the query photo (2-18% of points)",
        },
        "results": {},
    }
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        for n in sizes:
            truth = ground_truth(files, n, args.queries)
            for backend in backends:
                folder = Path(work) / f"{backend}-{n}"
                queries = args.queries if backend == "edge" else args.local_queries
                log(f"{backend} at {n}: building")
                built = spawn(
                    "build",
                    backend=backend,
                    folder=folder,
                    n=n,
                    vectors=files["vectors"],
                    categories=files["categories"],
                )
                log(f"{backend} at {n}: built {built}; serving {queries} queries")
                served = spawn(
                    "serve",
                    backend=backend,
                    folder=folder,
                    q=queries,
                    unfiltered=min(queries, args.unfiltered),
                    queries_file=files["queries"],
                    query_categories=files["query_categories"],
                )
                found = served.pop("found")
                served["recall@10_filtered"] = recall(found["filtered"], [t["filtered"] for t in truth])
                served["recall@10_unfiltered"] = recall(found["all"], [t["all"] for t in truth])
                served["peak_rss_mb"] = max(built["build_peak_rss_mb"], served["serve_peak_rss_mb"])
                report["results"].setdefault(str(n), {})[backend] = {**built, **served}
                log(f"{backend} at {n}: {report['results'][str(n)][backend]}")
    largest = report["results"].get(str(max(sizes)), {})
    if "edge" in largest:
        edge = largest["edge"]
        local = largest.get("local")
        report["done_when"] = {
            "at": max(sizes),
            "filtered_p50_ms<=10": edge["filtered_p50_ms"] <= 10,
            "reopen_s<=1": edge["reopen_s"] <= 1,
            "recall@10>=0.99": min(edge["recall@10_filtered"], edge["recall@10_unfiltered"]) >= 0.99,
            "peak_rss_vs_local": round(edge["peak_rss_mb"] / local["peak_rss_mb"], 3) if local else None,
        }
    report["machine"]["load_average_at_end"] = round(os.getloadavg()[0], 1)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
