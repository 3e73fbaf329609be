"""Queries: what a query holds, how its sketch is read, how its vector is made, and how hits meet their SQL rows."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from PIL import Image

from sketchtext.plugin.errors import EmptyQueryError, ImageError, InvalidSketchError, QueryError
from sketchtext.plugin.images import check_resized_pixels, open_image, to_rgb
from sketchtext.plugin.model.query import COMBINES, MAX_TEXT_CHARS, Combine, QueryInput

if TYPE_CHECKING:
    from qdrant_client import models

    from sketchtext.plugin.db import MetadataDB
    from sketchtext.plugin.store.where import Where

log = logging.getLogger(__name__)
T = TypeVar("T")

SketchInput = Image.Image | bytes | str | os.PathLike[str]
MAX_SKETCH_PIXELS = 16_000_000
MAX_SKETCH_BYTES = 32 * 1024 * 1024
# The largest input side of the supported image towers: a sketch's pixels are capped after a resize to this short
# side, so aspect ratios beyond MAX_SKETCH_PIXELS / SKETCH_FIT_SIDE**2 (79:1) are refused from the header alone.
SKETCH_FIT_SIDE = 448
MAX_QUERY_LIMIT = 10_000
MAX_QUERY_OFFSET = 100_000


@dataclass(frozen=True)
class SketchTextQuery:
    """A search: a sketch (or an asset to find similar ones to), words, filters and a page (checked by `check_query`
    before any work).

    A sketch is a PIL image, bytes, a data URL or base64 `str`, or a file as an `os.PathLike` (`pathlib.Path`):
    a `str` is never read as a path, so a host may forward a user's string safely. `like` is an asset id or key:
    alone, its stored vector is the query (no encoding; the asset itself comes first); with words, its photo takes
    a sketch's place ("like this one, in red"). `where` narrows by any payload field (`plugin.store.where`);
    `offset` and `score_threshold` page through Qdrant's own parameters."""

    sketch: SketchInput | None = None
    text: str | None = None
    category: str | Sequence[str] | None = None
    scene: str | Sequence[str] | None = None
    filters: models.Filter | None = None
    limit: int = 10
    combine: Combine | None = None  # sketch + text: None = the checkpoint's measured best (zero-shot: sum)
    regions: bool = False  # rerank the best candidates by the photos' regions (a collection ingested with regions)
    like: str | uuid.UUID | None = None
    where: Where | None = None
    offset: int = 0
    score_threshold: float | None = None

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
    """Read a sketch given as a PIL image, bytes, a data URL or base64 `str`, or a file path (`os.PathLike` only)."""
    if isinstance(value, Image.Image):
        return image_sketch(value)
    if isinstance(value, os.PathLike):
        value = read_sketch_file(Path(value))
    elif isinstance(value, str):
        value = decode_text_sketch(value)
    elif not isinstance(value, bytes | bytearray):
        raise InvalidSketchError(
            f"The sketch is a {type(value).__name__}; give a PIL image, bytes, a data URL, or a pathlib.Path."
        )
    if len(value) > MAX_SKETCH_BYTES:
        raise InvalidSketchError(f"The sketch is {len(value):,} bytes, above {MAX_SKETCH_BYTES:,}; send a smaller PNG.")
    try:
        return open_image(bytes(value), max_pixels=MAX_SKETCH_PIXELS, name="the sketch", fit_side=SKETCH_FIT_SIDE)
    except ImageError as exc:
        raise InvalidSketchError(f"{exc}; send a PNG or JPEG drawing.") from exc


def decode_text_sketch(value: str) -> bytes:
    """The bytes of a sketch sent as text: a `data:image/...;base64,` URL or bare base64 (never a file path)."""
    header, comma, encoded = value.partition(",")
    if value.startswith("data:") and (not comma or ";base64" not in header):
        raise InvalidSketchError("The sketch data URL is not base64; send data:image/png;base64,....")
    try:
        return base64.b64decode(encoded if value.startswith("data:") else value, validate=True)
    except (binascii.Error, ValueError) as exc:
        if value.startswith("data:"):
            raise InvalidSketchError("The sketch data URL has invalid base64; re-encode the image.") from exc
        raise InvalidSketchError(
            "A str sketch must be a data:image/...;base64 URL or base64 text; re-encode the image, or pass a file "
            "as pathlib.Path (a str is never read as a path)."
        ) from exc


