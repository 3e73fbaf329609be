"""`sketchtext delete`: remove assets (point and SQL row together) by key or sku."""

from __future__ import annotations

import json

import click

from sketchtext.cli.common import State, friendly_errors


@click.command()
@click.argument("keys", nargs=-1)
@click.option("--sku", "skus", multiple=True, help="Every asset of this sku (repeat for several).")
@click.option(
    "--where",
    "where_items",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Every asset this filter matches, as `search --where` reads it (repeatable: all must hold).",
)
@click.option("--collection", help="Qdrant collection.")
@click.option("--json", "as_json", is_flag=True, help="Print the removed keys as JSON.")
@click.pass_obj
@friendly_errors
def delete(
    state: State,
    keys: tuple[str, ...],
    skus: tuple[str, ...],
    where_items: tuple[str, ...],
    collection: str | None,
    as_json: bool,
) -> None:
    """Remove assets by KEY (their path in the catalogue), --sku or --where: the vector and the SQL row go together.

    The photo file stays where it is; a later `sketchtext ingest` of a folder that still holds it adds it again."""
    from sketchtext.plugin.facade import SketchTextPlugin
    from sketchtext.plugin.store.where import parse_where

    if not keys and not skus and not where_items:
        raise click.UsageError(
            "Name the assets to remove: KEY… (as `search --json` shows them), --sku SKU or --where FIELD=VALUE."
        )
    where = parse_where(where_items)
    from sketchtext.plugin.web.presence import running_server

    settings = state.settings(store={"collection": collection})
    server = running_server(settings)
    if server is not None:  # the embedded store belongs to a running `serve`: it deletes
        from sketchtext.cli.handoff import delete_via_server

        removed = delete_via_server(server, settings, keys, skus, where)
    else:
        with SketchTextPlugin(settings) as plugin:
            removed = plugin.delete(keys, skus=skus, where=where)
    if as_json:
        click.echo(json.dumps({"collection": settings.store.collection, "removed": removed}, indent=2))
        return
    click.echo(f"{settings.store.collection}: removed {len(removed)} asset(s)")
    for key in removed:
        click.echo(f"  {key}")
