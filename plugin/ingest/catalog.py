"""The catalog reader: which photos a folder holds and their metadata (sidecar files, folders as categories)."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sketchtext.plugin.db import CATALOG_FIELDS, Asset
from sketchtext.plugin.errors import CatalogError

log = logging.getLogger(__name__)

SIDECAR_NAMES = ("catalog.csv", "catalog.jsonl")


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
    problem: str | None = None  # known before reading: the file is unusable for this reason

    @classmethod
    def from_asset(cls, row: Asset, path: Path) -> CatalogEntry:
        """The entry an asset's SQL row records (the queued driver's workers read entries this way)."""
        return cls(
            key=row.key, path=path, **{name: getattr(row, name) for name in CATALOG_FIELDS}, extra=dict(row.extra or {})
        )

    def catalog_fields(self) -> dict[str, Any]:
        """The catalogue's own fields (`CATALOG_FIELDS`), None where the catalogue gives none."""
        return {name: getattr(self, name) for name in CATALOG_FIELDS}


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


def display_key(relative: str) -> str:
    """A file name as valid text: bytes that are not UTF-8 are shown as \\xNN escapes."""
    return relative.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def scan_catalog(root: Path) -> Iterator[CatalogEntry]:
    """Every file under `root` but the sidecar, sorted, with its sidecar metadata.

    Whether a file is an image is found out by decoding it, so every file ends embedded or failed with a reason.
    Symlinks are followed only while they stay inside the root; the others, and anything that is not a regular
    file, come with a `problem`.
    """
    root = root.expanduser()
    if not root.is_dir():
        raise CatalogError(f"Catalog folder {root} does not exist or is not a folder.")
    real_root = root.resolve()
    sidecar = read_sidecar(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        at_root = Path(dirpath) == root
        for name in sorted(filenames):
            if at_root and name in SIDECAR_NAMES:
                continue
            path = Path(dirpath) / name
            key = display_key(path.relative_to(root).as_posix())
            entry = make_entry(key, path, sidecar.get(key, {}))
            problem = None
            if not path.resolve().is_relative_to(real_root):
                problem = "it is a link that leaves the catalog folder; copy the file into the catalog instead"
            elif not path.is_file():
                problem = "it is not a regular file (a device, pipe, socket or broken link)"
            yield replace(entry, problem=problem) if problem else entry


def make_entry(key: str, path: Path, meta: dict[str, Any]) -> CatalogEntry:
    """An entry from its key and sidecar row; the first-level folder is the category unless the row says otherwise."""
    parts = key.split("/")
    meta = dict(meta)
    known = {name: (str(meta.pop(name)) if name in meta else None) for name in CATALOG_FIELDS}
    if known["category"] is None and len(parts) > 1:
        known["category"] = parts[0]
    return CatalogEntry(key=key, path=path, extra=meta, **known)
