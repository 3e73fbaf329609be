"""Ingest throughput vs the bare image-tower forward pass, same model, precision and batch size, in one run.

    python tests/benchmarks/bench_ingest.py --arch sketchtext-tiny --arch ViT-B-32 --precision fp32 --precision bf16
    python tests/benchmarks/bench_ingest.py --arch ViT-B-32 --arch ViT-S-32 --precision fp32 --precision int8
    python tests/benchmarks/bench_ingest.py --arch ViT-B-32 --precision fp32 --precision int8 --regions

Prints one JSON object: per (arch, precision), images/s of the full `sketchtext ingest` path (read, decode, encode,
SQL and Qdrant writes, into a fresh embedded store) and of the bare forward on already decoded tensors, and their ratio.
Each of `--repeats` rounds runs both for every precision, in alternating order (precisions a, b then b, a; bare then
ingest, then ingest then bare, ...), and gives one ratio each, plus each precision's full ingest against the first
one's in the same round; the medians count. `--regions` ingests into collections with photo regions, and the bare
forward is then the pass that gives the global and the region vectors (`encode_image_regions`). int8 exports go
to `<cache>/models` (made once, reused by later runs).
This project's shared machines drift in speed by 10 % and more within minutes, so only passes next to each other in
time are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.ingest.catalog import scan_catalog
from sketchtext.plugin.miniature.generate import generate_world
from sketchtext.plugin.model.factory import load_encoder
from sketchtext.plugin.settings import Settings


def make_catalog(root: Path, photos: int, size: int) -> Path:
    """Generated product photos of a realistic size (JPEG), cached between runs."""
    shapes = max(3, photos // 16)
    out = root / f"world-{shapes}-{size}"
    if not (out / "catalog" / "catalog.csv").exists():
        generate_world(
            out, shapes_per_category=shapes, colourways_per_shape=4, sketches_per_shape=1, image_size=size, workers=2
        )
    return out / "catalog"


def decoded_pixels(encoder, catalog: Path):
    """Every photo decoded and preprocessed, as the bare forward's input."""
    return encoder.preprocess_images([Image.open(entry.path).convert("RGB") for entry in scan_catalog(catalog)])


def bare_forward(encoder, pixels, batch_size: int, regions: bool) -> float:
    """Images/s of the image tower alone on decoded, preprocessed tensors."""
    forward = encoder.encode_image_regions if regions else encoder.encode_image_tensors
    forward(pixels[:batch_size])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(pixels), batch_size):
        forward(pixels[i : i + batch_size])
    return len(pixels) / (time.perf_counter() - started)


def full_ingest(encoder, catalog: Path, batch_size: int, regions: bool) -> tuple[float, dict]:
    """Images/s of the whole ingest path into a fresh embedded store and SQLite file."""
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(
            data_dir=Path(data), model={"spec": "unused", "batch_size": batch_size}, store={"regions": regions}
        )
        with SketchTextPlugin(settings, encoder=encoder) as plugin:
            plugin.db.ensure_schema(auto_upgrade=True)  # schema creation is set-up, not ingest
            result = plugin.ingest(catalog, batch_size=batch_size).as_dict()
    return result["embedded"] / result["seconds"], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", help="open_clip architecture (random weights)")
    parser.add_argument("--precision", action="append", help="fp32, bf16 (CPU), int8 (CPU) or fp16 (CUDA)")
    parser.add_argument("--photos", type=int, default=128)
    parser.add_argument("--size", type=int, default=800, help="photo side in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--regions", action="store_true", help="collections with photo regions")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sketchtext-bench")
    args = parser.parse_args()
    catalog = make_catalog(args.cache, args.photos, args.size)
    results = []
    for arch in args.arch or ["sketchtext-tiny", "ViT-B-32"]:
        precisions = args.precision or ["fp32", "bf16"]
        encoders = {
            p: load_encoder(f"open_clip:{arch}", device=args.device, precision=p, models_dir=args.cache / "models")
            for p in precisions
        }
        pixels = decoded_pixels(encoders[precisions[0]], catalog)
        pairs: dict[str, list[tuple[float, float]]] = {p: [] for p in precisions}
        summaries: dict[str, dict] = {}
        for round_ in range(args.repeats):
            # precisions alternate within a round (a, b; then b, a; ...) and so do bare and ingest: drift favours none
            for precision in precisions if round_ % 2 == 0 else precisions[::-1]:
                encoder = encoders[precision]
                bare_first = round_ % 2 == 0
                if bare_first:
                    bare = bare_forward(encoder, pixels, args.batch_size, args.regions)
                ingest, result = full_ingest(encoder, catalog, args.batch_size, args.regions)
                if not bare_first:
                    bare = bare_forward(encoder, pixels, args.batch_size, args.regions)
                if precision not in summaries or ingest > summaries[precision]["images_per_s"]:
                    summaries[precision] = result
                pairs[precision].append((bare, ingest))
        for precision in precisions:
            encoder, rounds = encoders[precision], pairs[precision]
            row = {
                "arch": arch,
                "precision": precision,
                "runs_as": encoder.precision,  # int8 that failed the agreement check runs as fp32
                "agreement": encoder.agreement,
                "device": encoder.device,
                "bare_forward_images_per_s": round(statistics.median(b for b, _ in rounds), 2),
                "ingest_images_per_s": round(statistics.median(i for _, i in rounds), 2),
                "ratio": round(statistics.median(i / b for b, i in rounds), 3),
                "pair_ratios": [round(i / b, 3) for b, i in rounds],
                "stage_seconds": {k: summaries[precision][k] for k in ("read_s", "encode_s", "write_s", "seconds")},
            }
            if precision != precisions[0]:  # full ingest against the first precision's, round by round
                base = pairs[precisions[0]]
                ratios = [i / b for (_, i), (_, b) in zip(rounds, base, strict=True)]
                row[f"ingest_vs_{precisions[0]}"] = round(statistics.median(ratios), 3)
                row[f"ingest_vs_{precisions[0]}_rounds"] = [round(r, 3) for r in ratios]
            results.append(row)
    print(
        json.dumps(
            {
                "benchmark": "ingest",
                "photos": sum(1 for _ in scan_catalog(catalog)),
                "photo_size": args.size,
                "batch_size": args.batch_size,
                "regions": args.regions,
                "torch_threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
