"""Levers of the method, measured on val only: each variant trains the method on one `sketchtext reproduce` run's
world and mini CLIP (both kept fixed, so only the lever changes) and reports val Acc@1 of trained sketch-only and
composed beside the foundation model's zero-shot val baselines from the run's probes. The test split is never read.

    python tests/benchmarks/bench_levers.py --run /tmp/run --variant base --variant anchor=1 --variant early=rt

A variant is `name` or `key=value[,key=value]` over MethodCfg (`anchor` is `lambda_anchor`, `early` takes terms
joined by `+`) and TrainCfg (`epochs`, `lr`, `select_by`); `base` is the shipped configuration. Prints one JSON line
per variant.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from sketchtext.plugin.method.training import TrainCfg, train
from sketchtext.plugin.miniature.reproduce import method_configs


def parse(variant: str) -> dict[str, Any]:
    if variant == "base":
        return {}
    out: dict[str, Any] = {}
    for item in variant.split(","):
        key, _, value = item.partition("=")
        key = {"anchor": "lambda_anchor", "rt": "lambda_rt", "comp": "lambda_comp", "tt": "lambda_tt"}.get(key, key)
        out[key] = tuple(value.split("+")) if key == "early" else value if key == "select_by" else float(value)
    return out


def run_variant(run: Path, variant: str) -> dict[str, Any]:
    table = json.loads((run / "table.json").read_text())
    tcfg, method = method_configs(table["config"])
    over = parse(variant)
    names = {f.name for f in fields(TrainCfg)}
    tcfg = replace(tcfg, **{k: int(v) if k == "epochs" else v for k, v in over.items() if k in names})
    method = replace(method, **{k: v for k, v in over.items() if k not in names})
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = train(table["base"], run / "world", Path(tmp), cfg=tcfg, method=method, device="cpu")
    zero = table["probes"]["val"]
    return {
        "variant": variant,
        "best_epoch": result.best_epoch,
        "val_sketch@1": result.best.get("acc@1"),
        "val_composed@1": result.best.get("composed@1"),
        "val_zero_shot_sketch@1": zero["query_sketch"]["acc1"],
        "val_zero_shot_sum@1": zero["query_sum"]["acc1"],
        "history": [{k: round(v, 4) for k, v in h.items() if k.startswith("val_")} for h in result.history],
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a `sketchtext reproduce` output folder")
    parser.add_argument("--variant", action="append", default=[], help="see above; repeatable")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for variant in args.variant or ["base"]:
        print(json.dumps(run_variant(args.run, variant)), flush=True)


if __name__ == "__main__":
    main()
