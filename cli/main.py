"""The `sketchtext` command line: a thin front end over `sketchtext.plugin`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from sketchtext.cli.assets import delete
from sketchtext.cli.common import State, friendly_errors, model_options, settings_from
from sketchtext.cli.feedback import feedback
from sketchtext.cli.method import eval_command, train_command
from sketchtext.cli.miniature import demo, reproduce
from sketchtext.cli.onnx import export_onnx
from sketchtext.cli.pretrain import pretrain, probe
from sketchtext.cli.queue import status, worker
from sketchtext.cli.serve import serve
from sketchtext.cli.store import store


@click.group()
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), help="TOML settings file.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Where the embedded store lives.")
@click.option("-v", "--verbose", count=True, help="More logging; tracebacks on errors.")
@click.version_option(package_name="sketchtext")
@click.pass_context
def main(ctx: click.Context, config: Path | None, data_dir: Path | None, verbose: int) -> None:
    """sketchtext: sketch + text composed search for Qdrant-backed image search."""
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = State(config, data_dir, verbose)


@main.command()
@click.argument("catalog", type=click.Path(exists=True, file_okay=False, path_type=Path))
@model_options
@click.option("--prune", is_flag=True, help="Remove assets whose files are gone.")
@click.option("--queue", "queued", is_flag=True, help="Send batches to Celery workers (`sketchtext worker`).")
@click.option(
    "--regions/--no-regions",
    default=None,
    help="Store photo regions for region-aware search in a new collection [default: with a --checkpoint].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
@friendly_errors
def ingest(
    state: State,
    catalog: Path,
    model_spec: str | None,
    checkpoint: Path | None,
    device: str | None,
    precision: str | None,
    batch_size: int | None,
    collection: str | None,
    prune: bool,
    queued: bool,
    regions: bool | None,
    as_json: bool,
) -> None:
    """Embed every photo under CATALOG into a Qdrant collection (new and changed files only)."""
    from tqdm import tqdm

    from sketchtext.plugin.facade import SketchTextPlugin
    from sketchtext.plugin.model.spec import check_spec

    settings = settings_from(state, model_spec, device, precision, batch_size, collection, checkpoint, regions)
    check_spec(settings.model.spec)  # a bad spec is told at once, not after a progress bar and a model load
    from sketchtext.plugin.web.presence import running_server

    server = None if queued else running_server(settings)
    if server is not None:  # the embedded store belongs to a running `serve`: it runs the ingest
        from sketchtext.cli.handoff import ingest_via_server

        report = ingest_via_server(server, settings, catalog, prune=prune, quiet=as_json)
    elif queued:
        from sketchtext.cli.queue import ingest_queued

        report = ingest_queued(settings, catalog, prune=prune, quiet=as_json).as_dict()
    else:
        with SketchTextPlugin(settings) as plugin, tqdm(unit="img", desc="ingest", disable=as_json) as bar:

            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.update(done)

            report = plugin.ingest(catalog, prune=prune, progress=advance).as_dict()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"{report['collection']}: {report['embedded']} embedded, {report['unchanged']} unchanged, "
        f"{report['failed']} failed, {report['pruned']} pruned of {report['total']} files "
        f"in {report['seconds']:.1f}s"
    )
    for failure in report["failures"]:
        click.echo(f"  failed: {failure['key']}: {failure['reason']}")


@main.command()
@click.option("--sketch", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A sketch image.")
@click.option("--text", help="Words for what the sketch cannot show.")
@click.option("--like", help="Find similar to this asset (id or key); with --text, its photo plus the words.")
@click.option("--category", multiple=True, help="Only this category (repeat for any of several).")
@click.option("--scene", multiple=True, help="Only this scene (repeat for any of several).")
@click.option(
    "--where",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Only assets whose field has this value: brand=acme, extra.season=winter,autumn (any), price=10..50.",
)
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Skip this many hits.")
@click.option("--min-score", type=click.FloatRange(-1, 1), help="Only hits scoring at least this (cosine).")
@click.option(
    "--sheet",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also draw the query beside its hits to this PNG file.",
)
@click.option(
    "--combine",
    type=click.Choice(["composed", "sum", "fusion"]),
    help="Sketch + text: composed, zero-shot sum, or their fusion (default: the checkpoint's best; sum without one).",
)
@click.option("--regions", "use_regions", is_flag=True, help="Rerank the best 50 by the photos' regions.")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@click.pass_obj
@friendly_errors
def search(
    state: State,
    sketch: Path | None,
    text: str | None,
    like: str | None,
    category: tuple[str, ...],
    scene: tuple[str, ...],
    where: tuple[str, ...],
    limit: int,
    offset: int,
    min_score: float | None,
    sheet: Path | None,
    combine: str | None,
    use_regions: bool,
    model_spec: str | None,
    checkpoint: Path | None,
    device: str | None,
    precision: str | None,
    batch_size: int | None,
    collection: str | None,
    as_json: bool,
) -> None:
    """Search the collection with a sketch, words, or both."""
    from sketchtext.plugin.facade import SketchTextPlugin
    from sketchtext.plugin.search import SketchTextQuery
    from sketchtext.plugin.store.where import parse_where

    settings = settings_from(state, model_spec, device, precision, batch_size, collection, checkpoint)
    query = SketchTextQuery(
        sketch=sketch,
        text=text,
        like=like,
        category=list(category) or None,
        scene=list(scene) or None,
        where=parse_where(where) or None,
        limit=limit,
        offset=offset,
        score_threshold=min_score,
        combine=combine,  # type: ignore[arg-type]
        regions=use_regions,
    )
    with SketchTextPlugin(settings) as plugin:
        hits = plugin.search(query)
        if sheet is not None:
            from sketchtext.cli.sheet import draw_search_sheet

            draw_search_sheet(plugin, query, hits, sheet)
    if as_json:
        click.echo(
            json.dumps(
                [{"id": str(h.id), "score": h.score, "key": h.key, "asset": h.asset} for h in hits],
                indent=2,
                default=str,
            )
        )
        return
    if not hits:
        click.echo("no hits")
    for rank, hit in enumerate(hits, start=offset + 1):
        asset = hit.asset or {}
        click.echo(f"{rank:3d}. {hit.score:.4f}  {hit.key}  sku={asset.get('sku')}  category={asset.get('category')}")
    if sheet is not None:
        click.echo(f"sheet: {sheet}")


@main.command()
@click.argument("catalog", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@model_options
@click.option("--repair", is_flag=True, help="Resolve every difference found.")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@click.pass_obj
@friendly_errors
def verify(
    state: State,
    catalog: Path | None,
    model_spec: str | None,
    checkpoint: Path | None,
    device: str | None,
    precision: str | None,
    batch_size: int | None,
    collection: str | None,
    repair: bool,
    as_json: bool,
) -> None:
    """Compare SQL rows, Qdrant points and files (CATALOG, default: the last ingested folder); exit 1 on differences."""
    from sketchtext.plugin.facade import SketchTextPlugin
    from sketchtext.plugin.ingest.verify import KINDS

    settings = settings_from(state, model_spec, device, precision, batch_size, collection, checkpoint)
    with SketchTextPlugin(settings) as plugin:
        differences = plugin.verify(catalog, repair=repair)
    if as_json:
        click.echo(json.dumps([d.as_dict() for d in differences], indent=2, default=str))
    else:
        for difference in differences:
            click.echo(f"{difference.kind:15s} {difference.key}  ({KINDS[difference.kind]})")
        click.echo(f"{len(differences)} difference(s)" + (" left after repair" if repair else ""))
    if differences:
        sys.exit(1)


@main.group()
def db() -> None:
    """Manage the metadata database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_obj
