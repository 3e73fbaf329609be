"""Queries: what a query holds, how its sketch is read, how its vector is made, and how hits meet their SQL rows."""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from PIL import Image

from sketchtext.plugin.errors import EmptyQueryError, ImageError, InvalidSketchError, QueryError
from sketchtext.plugin.images import open_image
from sketchtext.plugin.model.query import MAX_TEXT_CHARS, Combine, QueryInput

if TYPE_CHECKING:
    from qdrant_client import models

    from sketchtext.plugin.db import MetadataDB

log = logging.getLogger(__name__)

SketchInput = Image.Image | bytes | str | Path
MAX_SKETCH_PIXELS = 16_000_000


@dataclass(frozen=True)
class SketchTextQuery:
    """A search: a sketch (PIL image, bytes, path or base64 data URL), words, context filters and a limit."""

    sketch: SketchInput | None = None
    text: str | None = None
    category: str | Sequence[str] | None = None
    scene: str | Sequence[str] | None = None
    filters: models.Filter | None = None
    limit: int = 10
    combine: Combine | None = None  # sketch + text: None = the checkpoint's measured best (zero-shot: sum)

    def context(self) -> dict[str, Any]:
        return {"category": self.category, "scene": self.scene}


@dataclass(frozen=True)
class SearchHit:
    """One result: the point's id and score, its payload, and its SQL metadata row (None if it has none)."""

    id: str | int | uuid.UUID
    score: float
    key: str | None
    payload: dict[str, Any]
    asset: dict[str, Any] | None = field(default=None)


def load_sketch(value: SketchInput) -> Image.Image:
    """Read a sketch given as a PIL image, raw bytes, a file path or a `data:image/...;base64,` URL."""
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, str) and value.startswith("data:"):
        header, _, encoded = value.partition(",")
        if ";base64" not in header:
            raise InvalidSketchError("The sketch data URL is not base64; send data:image/png;base64,....")
        try:
            value = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidSketchError("The sketch data URL has invalid base64; re-encode the image.") from exc
    if isinstance(value, str | Path):
        path = Path(value).expanduser()
        try:
            value = path.read_bytes()
        except OSError as exc:
            raise InvalidSketchError(f"Cannot read sketch file {path}: {exc.strerror or exc}.") from exc
    try:
        return open_image(value, max_pixels=MAX_SKETCH_PIXELS, name="the sketch")
    except ImageError as exc:
        raise InvalidSketchError(f"{exc}; send a PNG or JPEG drawing.") from exc


def is_blank(image: Image.Image) -> bool:
    """True when an image has a single colour (an empty canvas)."""
    extrema = cast(tuple[tuple[float, float], ...], image.getextrema())  # per band, as the image is RGB
    return all(low == high for low, high in extrema)


def prepare_inputs(query: SketchTextQuery) -> QueryInput:
    """The usable sketch and text of a query; a blank canvas counts as no sketch."""
    if query.limit < 1:
        raise QueryError(f"limit must be at least 1, got {query.limit}.")
    sketch = load_sketch(query.sketch) if query.sketch is not None else None
    text = query.text.strip() if query.text else None
    if text and len(text) > MAX_TEXT_CHARS:
        log.warning("query text of %d characters cut to %d (CLIP reads ~77 tokens)", len(text), MAX_TEXT_CHARS)
        text = text[:MAX_TEXT_CHARS]
    if sketch is not None and is_blank(sketch):
        if not text:
            raise EmptyQueryError("The sketch is blank and there is no text; draw something or type a few words.")
        log.warning("ignoring a blank sketch; searching by text alone")
        sketch = None
    if sketch is None and not text:
        raise EmptyQueryError("The query has neither a sketch nor text; give at least one.")
    return sketch, text or None


def join_hits(
    points: Sequence[models.ScoredPoint],
    db: MetadataDB | None,
    collection: str,
    own_payload: Callable[[dict[str, Any] | None], dict[str, Any]] = lambda p: dict(p or {}),
) -> list[SearchHit]:
    """Hits in score order, each with its SQL row (one query for all of them), matched by asset key."""
    keys = [own_payload(point.payload).get("key") for point in points]
    rows = db.assets_by_key(collection, [k for k in keys if k]) if db is not None and any(keys) else {}
    return [
        SearchHit(
            id=point.id,
            score=float(point.score),
            key=key,
            payload=dict(point.payload or {}),
            asset=rows[key].as_dict() if key in rows else None,
        )
        for point, key in zip(points, keys, strict=True)
    ]
