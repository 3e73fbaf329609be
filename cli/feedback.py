"""`sketchtext feedback export DIR`: staff marks from the page as an evaluation set for `sketchtext eval`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sketchtext.cli.common import State, friendly_errors


@click.group()
def feedback() -> None:
    """Staff marks on hits ("this is it" / "wrong", from the search page)."""


@feedback.command("export")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--catalog",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Where the marked photos are (default: the folder last ingested).",
)
@click.option("--collection", help="Qdrant collection.")
@click.pass_obj
@friendly_errors
def export(state: State, out: Path, catalog: Path | None, collection: str | None) -> None:
    """Write OUT/pairs.csv and OUT/queries.csv (with the sketches and photos) for `sketchtext eval --data OUT`."""
    from sketchtext.plugin.db import MetadataDB
    from sketchtext.plugin.errors import CatalogError
    from sketchtext.plugin.web.feedback import export_feedback

    settings = state.settings(store={"collection": collection})
    db = MetadataDB(settings.database_url)  # SQL only: it runs beside `sketchtext serve`
    db.ensure_schema(auto_upgrade=db.engine.dialect.name == "sqlite")
    name = settings.store.collection
    root = catalog or db.latest_source(name)
    if root is None:
        raise CatalogError(f"Nothing was ever ingested into {name!r}; pass --catalog with the photos' folder.")
    counts = export_feedback(db, name, root, out)
    click.echo(json.dumps({"out": str(out), **counts}))
    click.echo(f"evaluate with: sketchtext eval --checkpoint CHECKPOINT --data {out}", err=True)