@friendly_errors
def db_upgrade(state: State, revision: str) -> None:
    """Apply migrations (SKETCHTEXT_DB__URL, or the embedded SQLite file)."""
    from sketchtext.plugin.db import MetadataDB

    database = MetadataDB(state.settings().database_url)
    database.upgrade(revision)
    click.echo(f"database at revision {database.current_revision()}")


@db.command("downgrade")
@click.argument("revision")
@click.pass_obj
@friendly_errors
def db_downgrade(state: State, revision: str) -> None:
    """Revert migrations down to REVISION ('base' removes every table)."""
    from sketchtext.plugin.db import MetadataDB

    database = MetadataDB(state.settings().database_url)
    database.downgrade(revision)
    click.echo(f"database at revision {database.current_revision()}")


@main.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--shapes-per-category", type=click.IntRange(min=3), default=40, show_default=True)
@click.option("--colourways-per-shape", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--image-size", type=click.IntRange(min=32), default=64, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.pass_obj
@friendly_errors
def generate(
    state: State,
    out: Path,
    seed: int,
    shapes_per_category: int,
    colourways_per_shape: int,
    image_size: int,
    workers: int,
) -> None:
    """Write a generated fine-grained catalogue to OUT: photos, sketches, captions, pairs and queries (seeded)."""
    from sketchtext.plugin.miniature.generate import generate_world

    summary = generate_world(
        out,
        seed=seed,
        shapes_per_category=shapes_per_category,
        colourways_per_shape=colourways_per_shape,
        image_size=image_size,
        workers=workers,
    )
    click.echo(f"wrote {out}: {json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict | list)})}")


for command in (
    serve,
    delete,
    feedback,
    train_command,
    eval_command,
    pretrain,
    probe,
    reproduce,
    demo,
    worker,
    status,
    store,
    export_onnx,
):
    main.add_command(command)
