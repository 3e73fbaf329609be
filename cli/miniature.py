"""`sketchtext reproduce` and `sketchtext demo`: the hermetic miniature of the paper, end to end."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sketchtext.cli.common import friendly_errors
from sketchtext.plugin.model.precision import PRECISIONS


class StageBar:
    """One tqdm bar per stage, fed by the library's (stage, done, total) callbacks."""

    def __init__(self) -> None:
        self.stage = ""
        self.bar = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage, self.bar = stage, tqdm(desc=stage, total=total, unit="step")
        assert self.bar is not None
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run folder.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.Choice(["micro", "small", "full"]), default="full", show_default=True)
@click.option("--pretrain-epochs", type=click.IntRange(min=1), help="Override the size's pretraining epochs.")
@click.option("--method-epochs", type=click.IntRange(min=1), help="Override the size's method epochs.")
@click.option("--method-steps", type=click.IntRange(min=0), help="Override the size's method steps (0: whole epochs).")
@click.option("--families", help="Comma-separated shape families (boot, chair, bag, lamp, mug, vase) for the world.")
@click.option("--colours", help="Comma-separated colour vocabulary of the world (default: every colour).")
@friendly_errors
def reproduce(
    out: Path,
    seed: int,
    size: str,
    pretrain_epochs: int | None,
    method_epochs: int | None,
    method_steps: int | None,
    families: str | None,
    colours: str | None,
) -> None:
    """Generate a world, pretrain the mini CLIP, probe it, train the method, evaluate held-out shapes: table.md."""
    from sketchtext.plugin.miniature.probes import ProbeResult, format_table
    from sketchtext.plugin.miniature.reproduce import config_for
    from sketchtext.plugin.miniature.reproduce import reproduce as run

    bar = StageBar()
    start = time.perf_counter()
    try:
        given = {"pretrain_epochs": pretrain_epochs, "method_epochs": method_epochs, "method_steps": method_steps}
        given["categories"] = tuple(f.strip() for f in families.split(",")) if families else None
        given["colours"] = tuple(c.strip() for c in colours.split(",")) if colours else None
        table = run(out, size, config_for(size, seed, **{k: v for k, v in given.items() if v is not None}), bar)
    finally:
        bar.close()
    if table.get("probes"):
        split, probes = next(iter(table["probes"].items()))
        click.echo(f"probes of the pretrained mini CLIP on {split}:")
        click.echo(format_table({k: ProbeResult(**v) for k, v in probes.items()}, table["gates"]))
    click.echo((out / "table.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {out / 'table.json'} and {out / 'table.md'} in {time.perf_counter() - start:.0f} s")


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sketchtext-demo"),
    show_default=True,
    help="Folder for the catalogue, the embedded index and the contact sheet.",
)
@click.option("--size", type=click.Choice(["tiny", "default"]), default="default", show_default=True)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="The model's precision; int8 (or auto's pick) runs only when it agrees with fp32, as the table says.",
)
@friendly_errors
def demo(out: Path, size: str, precision: str) -> None:
    """Offline demo: a fresh catalogue of unseen shapes, ingested with the bundled checkpoint, queried in every mode."""
    from sketchtext.plugin.miniature.demo import run_demo

    bar = StageBar()
    try:
        result = run_demo(out, size=size, progress=bar, precision=precision)
    finally:
        bar.close()
    click.echo(result["table_text"])
    click.echo(f"contact sheet: {result['contact_sheet']}  ({result['seconds']:.0f} s)")
