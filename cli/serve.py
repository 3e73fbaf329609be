"""`sketchtext serve`: the back-office search page and its JSON API over one collection."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from sketchtext.cli.common import State, friendly_errors, model_options, settings_from


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; loopback keeps it private.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--catalog",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Serve photos from this folder (default: SKETCHTEXT_WEB__CATALOG_ROOT, else the folder last ingested).",
)
@model_options
@click.pass_obj
@friendly_errors
def serve(
    state: State,
    host: str,
    port: int,
    catalog: Path | None,
    model_spec: str | None,
    checkpoint: Path | None,
    device: str | None,
    precision: str | None,
    batch_size: int | None,
    collection: str | None,
) -> None:
    """Serve the search page (draw, type, filter, see) and its JSON API; SKETCHTEXT_WEB__TOKEN requires a token."""
    import uvicorn

    from sketchtext.plugin.facade import SketchTextPlugin
    from sketchtext.plugin.web.app import create_app

    settings = settings_from(state, model_spec, device, precision, batch_size, collection, checkpoint)
    token = settings.web.token
    if token is None and not is_loopback(host):
        click.echo(
            f"warning: serving on {host} without a token; anyone who reaches it can search and see photos. "
            "Set SKETCHTEXT_WEB__TOKEN.",
            err=True,
        )
    from sketchtext.plugin.web.presence import claim_data_dir

    claim = claim_data_dir(settings)  # a second server of one embedded store refuses here, naming the first
    try:
        with SketchTextPlugin(settings) as plugin:
            plugin.store  # noqa: B018 - hold the embedded store from the start: this process owns it
            plugin.query_encoder  # noqa: B018 - load the query model now rather than on the first search
            app = create_app(plugin, settings, catalog_root=catalog)
            config = uvicorn.Config(app, host=host, port=port, log_level="info" if state.verbose else "warning")
            sock = config.bind_socket()
            shown = f"[{host}]" if ":" in host else host
            url = f"http://{shown}:{sock.getsockname()[1]}/"
            if claim is not None:
                claim.announce(url, token_required=token is not None)
            click.echo(f"sketchtext search page: {url}" + ("?token=…" if token else ""), err=True)
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        if claim is not None:
            claim.release()
