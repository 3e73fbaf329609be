"""Ingest throughput vs the bare image-tower forward pass, same model, precision and batch size, in one run.

    python tests/benchmarks/bench_ingest.py --arch sketchtext-tiny --arch ViT-B-32 --precision fp32 --precision bf16

Prints one JSON object: per (arch, precision), images/s of the full `sketchtext ingest` path (read, decode, encode,
SQL and Qdrant writes, into a fresh embedded store) and of the bare forward on already decoded tensors, and their ratio.
Each of `--repeats` rounds runs both, in alternating order (bare then ingest, then ingest then bare, ...), and gives
one ratio; the medians count. This project's shared machines drift in speed by 10 % and more within minutes, so
only passes next to each other in time are compared.
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


def bare_forward(encoder, pixels, batch_size: int) -> float:
    """Images/s of the image tower alone on decoded, preprocessed tensors."""
    encoder.encode_image_tensors(pixels[:batch_size])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(pixels), batch_size):
        encoder.encode_image_tensors(pixels[i : i + batch_size])
    return len(pixels) / (time.perf_counter() - started)


def full_ingest(encoder, catalog: Path, batch_size: int) -> tuple[float, dict]:
    """Images/s of the whole ingest path into a fresh embedded store and SQLite file."""
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), model={"spec": "unused", "batch_size": batch_size})
        with SketchTextPlugin(settings, encoder=encoder) as plugin:
            plugin.db.ensure_schema(auto_upgrade=True)  # schema creation is set-up, not ingest
            result = plugin.ingest(catalog, batch_size=batch_size).as_dict()
    return result["embedded"] / result["seconds"], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", help="open_clip architecture (random weights)")
    parser.add_argument("--precision", action="append", help="fp32, bf16 (CPU) or fp16 (CUDA)")
    parser.add_argument("--photos", type=int, default=128)
    parser.add_argument("--size", type=int, default=800, help="photo side in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sketchtext-bench")
    args = parser.parse_args()
    catalog = make_catalog(args.cache, args.photos, args.size)
    results = []
    for arch in args.arch or ["sketchtext-tiny", "ViT-B-32"]:
        for precision in args.precision or ["fp32", "bf16"]:
            encoder = load_encoder(f"open_clip:{arch}", device=args.device, precision=precision)
            pixels = decoded_pixels(encoder, catalog)
            pairs, summary = [], {}
            for round_ in range(args.repeats):  # bare, ingest; then ingest, bare; ...: drift favours neither side
                bare_first = round_ % 2 == 0
                if bare_first:
                    bare = bare_forward(encoder, pixels, args.batch_size)
                ingest, result = full_ingest(encoder, catalog, args.batch_size)
                if not bare_first:
                    bare = bare_forward(encoder, pixels, args.batch_size)
                if not summary or ingest > summary["images_per_s"]:
                    summary = result
                pairs.append((bare, ingest))
            results.append(
                {
                    "arch": arch,
                    "precision": precision,
                    "device": encoder.device,
                    "bare_forward_images_per_s": round(statistics.median(b for b, _ in pairs), 2),
                    "ingest_images_per_s": round(statistics.median(i for _, i in pairs), 2),
                    "ratio": round(statistics.median(i / b for b, i in pairs), 3),
                    "pair_ratios": [round(i / b, 3) for b, i in pairs],
                    "stage_seconds": {k: summary[k] for k in ("read_s", "encode_s", "write_s", "seconds")},
                }
            )
    print(
        json.dumps(
            {
                "benchmark": "ingest",
                "photos": sum(1 for _ in scan_catalog(catalog)),
                "photo_size": args.size,
                "batch_size": args.batch_size,
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
