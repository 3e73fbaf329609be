"""The web API's request and response bodies (pydantic) and the OpenAPI description built from them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema

MAX_LIMIT = 100
MAX_FILTER_VALUES = 50
THUMB_SIZES = (32, 1024)  # smallest and largest thumbnail side in pixels

FilterValues = str | list[str] | None
WhereScalar = str | int | float | bool
WhereValue = WhereScalar | list[WhereScalar] | dict[str, float]
MAX_OFFSET = 10_000


class SearchRequest(BaseModel):
    """A search: a sketch, words, or both, with optional category and scene filters."""

    model_config = ConfigDict(extra="forbid")

    sketch: str | None = Field(
        None,
        description="The drawing as a data URL: data:image/png;base64,... (multipart: a file part instead).",
        pattern=r"^data:image/",
    )
    text: str | None = Field(None, description="Words for what the sketch cannot show (colour, material, scene).")
    category: str | list[str] | None = Field(
        None, description="Only this category, or any of these.", max_length=MAX_FILTER_VALUES
    )
    scene: str | list[str] | None = Field(
        None, description="Only this scene, or any of these.", max_length=MAX_FILTER_VALUES
    )
    limit: int = Field(24, ge=1, le=MAX_LIMIT, description="How many hits to return.")
    like: str | None = Field(
        None,
        description="Find similar to this asset (an asset_id or key from a hit): its stored vector, or with text its "
        "photo in the sketch's place. Not with a sketch.",
        max_length=4096,
    )
    where: dict[str, WhereValue] | None = Field(
        None,
        description='Any payload field: {"brand": "acme", "extra.season": ["winter", "autumn"], "price": {"gte": 10, '
        '"lt": 50}}; unknown fields and values are refused with the valid ones listed.',
        max_length=MAX_FILTER_VALUES,
    )
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Hits to skip (the next page: offset = hits shown).")
    score_threshold: float | None = Field(None, ge=-1, le=1, description="Only hits scoring at least this (cosine).")
    regions: bool = Field(
        False,
        description="Rerank the best candidates by the photos' regions (a collection ingested with regions: "
        "/api/facets says); not with offset or score_threshold.",
    )


class Hit(BaseModel):
    id: str = Field(description="The Qdrant point id.")
    asset_id: str | None = Field(description="The asset id, for /api/photos/{asset_id}; null without a SQL row.")
    score: float
    key: str | None = Field(description="The photo's path relative to the catalog folder.")
    sku: str | None
    title: str | None
    category: str | None
    scene: str | None
    thumb_url: str | None
    photo_url: str | None


class SearchResponse(BaseModel):
    hits: list[Hit]
    took_ms: float = Field(description="Server time for the search, in milliseconds.")


class Facets(BaseModel):
    collection: str
    assets: int = Field(description="Embedded assets in the collection.")
    categories: list[str]
    scenes: list[str]
    regions: bool = Field(description="Whether the collection holds photo regions, for searches with regions.")


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong and what to do about it.")


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line from pydantic's errors: unknown fields name the valid ones."""
    fields = ", ".join(SearchRequest.model_fields)
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"] if not isinstance(p, int) or len(error["loc"]) > 1)
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r} (valid fields: {fields})")
        elif error["type"] == "string_pattern_mismatch" and error["loc"][:1] == ("sketch",):
            parts.append("sketch must be a data URL such as data:image/png;base64,<data>")
        else:
            parts.append(f"{where or 'body'}: {error['msg']}")
    return "Invalid search request: " + "; ".join(dict.fromkeys(parts)) + "."


def openapi(*, token: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the API, with bearer security when a token is set."""
    models: list[tuple[type[BaseModel], Any]] = [
        (SearchRequest, "validation"),
        (SearchResponse, "serialization"),
        (Facets, "serialization"),
        (ErrorBody, "serialization"),
    ]
    _, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas = top["$defs"]

    def ref(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def body(description: str, schema: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}

    def error(description: str) -> dict[str, Any]:
        return body(description, "ErrorBody")

    common = {"401": error("Missing or wrong token.")} if token else {}
    unavailable = {"503": error("Qdrant or the database cannot be reached.")}
    multipart = {
        "type": "object",
        "properties": {
            "sketch": {"type": "string", "format": "binary", "description": "A PNG or JPEG drawing."},
            "text": {"type": "string"},
            "category": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_FILTER_VALUES},
            "scene": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_FILTER_VALUES},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 24},
            "like": {"type": "string"},
            "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
            "score_threshold": {"type": "number", "minimum": -1, "maximum": 1},
        },
        "additionalProperties": False,
    }
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sketchtext search",
            "version": "1",
            "description": "Sketch + text search over one collection; photos by asset id.",
        },
        "paths": {
            "/api/search": {
                "post": {
                    "operationId": "search",
                    "summary": "Search with a sketch, words, or both; hits best first.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": ref("SearchRequest")},
                            "multipart/form-data": {"schema": multipart},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Hits",
                            "content": {"application/json": {"schema": ref("SearchResponse")}},
                        },
                        "400": error("The body is not JSON or form data."),
                        "404": error("The collection does not exist yet."),
                        "409": error("The collection was filled by another model."),
                        "413": error("The request body is larger than the upload limit."),
                        "415": error("Neither JSON nor multipart form data."),
                        "422": error("Empty query, unreadable sketch, unknown field or filter value."),
                        **common,
                        **unavailable,
                    },
                }
            },
            "/api/facets": {
                "get": {
                    "operationId": "facets",
                    "summary": "The categories and scenes of the collection's embedded assets.",
                    "responses": {
                        "200": body("Filter values.", "Facets"),
                        **common,
                        **unavailable,
                    },
                }
            },
            "/api/photos/{asset_id}": {
                "get": {
                    "operationId": "photo",
                    "summary": "An asset's photo from the catalog folder, or a JPEG thumbnail of it.",
                    "parameters": [
                        {"name": "asset_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        {
                            "name": "size",
                            "in": "query",
                            "required": False,
                            "description": "Longest side of a JPEG thumbnail; the original file when absent.",
                            "schema": {"type": "integer", "minimum": THUMB_SIZES[0], "maximum": THUMB_SIZES[1]},
                        },
                    ],
                    "responses": {
                        "200": {"description": "The image", "content": {"image/*": {}}},
                        "304": {"description": "Not modified (If-None-Match)."},
                        "404": error("No such asset, or its file is gone."),
                        "422": error("A bad size."),
                        **common,
                        **unavailable,
                    },
                }
            },
        },
        "components": {"schemas": schemas},
    }
    if token:
        spec["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "query": {"type": "apiKey", "in": "query", "name": "token", "description": "For <img> and links."},
        }
        spec["security"] = [{"bearer": []}]
        spec["paths"]["/api/photos/{asset_id}"]["get"]["security"] = [{"bearer": []}, {"query": []}]
    return spec
