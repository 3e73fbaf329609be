"""What the int8 graph's token output costs a features-only forward, in one run of alternating rounds.

    python tests/benchmarks/bench_int8_tokens.py --arch ViT-B-32 --arch ViT-S-32

The int8 export gives the patch tokens beside the features (photo regions at int8 speed), and ingest without
regions then asks onnxruntime for the features alone. This compares, on the same random pixels: that graph, a graph
exported without the token output, and the token graph pruned to the features (`onnx.utils.extract_model`). Prints
one JSON object: img/s of each, ratios against the graph without tokens (median of the rounds), and the largest
difference of their features.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx.utils
import torch

from sketchtext.plugin.model import int8
from sketchtext.plugin.model.factory import load_encoder


def towers(arch: str, root: Path) -> tuple[dict[str, int8.Int8Tower], int]:
    encoder = load_encoder(f"open_clip:{arch}", device="cpu", precision="fp32")
    int8.build_tower(encoder, root / "tokens")
    with_tokens = int8.has_tokens
    int8.has_tokens = lambda model, pixels: False  # the export as it was before the token output
    try:
        int8.build_tower(encoder, root / "plain")
    finally:
        int8.has_tokens = with_tokens
    (root / "pruned").mkdir()
    onnx.utils.extract_model(
        str(root / "tokens" / int8.GRAPH), str(root / "pruned" / int8.GRAPH), ["pixels"], ["features"]
    )
    threads = torch.get_num_threads()
    return {name: int8.Int8Tower(root / name / int8.GRAPH, threads) for name in ("tokens", "plain", "pruned")}, int(
        encoder.image_size
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", help="open_clip architecture (random weights)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    results = []
    for arch in args.arch or ["ViT-B-32"]:
        with tempfile.TemporaryDirectory() as root:
            graphs, side = towers(arch, Path(root))
            pixels = np.random.default_rng(0).standard_normal((args.batch_size, 3, side, side)).astype(np.float32)
            speeds: dict[str, list[float]] = {name: [] for name in graphs}
            for tower in graphs.values():
                tower(pixels)  # warm-up
            for round_ in range(args.rounds):  # alternating order: drift favours none
                for name in list(graphs) if round_ % 2 == 0 else list(graphs)[::-1]:
                    started = time.perf_counter()
                    for _ in range(3):
                        graphs[name](pixels)
                    speeds[name].append(3 * len(pixels) / (time.perf_counter() - started))
            plain = speeds["plain"]
            results.append(
                {
                    "arch": arch,
                    "images_per_s": {name: round(statistics.median(v), 1) for name, v in speeds.items()},
                    **{
                        f"{name}_vs_plain": round(statistics.median(a / b for a, b in zip(v, plain, strict=True)), 3)
                        for name, v in speeds.items()
                        if name != "plain"
                    },
                    "tokens_vs_plain_rounds": [round(a / b, 3) for a, b in zip(speeds["tokens"], plain, strict=True)],
                    "largest_feature_difference": max(
                        float(np.abs(graphs[name](pixels[:4]) - graphs["plain"](pixels[:4])).max())
                        for name in ("tokens", "pruned")
                    ),
                }
            )
    print(
        json.dumps({"benchmark": "int8_tokens", "torch_threads": torch.get_num_threads(), "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
