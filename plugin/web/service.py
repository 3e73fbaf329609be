"""The work behind the search page's routes: request bodies, searches on the shared model, photos, thumbnails."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from sketchtext.plugin.db import asset_id as make_asset_id
from sketchtext.plugin.errors import ImageError
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.images import decode_image
from sketchtext.plugin.search import SearchHit, SketchTextQuery
from sketchtext.plugin.settings import Settings
from sketchtext.plugin.web.schema import (
    MAX_FILTER_VALUES,
    Facets,
    Hit,
    SearchRequest,
    SearchResponse,
    describe_validation_error,
)

THUMB_CACHE_SIZE = 512


class UploadTooLarge(Exception):
    """The request body is over the configured limit."""


def as_int(value: str | None) -> int | None:
    """An integer from a header or query value, or None when it is not one."""
    try:
        return int(value) if value is not None and value.isascii() else None
    except ValueError:
        return None


def narrowing(request: SearchRequest) -> dict[str, Any]:
    """A request's find-similar, where-filters, page and regions rerank, as `SketchTextQuery` fields."""
    return {
        "like": request.like,
        "where": request.where,
        "offset": request.offset,
        "score_threshold": request.score_threshold,
        "regions": request.regions,
    }


class SearchService:
    """The routes' work: searches one at a time on the shared model, SQL lookups, photos and thumbnails."""

    def __init__(self, plugin: SketchTextPlugin, settings: Settings, catalog_root: Path | None) -> None:
        self.plugin = plugin
        self.max_upload = settings.web.max_upload_bytes
        self.catalog_root = catalog_root or settings.web.catalog_root
        self._model_lock = threading.Lock()
        self._thumbs: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()
        self._thumbs_lock = threading.Lock()

    # -- facets and search
    def facets(self) -> Facets:
        db = self.plugin.db
        found = db.facets(self.plugin.collection)
        embedded = db.status_counts(self.plugin.collection).get("embedded", 0)
        store, collection = self.plugin.store, self.plugin.collection
        regions = store.exists(collection) and store.region_grid(collection) is not None
        return Facets(collection=collection, assets=embedded, regions=regions, **found)

    def search(self, request: SearchRequest, sketch: bytes | str | None) -> SearchResponse:
        start = time.perf_counter()
        query = SketchTextQuery(
            sketch=sketch,
            text=request.text,
            category=request.category,
            scene=request.scene,
            limit=request.limit,
            **narrowing(request),
        )
        with self._model_lock:  # one model, one query at a time; a query takes milliseconds to a few hundred
            hits = self.plugin.search(query)
        took_ms = (time.perf_counter() - start) * 1000
        return SearchResponse(hits=[self.hit(h) for h in hits], took_ms=round(took_ms, 1))

    def hit(self, hit: SearchHit) -> Hit:
        asset = hit.asset or {}
        ident = str(make_asset_id(self.plugin.collection, hit.key)) if hit.key and hit.asset else None
        return Hit(
            id=str(hit.id),
            asset_id=ident,
            score=hit.score,
            key=hit.key,
            sku=asset.get("sku"),
            title=asset.get("title"),
            category=asset.get("category"),
            scene=asset.get("scene"),
            thumb_url=f"/api/photos/{ident}?size=256" if ident else None,
            photo_url=f"/api/photos/{ident}" if ident else None,
        )

    # -- photos
    def photo_file(self, ident: str) -> tuple[Path, str]:
        """The file of an asset and a validator for it; 404 for anything else."""
        try:
            key_id = uuid.UUID(ident)
        except ValueError:
            raise HTTPException(404, f"No asset {ident!r}: asset ids are UUIDs from /api/search.") from None
        row = self.plugin.db.asset(self.plugin.collection, key_id)
        if row is None:
            raise HTTPException(404, f"No asset {ident} in collection {self.plugin.collection!r}.")
        root = self.catalog_root or self.plugin.db.latest_source(self.plugin.collection)
        if root is None:
            raise HTTPException(404, "No catalog folder is known; ingest one, or start the server with --catalog.")
        base = root.resolve()
        path = (base / row.key).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            # the message names no server path: the catalogue's location is the server's business
            raise HTTPException(
                404, f"The photo of asset {ident} is not in the catalogue folder; re-ingest or check --catalog."
            )
        return path, row.sha256 or f"{path.stat().st_mtime_ns:x}"

    def thumbnail(self, path: Path, version: str, size: int) -> bytes:
        cache_key = (str(path), version, size)
        with self._thumbs_lock:
            if cache_key in self._thumbs:
                self._thumbs.move_to_end(cache_key)
                return self._thumbs[cache_key]
        try:
            image, _ = decode_image(path.read_bytes(), name=path.name, draft_size=size)
        except (ImageError, OSError) as exc:
            raise HTTPException(404, f"The photo cannot be read: {exc}; re-ingest to record it as failed.") from exc
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85, optimize=True)
        data = out.getvalue()
        with self._thumbs_lock:
            self._thumbs[cache_key] = data
            while len(self._thumbs) > THUMB_CACHE_SIZE:
                self._thumbs.popitem(last=False)
        return data

    # -- request bodies
    async def read_body(self, request: Request) -> bytes:
        declared = as_int(request.headers.get("content-length"))
        if declared is not None and declared > self.max_upload:
            raise UploadTooLarge
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_upload:
                raise UploadTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def parse_search(self, request: Request) -> tuple[SearchRequest, bytes | str | None]:
        body = await self.read_body(request)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        sketch: bytes | str | None = None
        if content_type == "application/json":
            try:
                fields = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise HTTPException(400, f"The body is not valid JSON: {exc}.") from None
            except RecursionError:  # JSON nested deeper than the parser's stack
                raise HTTPException(400, "The body's JSON is nested too deeply; send a flat JSON object.") from None
            if not isinstance(fields, dict):
                raise HTTPException(400, "The body must be a JSON object with sketch, text, category, scene, limit.")
        elif content_type == "multipart/form-data":
            fields, sketch = await self.parse_form(request, body)
        else:
            raise HTTPException(415, "Send application/json (sketch as a data URL) or multipart/form-data.")
        try:
            parsed = SearchRequest.model_validate(fields)
        except ValidationError as exc:
            raise HTTPException(422, describe_validation_error(exc)) from None
        return parsed, sketch if sketch is not None else parsed.sketch

    async def parse_form(self, request: Request, body: bytes) -> tuple[dict[str, Any], bytes | None]:
        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=2 * MAX_FILTER_VALUES + 10)
        except HTTPException as exc:
            raise HTTPException(400, f"The form data cannot be read: {exc.detail}.") from None
        fields: dict[str, Any] = {}
        sketch: bytes | None = None
        try:
            for name in dict.fromkeys(form.keys()):
                values = form.getlist(name)
                if name == "sketch" and isinstance(values[0], UploadFile):
                    sketch = await values[0].read()
                    continue
                texts = [v for v in values if isinstance(v, str)]
                if len(texts) != len(values):
                    raise HTTPException(422, f"Form field {name!r} must be text; only 'sketch' may be a file.")
                fields[name] = texts if name in ("category", "scene") and len(texts) > 1 else texts[0]
        finally:
            await form.close()
        return fields, sketch
