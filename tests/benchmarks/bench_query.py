"""Query latency: one sketch+text query end to end vs the sum of its bare parts, and batch throughput, in one run.

    python tests/benchmarks/bench_query.py --arch sketchtext-tiny --arch ViT-B-32

With a checkpoint (trained a few steps here, `--train-steps`), the query is composed: the sketch through the tuned
image tower, its pseudo-word and the words through the text tower as one sequence. Parts, each timed alone on the same
inputs: the sketch through the image tower (pixels already preprocessed), one sequence of the same words through the
text tower, one filtered Qdrant query, the SQL join of the hits. End to end is `SketchTextPlugin.search` from PNG
bytes to joined hits. Then the same model (and checkpoint) is exported to ONNX and measured on the same collection
(`--no-onnx` leaves it out): query encoding timed against torch's, end to end, and the cosine to torch's vectors per
mode (compare at `--precision fp32`). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.miniature.generate import generate_world
from sketchtext.plugin.model.clip import ClipEncoder
from sketchtext.plugin.model.factory import load_encoder
from sketchtext.plugin.search import SketchTextQuery, join_hits, prepare_inputs
from sketchtext.plugin.settings import Settings


def timed(func: Callable[[], object], repeats: int) -> dict[str, float]:
    func()  # warm-up
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        samples.append((time.perf_counter() - started) * 1000)
    return summary(samples)


def alternated(funcs: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    """Like `timed` for several functions, one call of each per round, so that a busy machine slows them alike."""
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    for func in funcs.values():
        func()  # warm-up
    for _ in range(repeats):
        for name, func in funcs.items():
            started = time.perf_counter()
            func()
            samples[name].append((time.perf_counter() - started) * 1000)
    return {name: summary(values) for name, values in samples.items()}


def summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"p50_ms": round(statistics.median(samples), 3), "p99_ms": round(samples[int(0.99 * (len(samples) - 1))], 3)}


def png_bytes(path: Path, size: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").resize((size, size)).save(buffer, "PNG")
    return buffer.getvalue()


def short_checkpoint(arch: str, world: Path, steps: int) -> Path:
    """A checkpoint trained for a few steps: enough to serve composed queries through the real path."""
    from sketchtext.plugin.method.training import TrainCfg, train

    out = Path(tempfile.mkdtemp()) / f"ckpt-{arch}"
    train(f"open_clip:{arch}", world, out, cfg=TrainCfg(epochs=1, max_steps=steps, batch_size=8), device="auto")
    return out


def bench(arch: str, precision: str, world: Path, repeats: int, batch: int, train_steps: int, with_onnx: bool) -> dict:
    checkpoint = short_checkpoint(arch, world, train_steps) if train_steps else None
    encoder = load_encoder(f"open_clip:{arch}", device="auto", precision=precision, checkpoint=checkpoint)
    data = Path(tempfile.mkdtemp())
    settings = Settings(data_dir=data, model={"spec": "unused"})
    plugin = SketchTextPlugin(settings, encoder=encoder)
    plugin.ingest(world / "catalog")
    sketches = sorted((world / "sketches").rglob("*.png"))
    sketch = png_bytes(sketches[0], 512)  # a drawn sketch as a page would send it
    query = SketchTextQuery(sketch=sketch, text="in red with white stripes", category="boot", limit=10)
    image, text = prepare_inputs(query)
    pixels = encoder.preprocess_images([image])
    encoded = plugin.encode(query)
    points = plugin.store.query(plugin.collection, encoded.vector, query_filter=encoded.query_filter, limit=10)
    parts = {
        "sketch_image_tower": timed(lambda: encoder.encode_image_tensors(pixels), repeats),
        "text_tower": timed(lambda: encoder.encode_texts([text]), repeats),
        "qdrant_query": timed(
            lambda: plugin.store.query(plugin.collection, encoded.vector, query_filter=encoded.query_filter, limit=10),
            repeats,
        ),
        "sql_join": timed(lambda: join_hits(points, plugin.db, plugin.collection), repeats),
    }
    end_to_end = timed(lambda: plugin.search(query), repeats)
    bare = ("sketch_image_tower", "text_tower", "qdrant_query")
    bare_sum = sum(parts[name]["p50_ms"] for name in bare)
    queries = [
        SketchTextQuery(sketch=png_bytes(path, 512), text="in blue", category="boot", limit=10)
        for path in (sketches * batch)[:batch]
    ]
    started = time.perf_counter()
    plugin.search_batch(queries)
    batch_qps = batch / (time.perf_counter() - started)
    plugin.close()
    onnx = bench_onnx(f"open_clip:{arch}", checkpoint, data, encoder, query, queries, repeats) if with_onnx else None
    return {
        "arch": arch,
        "mode": encoded.mode,
        "precision": str(encoder.dtype).removeprefix("torch."),
        "device": encoder.device,
        "parts": parts,
        "end_to_end": end_to_end,
        "bare_parts_p50_sum_ms": round(bare_sum, 3),
        "end_to_end_over_bare_parts": round(end_to_end["p50_ms"] / bare_sum, 3),
        "end_to_end_over_all_parts": round(end_to_end["p50_ms"] / sum(p["p50_ms"] for p in parts.values()), 3),
        "batch_size": batch,
        "batch_queries_per_s": round(batch_qps, 2),
        **({"onnx": onnx, "onnx_over_torch_end_to_end_p50": round(onnx["end_to_end"]["p50_ms"] / end_to_end["p50_ms"],
            3)} if onnx else {}),
    }  # fmt: skip


def bench_onnx(
    spec: str, checkpoint: Path | None, data: Path, encoder: ClipEncoder, query: SketchTextQuery,
    queries: list[SketchTextQuery], repeats: int,
) -> dict:  # fmt: skip
    """The same model exported to ONNX, on the same collection: the composed query's encoding against the torch
    encoder's (timed alternately, same inputs), end to end, batch throughput, and the cosine to torch's vectors per
    mode."""
    from sketchtext.plugin.model.onnx import OnnxEncoder
    from sketchtext.plugin.model.onnx_export import export_onnx

    out = Path(tempfile.mkdtemp()) / "onnx"
    started = time.perf_counter()
    export_onnx(spec, out, checkpoint=checkpoint)
    export_s = time.perf_counter() - started
    plugin = SketchTextPlugin(Settings(data_dir=data, model={"spec": f"onnx:{out}"}))
    onnx_encoder = OnnxEncoder(out, threads=torch.get_num_threads())  # as many threads as torch has (the plugin's
    # own, timed end to end, takes onnxruntime's default: one per core)
    query = dataclasses.replace(query, combine="composed" if checkpoint else None)
    inputs, combines = [prepare_inputs(query)], [query.combine]
    encode = alternated(
        {
            "torch": lambda: encoder.query_vectors(inputs, combines),
            "onnx": lambda: onnx_encoder.query_vectors(inputs, combines),
        },
        repeats,
    )
    end_to_end = timed(lambda: plugin.search(query), repeats)
    started = time.perf_counter()
    plugin.search_batch(queries)
    batch_qps = len(queries) / (time.perf_counter() - started)
    cosine = {}
    pairs = [prepare_inputs(q) for q in queries[:8]]
    for mode in ("sketch", "text", "sum", "composed", "fusion") if checkpoint else ("sketch", "text", "sum"):
        mode_inputs = [(None if mode == "text" else s, None if mode == "sketch" else t) for s, t in pairs]
        combines = [mode if mode in ("sum", "composed", "fusion") else None] * len(mode_inputs)
        a, _ = encoder.query_vectors(mode_inputs, combines)  # type: ignore[arg-type]
        b, _ = onnx_encoder.query_vectors(mode_inputs, combines)  # type: ignore[arg-type]
        cosine[mode] = round(float((a * b).sum(axis=1).min()), 7)
    plugin.close()
    return {
        "export_s": round(export_s, 1),
        "export_mb": round(sum(f.stat().st_size for f in out.iterdir()) / 2**20, 1),
        "query_encoding": encode,
        "onnx_over_torch_encoding_p50": round(encode["onnx"]["p50_ms"] / encode["torch"]["p50_ms"], 3),
        "end_to_end": end_to_end,
        "batch_queries_per_s": round(batch_qps, 2),
        "min_cosine_to_torch": cosine,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--shapes", type=int, default=40, help="shapes per category (x4 categories x4 colourways)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=2, help="train a checkpoint this long (0: zero-shot sum)")
    parser.add_argument("--no-onnx", action="store_true", help="leave out the ONNX export of each model")
    args = parser.parse_args()
    world = Path(tempfile.mkdtemp()) / "world"
    generate_world(world, shapes_per_category=args.shapes, colourways_per_shape=4, image_size=224, workers=2)
    results = [
        bench(arch, args.precision, world, args.repeats, args.batch, args.train_steps, not args.no_onnx)
        for arch in args.arch or ["sketchtext-tiny"]
    ]
    print(
        json.dumps(
            {
                "benchmark": "query",
                "gallery_photos": args.shapes * 16,
                "torch_threads": torch.get_num_threads(),
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