def read_sketch_file(path: Path) -> bytes:
    """A sketch file's bytes: a regular file of at most MAX_SKETCH_BYTES (never a device or a pipe)."""
    path = path.expanduser()
    try:
        if not path.is_file():
            raise InvalidSketchError(f"Sketch file {path} does not exist or is not a regular file.")
        with path.open("rb") as fh:
            data = fh.read(MAX_SKETCH_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise InvalidSketchError(f"Cannot read sketch file {path}: {getattr(exc, 'strerror', None) or exc}.") from exc
    return data


def image_sketch(image: Image.Image) -> Image.Image:
    """A PIL sketch as RGB, with the limits a decoded one gets (no empty image, pixels capped after the resize)."""
    if image.width < 1 or image.height < 1:
        raise InvalidSketchError(f"The sketch is {image.width}x{image.height} pixels; draw on a non-empty canvas.")
    try:
        if image.width * image.height > MAX_SKETCH_PIXELS:
            raise ImageError(f"the sketch is {image.width}x{image.height} pixels, above {MAX_SKETCH_PIXELS:,}")
        check_resized_pixels("the sketch", image.size, SKETCH_FIT_SIDE, MAX_SKETCH_PIXELS)
        return to_rgb(image)
    except Exception as exc:  # a mode Pillow cannot convert, and the limits above
        raise InvalidSketchError(f"{exc}; send an RGB or greyscale drawing.") from exc


def check_query(query: SketchTextQuery) -> None:
    """Refuse a malformed query with a `QueryError` that names the field; every field, before any work."""
    limit = query.limit
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise QueryError(f"limit must be a whole number, got {type(limit).__name__} {limit!r}.")
    if limit < 1:
        raise QueryError(f"limit must be at least 1, got {limit}.")
    if limit > MAX_QUERY_LIMIT:
        raise QueryError(f"limit must be at most {MAX_QUERY_LIMIT:,}, got {limit}; page with a smaller limit.")
    if query.text is not None and not isinstance(query.text, str):
        raise QueryError(f"text must be a str, got {type(query.text).__name__}.")
    for name in ("category", "scene"):
        values = getattr(query, name)
        if values is None:
            continue
        listed = [values] if isinstance(values, str) else values
        if not isinstance(listed, Sequence) or not all(isinstance(v, str) for v in listed):
            raise QueryError(f"{name} must be a str or a list of str, got {values!r}.")
        if not listed:
            raise QueryError(f"{name} is an empty list, which would match nothing; leave it out to match all.")
    if not isinstance(query.regions, bool):
        raise QueryError(f"regions must be True or False, got {query.regions!r}.")
    if query.combine is not None and query.combine not in COMBINES:
        raise QueryError(f"combine must be one of {', '.join(COMBINES)}, got {query.combine!r}.")
    check_page(query)


def check_page(query: SketchTextQuery) -> None:
    """Refuse a malformed `like`, `offset` or `score_threshold`."""
    if query.like is not None:
        if not isinstance(query.like, str | uuid.UUID) or not str(query.like).strip():
            raise QueryError(f"like must be an asset id or key, got {query.like!r}.")
        if query.sketch is not None:
            raise QueryError("Give a sketch or an asset to find similar ones to (like), not both.")
    if query.regions and (query.offset or query.score_threshold is not None):
        raise QueryError(
            "offset and score_threshold do not apply to a regions query (it reranks its best candidates); "
            "raise the limit instead, or search without regions."
        )
    offset = query.offset
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_QUERY_OFFSET:
        raise QueryError(f"offset must be a whole number from 0 to {MAX_QUERY_OFFSET:,}, got {offset!r}.")
    threshold = query.score_threshold
    if threshold is not None and (
        not isinstance(threshold, int | float) or isinstance(threshold, bool) or not -1 <= threshold <= 1
    ):
        raise QueryError(f"score_threshold must be a number from -1 to 1 (cosine similarity), got {threshold!r}.")


def check_context(query: SketchTextQuery, known: dict[str, list[str]]) -> None:
    """Refuse categories and scenes the collection does not have, naming the ones it has (`MetadataDB.facets`)."""
    check_query(query)
    for name, plural in (("category", "categories"), ("scene", "scenes")):
        value = getattr(query, name)
        values = [value] if isinstance(value, str) else value or []
        unknown = [v for v in values if v not in known[plural]]
        if unknown:
            choices = ", ".join(known[plural]) or "none yet: ingest a catalog first"
            raise QueryError(f"Unknown {name} {unknown[0]!r}; the collection has: {choices}.")


def is_blank(image: Image.Image) -> bool:
    """True when an image has a single colour (an empty canvas)."""
    extrema = cast(tuple[tuple[float, float], ...], image.getextrema())  # per band, as the image is RGB
    return all(low == high for low, high in extrema)


def prepare_inputs(query: SketchTextQuery) -> QueryInput:
    """The usable sketch and text of a query; a blank canvas counts as no sketch."""
    check_query(query)
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


def each_query(queries: Sequence[SketchTextQuery], step: Callable[[SketchTextQuery], T]) -> list[T]:
    """`step` over every query; in a batch of several, a refused query's error names its index."""
    done = []
    for index, query in enumerate(queries):
        try:
            done.append(step(query))
        except QueryError as exc:
            if len(queries) == 1:
                raise
            raise type(exc)(f"Query {index} of the batch: {exc}") from exc
    return done


def asset_file(root: Path, key: str) -> Path | None:
    """An asset's photo under the catalogue folder; None when it is gone or its key leads outside the folder."""
    base = root.resolve()
    path = (base / key).resolve()
    return path if path.is_relative_to(base) and path.is_file() else None


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
