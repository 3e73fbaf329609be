"""`sketchtext pretrain` and `sketchtext probe`: the stand-in foundation CLIP and the probes that gate it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from sketchtext.cli.common import friendly_errors


@click.command()
@click.option("--data", "world", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="FILE.safetensors")
@click.option("--arch", default="sketchtext-mini", show_default=True, help="open_clip architecture.")
@click.option("--epochs", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True, help="Shapes per step.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="torch threads; keep it at or below the free cores (on a shared 2-core machine 1 ran ~8x faster than 2).",
)
@click.option(
    "--caption-weight", type=click.FloatRange(min=0), default=2.0, show_default=True, help="Photo-caption term."
)
@click.option("--no-image-image", is_flag=True, help="Leave out the same-shape-other-colourway term.")
@click.option(
    "--leaky-sketch-photo",
    is_flag=True,
    help="Add the instance-level sketch-photo term and instance sketch captions (leaks the downstream task).",
)
@click.option("--no-sketch-captions", is_flag=True, help="Leave out the captioned sketches.")
@click.option("--json", "as_json", is_flag=True, help="Print the sidecar as JSON.")
@friendly_errors
def pretrain(
    world: Path,
    out: Path,
    arch: str,
    epochs: int,
    batch_size: int,
    seed: int,
    threads: int,
    caption_weight: float,
    no_image_image: bool,
    leaky_sketch_photo: bool,
    no_sketch_captions: bool,
    as_json: bool,
) -> None:
    """Pretrain the stand-in foundation CLIP on the train split of a generated world (val picks the epoch)."""
    from tqdm import tqdm

    from sketchtext.plugin.miniature.pretrain import PretrainCfg
    from sketchtext.plugin.miniature.pretrain import pretrain as run
    from sketchtext.plugin.miniature.probes import ProbeResult, format_table

    cfg = PretrainCfg(
        arch=arch,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        threads=threads,
        caption_weight=caption_weight,
        image_image_weight=0.0 if no_image_image else PretrainCfg.image_image_weight,
        sketch_photo_weight=1.0 if leaky_sketch_photo else PretrainCfg.sketch_photo_weight,
        instance_sketch_captions=leaky_sketch_photo,
        sketch_caption_weight=0.0 if no_sketch_captions else PretrainCfg.sketch_caption_weight,
    )
    with tqdm(desc="pretrain", unit="step", disable=as_json) as bar:

        def advance(step: int, total: int, info: dict[str, float]) -> None:
            bar.total = total
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{info['loss']:.3f}", epoch=int(info["epoch"]) + 1)

        sidecar = run(world, out, cfg, advance)
    if as_json:
        click.echo(json.dumps(sidecar, indent=2))
        return
    split, probes = next(iter(sidecar["probes"].items()))
    click.echo(f"wrote {out} ({sidecar['bytes'] / 1e6:.1f} MB) in {sidecar['seconds']:.0f}s; spec {sidecar['spec']}")
    click.echo(f"probes on {split} (best epoch {sidecar['best_epoch']}):")
    click.echo(format_table({k: ProbeResult(**v) for k, v in probes.items()}, sidecar["gates"]))


@click.command()
@click.option("--model", "model_spec", required=True, help="e.g. open_clip:sketchtext-mini@artifacts/mini.safetensors")
@click.option("--data", "world", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(["val", "test", "train"]), default="val", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON only.")
@friendly_errors
def probe(model_spec: str, world: Path, split: str, threads: int, as_json: bool) -> None:
    """Probe a foundation CLIP on a world: shape, sketch, shape words and colour words (the gate for training)."""
    import torch

    from sketchtext.plugin.miniature.files import read_world
    from sketchtext.plugin.miniature.probes import format_table, gate, run_probes
    from sketchtext.plugin.model.factory import load_encoder

    torch.set_num_threads(threads)  # on a shared CPU, more threads than free cores spin and run far slower
    results = run_probes(read_world(world), load_encoder(model_spec, device="cpu"), split)
    gates = gate(results)
    report = {"model": model_spec, "split": split, "probes": {k: dataclasses.asdict(v) for k, v in results.items()}}
    report["gates"] = gates
    if not as_json:
        click.echo(f"probes of {model_spec} on {split}:")
        click.echo(format_table(results, gates))
    click.echo(json.dumps(report, indent=None if not as_json else 2))
