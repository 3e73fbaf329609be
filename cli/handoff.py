"""Handing work to the `sketchtext serve` that holds the embedded store: its JSON API, with the same progress bar."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from sketchtext.plugin.errors import (
    IngestCancelledError,
    SketchTextError,
    StoreUnavailableError,
)
from sketchtext.plugin.settings import Settings
from sketchtext.plugin.web.presence import ServeRecord

POLL_S = 0.3  # how often the progress is asked for; the run does not depend on it


class ServerClient:
    """Calls to one running server, with its token when it needs one."""

    def __init__(self, record: ServeRecord, settings: Settings) -> None:
        self.base = record.url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if record.token_required:
            if settings.web.token is None:
                raise SketchTextError(
                    f"`sketchtext serve` at {record.url} holds this data dir and needs its token; set "
                    "SKETCHTEXT_WEB__TOKEN to the server's token and run the command again."
                )
            self.headers["Authorization"] = f"Bearer {settings.web.token.get_secret_value()}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error") or exc.reason
            except ValueError:
                message = exc.reason
            raise SketchTextError(f"The server at {self.base}/ answered {exc.code}: {message}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise StoreUnavailableError(
                f"`sketchtext serve` at {self.base}/ holds this data dir but does not answer ({exc}); "
                "check that it runs, or stop it and run the command again."
            ) from exc


def ingest_via_server(record: ServeRecord, settings: Settings, catalog: Path, *, prune: bool, quiet: bool) -> Any:
    """Start the ingest in the server and follow it; Ctrl-C cancels the run (after the batch under way)."""
    from tqdm import tqdm

    client = ServerClient(record, settings)
    if not quiet:
        click.echo(f"the embedded store is served by {record.url}; the server runs this ingest", err=True)
    job = client.call("POST", "/api/ingest", {"catalog": str(catalog.resolve()), "prune": prune})
    path = f"/api/ingest/{job['run_id']}"
    shown = 0
    with tqdm(unit="img", desc="ingest", disable=quiet) as bar:
        while job["state"] not in ("completed", "interrupted", "failed"):
            try:
                time.sleep(POLL_S)
                job = client.call("GET", path)
            except KeyboardInterrupt:
                client.call("DELETE", path)  # the server stops after the batch under way; follow it there
                continue
            bar.total = job["total"] or None
            bar.update(job["done"] - shown)
            shown = job["done"]
    if job["state"] == "interrupted":
        raise IngestCancelledError(f"Ingest run {job['run_id']} was cancelled; run the same ingest again to finish.")
    if job["state"] == "failed":
        raise SketchTextError(str(job["error"]))
    return job["summary"]


def delete_via_server(
    record: ServeRecord, settings: Settings, keys: Sequence[str], skus: Sequence[str], where: Mapping[str, Any]
) -> list[str]:
    """Remove assets through the server, which holds the store (`POST /api/assets/delete`: the facade's own delete)."""
    body = {"keys": list(keys), "skus": list(skus), "where": dict(where) or None}
    return list(ServerClient(record, settings).call("POST", "/api/assets/delete", body)["removed"])
