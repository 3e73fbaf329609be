"""The catalog reader: which photos a folder holds, their metadata, and how to decode one safely."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from sketchtext.plugin.errors import CatalogError, ImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
SIDECAR_NAMES = ("catalog.csv", "catalog.jsonl")
# Fields with a column of their own in SQL and Qdrant; every other sidecar field lands in `extra`.
KNOWN_FIELDS = ("sku", "title", "category", "scene", "host_id")
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class CatalogEntry:
    """One photo of a catalog: its key (path relative to the root, forward slashes) and its metadata."""

    key: str
    path: Path
    category: str | None = None
    scene: str | None = None
    sku: str | None = None
    title: str | None = None
    host_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def read_sidecar(root: Path) -> dict[str, dict[str, Any]]:
    """Rows of `catalog.csv` or `catalog.jsonl` at the catalog root, keyed by their `path` column."""
    rows: list[dict[str, Any]] = []
    for name in SIDECAR_NAMES:
        sidecar = root / name
        if not sidecar.is_file():
            continue
        try:
            with sidecar.open(newline="", encoding="utf-8") as fh:
                if name.endswith(".csv"):
                    rows.extend(csv.DictReader(fh))
                else:
                    rows.extend(json.loads(line) for line in fh if line.strip())
        except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
            raise CatalogError(f"Cannot read {sidecar}: {exc}. Fix the file (UTF-8 CSV or JSON lines).") from exc
    by_key: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(rows, start=1):
        key = str(row.get("path") or "").strip().replace("\\", "/")
        if not key:
            raise CatalogError(f"Sidecar row {number} has no 'path'; every row must name a file relative to {root}.")
        if Path(key).is_absolute() or ".." in Path(key).parts:
            raise CatalogError(f"Sidecar row {number} names {key!r}, outside the catalog; use a path inside {root}.")
        by_key[key] = {k: v for k, v in row.items() if k != "path" and v not in (None, "")}
    return by_key


def scan_catalog(root: Path) -> Iterator[CatalogEntry]:
    """Every image file under `root` (sorted, symlinks leaving the root skipped) with its sidecar metadata."""
    root = root.expanduser()
    if not root.is_dir():
        raise CatalogError(f"Catalog folder {root} does not exist or is not a folder.")
    real_root = root.resolve()
    sidecar = read_sidecar(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if not path.resolve().is_relative_to(real_root):
                log.warning("skipping %s: it links outside the catalog root", path)
                continue
            key = path.relative_to(root).as_posix()
            yield make_entry(key, path, sidecar.get(key, {}))


def make_entry(key: str, path: Path, meta: dict[str, Any]) -> CatalogEntry:
    """An entry from its key and sidecar row; the first-level folder is the category unless the row says otherwise."""
    parts = key.split("/")
    meta = dict(meta)
    known = {name: (str(meta.pop(name)) if name in meta else None) for name in KNOWN_FIELDS}
    if known["category"] is None and len(parts) > 1:
        known["category"] = parts[0]
    return CatalogEntry(key=key, path=path, extra=meta, **known)


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image") -> Image.Image:
    """Decode image bytes to an upright RGB image (first frame), refusing bombs and oversized images."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > max_pixels:
                raise ImageError(
                    f"{name} is {image.width}x{image.height} pixels, above the limit of {max_pixels:,}; "
                    "downscale it before ingesting"
                )
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
            return upright.convert("RGB")
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name} is not an image Pillow can read") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name} looks like a decompression bomb: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"{name} cannot be decoded: {exc}") from exc
