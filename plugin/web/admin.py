"""The back office's write routes: ingest runs in the server (`/api/ingest`), deleting an asset (`/api/assets/{id}`),
staff marks on hits (`/api/feedback`).

All sit under `/api/`, so a server with a token requires it on every one of them.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sketchtext.plugin.search import decode_text_sketch
from sketchtext.plugin.web.feedback import record_feedback
from sketchtext.plugin.web.jobs import IngestJob, IngestJobs
from sketchtext.plugin.web.service import SearchService

RUNS_SHOWN = 10
FEEDBACK_FIELDS = {"asset_id", "mark", "sketch", "text", "category", "scene"}


def run_dict(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "status": run.status,
        "source": run.source,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        **{name: getattr(run, name) for name in ("total", "embedded", "unchanged", "failed", "pruned")},
    }


async def json_object(request: Request, service: SearchService) -> dict[str, Any]:
    body = await service.read_body(request)
    if not body.strip():
        return {}
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HTTPException(400, "The body is not JSON; send a JSON object.") from None
    if not isinstance(fields, dict):
        raise HTTPException(400, "The body must be a JSON object.")
    return fields


def catalog_of(fields: dict[str, Any], service: SearchService) -> Path:
    """The folder to ingest: the body's `catalog` (an absolute folder on this server), else the one it serves."""
    unknown = sorted(set(fields) - {"catalog", "prune"})
    if unknown:
        raise HTTPException(422, f"Unknown fields {unknown}; an ingest takes 'catalog' and 'prune'.")
    if not isinstance(fields.get("prune", False), bool):
        raise HTTPException(422, "'prune' must be true or false.")
    raw = fields.get("catalog")
    if raw is None:
        root = service.catalog_root or service.plugin.db.latest_source(service.plugin.collection)
        if root is None:
            raise HTTPException(422, "No catalogue is known yet; send {'catalog': '/absolute/folder'}.")
        return root
    if not isinstance(raw, str) or not Path(raw).is_absolute():
        raise HTTPException(422, "'catalog' must be an absolute folder path on the server.")
    if not Path(raw).is_dir():
        raise HTTPException(422, f"The catalogue folder {raw} does not exist on the server.")
    return Path(raw)


def admin_routes(service: SearchService, jobs: IngestJobs) -> list[Route]:
    """Routes for ingest runs and deletes over the server's plugin."""

    def known(request: Request) -> IngestJob:
        raw = request.path_params["run_id"]
        job = jobs.get(int(raw)) if raw.isascii() and raw.isdigit() else None
        if job is None:
            raise HTTPException(404, f"No ingest run {raw!r} was started by this server; GET /api/ingest lists runs.")
        return job

    async def start_ingest(request: Request) -> Response:
        fields = await json_object(request, service)
        catalog = catalog_of(fields, service)
        job = await run_in_threadpool(jobs.start, catalog, prune=bool(fields.get("prune", False)))
        if job.exception is not None and job.run_id is None:
            raise job.exception  # refused before it began (an empty folder, a bad sidecar): the usual error status
        return JSONResponse(job.as_dict(), status_code=202, headers={"Location": f"/api/ingest/{job.run_id}"})

    async def list_runs(request: Request) -> Response:
        plugin = service.plugin
        runs = await run_in_threadpool(plugin.db.latest_runs, RUNS_SHOWN, plugin.collection)
        current = jobs.current
        return JSONResponse(
            {"current": current.as_dict() if current is not None else None, "runs": [run_dict(r) for r in runs]}
        )

    async def follow_ingest(request: Request) -> Response:
        return JSONResponse(known(request).as_dict())

    async def cancel_ingest(request: Request) -> Response:
        job = known(request)
        job.cancel.set()
        return JSONResponse(job.as_dict(), status_code=202)

    async def delete_asset(request: Request) -> Response:
        raw = request.path_params["asset_id"]
        try:
            ident = uuid.UUID(raw)
        except ValueError:
            raise HTTPException(404, f"No asset {raw!r}: asset ids are UUIDs from /api/search.") from None
        plugin = service.plugin
        row = await run_in_threadpool(plugin.db.asset, plugin.collection, ident)
        if row is None:
            raise HTTPException(404, f"No asset {raw} in collection {plugin.collection!r}.")
        removed = await run_in_threadpool(plugin.delete, [row.key])
        return JSONResponse({"removed": removed})

    async def delete_assets(request: Request) -> Response:
        fields = await json_object(request, service)
        keys, skus, where = fields.pop("keys", []), fields.pop("skus", []), fields.pop("where", None)
        texts = all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in (keys, skus))
        if fields or not texts or not (where is None or isinstance(where, dict)) or not (keys or skus or where):
            raise HTTPException(
                422,
                'Send {"keys": [...], "skus": [...], "where": {"field": value}} (any of them), as the CLI takes them.',
            )
        removed = await run_in_threadpool(service.plugin.delete, keys, skus=skus, where=where)
        return JSONResponse({"removed": removed})

    async def feedback(request: Request) -> Response:
        fields = await json_object(request, service)
        unknown = sorted(set(fields) - FEEDBACK_FIELDS)
        if unknown:
            raise HTTPException(422, f"Unknown fields {unknown}; feedback takes {sorted(FEEDBACK_FIELDS)}.")
        try:
            ident = uuid.UUID(str(fields.get("asset_id")))
        except ValueError:
            raise HTTPException(422, "'asset_id' must be the asset id of a hit (from /api/search).") from None
        sketch, text = fields.get("sketch"), fields.get("text")
        if not (sketch is None or isinstance(sketch, str)) or not (text is None or isinstance(text, str)):
            raise HTTPException(422, "'sketch' must be a data URL and 'text' a string (or null).")
        filters = {name: fields[name] for name in ("category", "scene") if fields.get(name)}
        mark_id = await run_in_threadpool(
            record_feedback,
            service.plugin.db,
            service.plugin.collection,
            ident,
            str(fields.get("mark")),
            sketch=decode_text_sketch(sketch) if sketch else None,
            text=text,
            filters=filters,
        )
        return JSONResponse({"id": mark_id}, status_code=201)

    return [
        Route("/api/feedback", feedback, methods=["POST"]),
        Route("/api/ingest", start_ingest, methods=["POST"]),
        Route("/api/ingest", list_runs, methods=["GET"]),
        Route("/api/ingest/{run_id}", follow_ingest, methods=["GET"]),
        Route("/api/ingest/{run_id}", cancel_ingest, methods=["DELETE"]),
        Route("/api/assets/{asset_id}", delete_asset, methods=["DELETE"]),
        Route("/api/assets/delete", delete_assets, methods=["POST"]),
    ]
