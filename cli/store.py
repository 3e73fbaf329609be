"""`sketchtext store ...`: look at the embedded store, move a local-mode store to Qdrant Edge, build its index."""

from __future__ import annotations

import json
from typing import Any

import click

from sketchtext.cli.common import State, friendly_errors


@click.group()
def store() -> None:
    """Manage the embedded vector store (SKETCHTEXT_STORE__PATH, default <data dir>/qdrant)."""


@store.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
@friendly_errors
def store_info(state: State, as_json: bool) -> None:
    """Which engine holds the embedded store, and its collections."""
    from sketchtext.plugin.store.open import Layout, detect_layout, local_mode_collections

    settings = state.settings()
    path = settings.store_path
    layout = detect_layout(path)
    report: dict[str, Any] = {"path": str(path), "layout": layout.value, "collections": {}}
    if settings.store.url:
        report["layout"] = "server"
    elif layout in (Layout.EDGE, Layout.BOTH):
        from sketchtext.plugin.store.edge import EdgeStore

        with EdgeStore.open(settings) as edge:
            for name in edge.collections():
                info = edge.shard(name).info()
                report["collections"][name] = {
                    "points": info.points_count,
                    "indexed": info.indexed_vectors_count,
                    "model": edge.binding(name),
                }
    elif layout is Layout.LOCAL:
        report["collections"] = {name: {} for name in local_mode_collections(path)}
        report["hint"] = "run `sketchtext store migrate` to move it to Qdrant Edge"
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{report['path']}: {report['layout']}")
    for name, details in report["collections"].items():
        click.echo(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in details.items()))
    if "hint" in report:
        click.echo(report["hint"])


@store.command("migrate")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Points per write.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
@friendly_errors
def store_migrate(state: State, batch_size: int, as_json: bool) -> None:
    """Copy a qdrant-client local-mode store to Qdrant Edge in the same folder (the old files are kept aside)."""
    from tqdm import tqdm

    from sketchtext.plugin.store.migrate import migrate_local_store

    settings = state.settings()
    with tqdm(unit="pt", desc="migrate", disable=as_json) as bar:

        def advance(collection: str, done: int, total: int) -> None:
            bar.set_description(collection)
            bar.total = total
            bar.n = done
            bar.refresh()

        report = migrate_local_store(settings.store_path, batch_size=batch_size, progress=advance)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    for name, points in report.collections.items():
        click.echo(f"{name}: {points} points moved to Qdrant Edge")
    click.echo(f"local-mode files kept in {report.backup}; delete them once you are satisfied")


@store.command("optimize")
@click.option("--collection", help="Qdrant collection (default: SKETCHTEXT_STORE__COLLECTION).")
@click.pass_obj
@friendly_errors
def store_optimize(state: State, collection: str | None) -> None:
    """Build the search index of a large embedded collection now (ingest does it at the end of a run)."""
    from sketchtext.plugin.store.open import open_store

    settings = state.settings(store={"collection": collection})
    with open_store(settings) as vectors:
        changed = vectors.optimize(settings.store.collection)
    click.echo(f"{settings.store.collection}: {'indexed' if changed else 'nothing to do'}")
