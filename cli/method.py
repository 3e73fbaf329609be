"""`sketchtext train` and `sketchtext eval`: the method's front end (registered on the group in `cli/main.py`)."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import click

from sketchtext.cli.common import friendly_errors
from sketchtext.plugin.errors import ConfigError

DEVICES = click.Choice(["auto", "cpu", "cuda"])


def method_cfg(lambdas: tuple[str, ...], margin: float | None) -> Any:
    """MethodCfg from `--lambda NAME=VALUE` options and `--margin`."""
    from sketchtext.plugin.method.losses import MethodCfg

    cfg = MethodCfg() if margin is None else MethodCfg(margin=margin)
    names = [f.name.removeprefix("lambda_") for f in fields(MethodCfg) if f.name.startswith("lambda_")]
    for item in lambdas:
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in names:
            raise ConfigError(f"--lambda {item!r}: write NAME=VALUE with NAME one of {', '.join(names)}.")
        try:
            cfg = replace(cfg, **{f"lambda_{name.strip()}": float(value)})
        except ValueError as exc:
            raise ConfigError(f"--lambda {item!r}: {value!r} is not a number.") from exc
    return cfg


@click.command("train")
@click.option("--base", required=True, help="Base CLIP model spec, e.g. open_clip:ViT-B-32@laion2b_s34b_b79k.")
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Folder with pairs.csv (sketch,photo,split) or the QMUL ShoeV2/ChairV2 layout.",
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Checkpoint folder; reruns resume."
)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=0), default=0, help="Pairs per batch; 0: 64 on CUDA, 16 on CPU.")
@click.option("--accumulate", type=click.IntRange(min=1), default=1, show_default=True, help="Batches per step.")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=DEVICES, default="auto", show_default=True)
@click.option("--lambda", "lambdas", multiple=True, metavar="NAME=VALUE", help="Loss weight, e.g. --lambda rt=0.5.")
@click.option("--margin", type=float, help="Triplet margin (default 0.2).")
@click.option("--aux-warmup", type=click.FloatRange(0, 1), default=0.25, show_default=True, help="Ramp-up share.")
@click.option("--queries", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Validation texts.")
@click.option("--max-steps", type=click.IntRange(min=0), default=0, help="Stop after this many steps (0: no limit).")
@click.option("--no-amp", is_flag=True, help="No mixed precision on CUDA.")
@click.option("--batch-by-folder", is_flag=True, help="Each batch from one photo folder (category): harder negatives.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly_errors
def train_command(
    base: str,
    data: Path,
    out: Path,
    epochs: int,
    batch_size: int,
    accumulate: int,
    lr: float,
    seed: int,
    device: str,
    lambdas: tuple[str, ...],
    margin: float | None,
    aux_warmup: float,
    queries: Path | None,
    max_steps: int,
    no_amp: bool,
    batch_by_folder: bool,
    as_json: bool,
) -> None:
    """Train the sketch → pseudo-word composer on sketch–photo pairs; the best epoch is the checkpoint in --out."""
    from tqdm import tqdm

    from sketchtext.plugin.method.training import TrainCfg, TrainEvent, train

    cfg = TrainCfg(
        epochs=epochs,
        batch_size=batch_size,
        accumulate=accumulate,
        lr=lr,
        seed=seed,
        aux_warmup=aux_warmup,
        max_steps=max_steps,
        amp=not no_amp,
        batch_by_folder=batch_by_folder,
    )
    bar: Any = None

    def show(event: TrainEvent) -> None:
        nonlocal bar
        if event.kind == "step":
            if bar is None:
                bar = tqdm(total=event.steps, desc=f"epoch {event.epoch}/{event.epochs}", unit="batch", disable=as_json)
            bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
            bar.update(1)
        else:
            if bar is not None:
                bar.set_postfix(acc1=f"{event.metrics['acc@1']:.3f}", acc10=f"{event.metrics['acc@10']:.3f}")
                bar.close()
            bar = None

    result = train(base, data, out, cfg=cfg, method=method_cfg(lambdas, margin), device=device, queries=queries,
                   progress=show)  # fmt: skip
    summary = {
        "checkpoint": str(out),
        "fingerprint": result.checkpoint.fingerprint if result.checkpoint else None,
        "best_epoch": result.best_epoch,
        "best": result.best,
        "combine": result.checkpoint.config["combine"] if result.checkpoint else None,
        "pairs_per_s": round(result.pairs_per_s, 2),
        "resumed_from_epoch": result.start_epoch,
        "history": result.history,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{'epoch':>5} {'loss':>8} {'val Acc@1':>9} {'val Acc@10':>10}")
    for row in result.history:
        loss = f"{row['loss_total']:8.4f}" if "loss_total" in row else f"{'-':>8}"
        click.echo(f"{row['epoch']:>5} {loss} {row['val_acc@1']:9.3f} {row['val_acc@10']:10.3f}")
    if result.start_epoch:
        click.echo(f"resumed after epoch {result.start_epoch}")
    click.echo(
        f"best epoch {result.best_epoch} (val Acc@1 {result.best.get('acc@1', float('nan')):.3f}); "
        f"checkpoint {out} ({summary['fingerprint']}); sketch+text served as "
        f"{(summary['combine'] or {}).get('mode')}; {summary['pairs_per_s']} pairs/s"
    )


@click.command("eval")
@click.option(
    "--checkpoint", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="From train."
)
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path), help="Pairs to evaluate on.")
@click.option(
    "--queries",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV sketch,text,target[,split] (default: <data>/queries.csv if present).",
)
@click.option("--split", default="test", show_default=True, help="Which split's sketches and gallery.")
@click.option("--model", "model_spec", help="Base model spec (default: the checkpoint's); e.g. a local weights file.")
@click.option("--device", type=DEVICES, default="auto", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="JSON report (default: in CHECKPOINT).")
@click.option("--regions/--no-regions", default=True, show_default=True, help="Also each mode reranked by regions.")
@click.option("--region-prefetch", type=click.IntRange(min=1), help="Candidates the regions rerank [default: 50].")
@click.option(
    "--region-weight", type=click.FloatRange(0, 1, min_open=True), help="Region score's share [default: 0.1, from val]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
@friendly_errors
def eval_command(
    checkpoint: Path,
    data: Path,
    queries: Path | None,
    split: str,
    model_spec: str | None,
    device: str,
    output: Path | None,
    regions: bool,
    region_prefetch: int | None,
    region_weight: float | None,
    as_json: bool,
) -> None:
    """FG-SBIR evaluation of a checkpoint: Acc@1/5/10 per mode (zero-shot, trained, text, sum, composed, fusion),
    each also reranked by photo regions (`+regions` rows) unless --no-regions."""
    from sketchtext.plugin.method.evaluation import evaluate, format_table
    from sketchtext.plugin.store.regions import RegionSearch

    given = {"prefetch": region_prefetch, "weight": region_weight}
    search = RegionSearch(**{k: v for k, v in given.items() if v is not None}) if regions else None  # type: ignore[arg-type]
    report = evaluate(
        checkpoint, data, queries_file=queries, base_spec=model_spec, split=split, device=device, regions=search
    )
    output = output or checkpoint / f"eval-{split}.json"
    output.write_text(json.dumps(report.as_dict(), indent=2))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    click.echo(format_table(report))
    click.echo(f"report written to {output}")
