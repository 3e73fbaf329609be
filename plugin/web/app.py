"""The back-office search page and its JSON API: a small Starlette app over `SketchTextPlugin` (`sketchtext serve`).

Routes: `/` (the page), `/static/*` (its script and style), `/openapi.json`, `POST /api/search`, `GET /api/facets`,
`GET /api/photos/{asset_id}`. Photos are found by asset id only: the SQL row gives the key, the key is resolved
under the catalog folder and must stay inside it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sketchtext.plugin.errors import (
    AssetNotFoundError,
    CatalogError,
    CollectionNotFoundError,
    DatabaseError,
    IngestBusyError,
    ModelMismatchError,
    ModelUnavailableError,
    QueryError,
    SketchTextError,
    StoreUnavailableError,
)
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.settings import Settings
from sketchtext.plugin.web.admin import admin_routes
from sketchtext.plugin.web.jobs import IngestJobs
from sketchtext.plugin.web.schema import THUMB_SIZES, openapi
from sketchtext.plugin.web.service import SearchService, UploadTooLarge, as_int

log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of gives its HTTP status.
ERROR_STATUS: tuple[tuple[type[SketchTextError], int], ...] = (
    (QueryError, 422),  # EmptyQueryError, InvalidSketchError and unknown filter fields
    (CollectionNotFoundError, 404),
    (AssetNotFoundError, 404),
    (IngestBusyError, 409),
    (CatalogError, 422),
    (ModelMismatchError, 409),
    (StoreUnavailableError, 503),
    (ModelUnavailableError, 503),
    (DatabaseError, 503),
)
BROWSER_FORMATS = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
STATIC_TYPES = {"app.js": "text/javascript", "style.css": "text/css"}
THUMB_CACHE_SIZE = 512


def static_text(name: str) -> str:
    return (resources.files("sketchtext.plugin.web") / "static" / name).read_text(encoding="utf-8")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class TokenGate:
    """Requires the bearer token on the page, the API and its schema (and `?token=` on GET requests, for links and
    images); only the page's own static code is open."""

    def __init__(self, app: ASGIApp, token: str, page: str) -> None:
        self.app = app
        self.token = token.encode()
        self.page = page

    def _presented(self, request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value:
            return value.strip()
        return request.query_params.get("token") if request.method in ("GET", "HEAD") else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path in ("/", "/openapi.json") or path.startswith("/api/")):
            await self.app(scope, receive, send)
            return
        presented = self._presented(Request(scope))
        if presented is not None and hmac.compare_digest(presented.encode(), self.token):
            await self.app(scope, receive, send)
            return
        if path == "/":
            response: Response = HTMLResponse(self.page, status_code=401, headers=PAGE_HEADERS)
        else:
            reason = "Wrong token" if presented else "This server needs a token"
            response = error_response(
                401,
                f"{reason}: send 'Authorization: Bearer <token>' (the value of SKETCHTEXT_WEB__TOKEN).",
                {"WWW-Authenticate": "Bearer"},
            )
        await response(scope, receive, send)


def create_app(plugin: SketchTextPlugin, settings: Settings, *, catalog_root: Path | None = None) -> Starlette:
    """The search page and API over `plugin`; photos from `catalog_root` (default: the folder last ingested)."""
    service = SearchService(plugin, settings, catalog_root)
    token = settings.web.token.get_secret_value() if settings.web.token else None
    spec = openapi(token=token is not None)
    page = static_text("index.html")
    assets = {name: static_text(name) for name in STATIC_TYPES}

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            raise HTTPException(404, f"No static file {name!r}.")
        return Response(assets[name], media_type=STATIC_TYPES[name], headers={"Cache-Control": "no-cache"})

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(spec)

    async def facets(request: Request) -> Response:
        return JSONResponse((await run_in_threadpool(service.facets)).model_dump())

    async def search(request: Request) -> Response:
        parsed, sketch = await service.parse_search(request)
        result = await run_in_threadpool(service.search, parsed, sketch)
        return JSONResponse(result.model_dump())

    async def photo(request: Request) -> Response:
        raw_size = request.query_params.get("size")
        size = as_int(raw_size)
        if raw_size is not None and (size is None or not THUMB_SIZES[0] <= size <= THUMB_SIZES[1]):
            raise HTTPException(422, f"size must be an integer from {THUMB_SIZES[0]} to {THUMB_SIZES[1]}.")
        path, version = await run_in_threadpool(service.photo_file, request.path_params["asset_id"])
        etag = f'"{version[:32]}-{size or "full"}"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        if size is None and path.suffix.lower() in BROWSER_FORMATS:
            return FileResponse(path, media_type=BROWSER_FORMATS[path.suffix.lower()], headers=headers)
        data = await run_in_threadpool(service.thumbnail, path, version, size or THUMB_SIZES[1])
        return Response(data, media_type="image/jpeg", headers=headers)

    async def project_error(request: Request, exc: Exception) -> Response:
        status = next((code for cls, code in ERROR_STATUS if isinstance(exc, cls)), 500)
        log.log(logging.WARNING if status >= 500 else logging.INFO, "%s %s: %s", request.method, request.url.path, exc)
        return error_response(status, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        status, detail = getattr(exc, "status_code", 500), getattr(exc, "detail", "")
        return error_response(status, str(detail), dict(getattr(exc, "headers", None) or {}))

    async def too_large(request: Request, exc: Exception) -> Response:
        return error_response(
            413,
            f"The request is larger than the upload limit of {service.max_upload:,} bytes; send a smaller sketch "
            "(or raise SKETCHTEXT_WEB__MAX_UPLOAD_BYTES).",
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "Internal error; the server log has the details.")

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        SketchTextError: project_error,
        HTTPException: http_error,
        UploadTooLarge: too_large,
        Exception: unexpected,
    }
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/static/{name}", static),
            Route("/openapi.json", openapi_json),
            Route("/api/facets", facets),
            Route("/api/search", search, methods=["POST"]),
            Route("/api/photos/{asset_id}", photo),
            *admin_routes(service, IngestJobs(plugin)),
        ],
        exception_handlers=handlers,
    )
    if token:
        app.add_middleware(TokenGate, token=token, page=static_text("token.html"))
    return app
