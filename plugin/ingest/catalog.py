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
    def from_asset(cls, row: Asset, path: Path, problem: str | None = None) -> CatalogEntry:
        """The entry an asset's SQL row records (the queued driver's workers read entries this way)."""
        fields = {name: getattr(row, name) for name in CATALOG_FIELDS}
        return cls(key=row.key, path=path, **fields, extra=dict(row.extra or {}), problem=problem)

    def catalog_fields(self) -> dict[str, Any]:
        """The catalogue's own fields (`CATALOG_FIELDS`), None where the catalogue gives none."""
        return {name: getattr(self, name) for name in CATALOG_FIELDS}


def sidecar_rows(sidecar: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number in the file, row) for each row of a CSV (with a header) or JSON-lines sidecar."""
    with sidecar.open(newline="", encoding="utf-8") as fh:
        if sidecar.suffix == ".csv":
            reader = csv.DictReader(fh, strict=True)  # strict: an unclosed quote is an error, not a swallowed file
            line = 1
            try:
                for row in reader:
                    yield line + 1, row
                    line = reader.line_num
            except csv.Error as exc:
                raise CatalogError(
                    f"Cannot read {sidecar}, line {line + 1}: {exc} (an unclosed quote?). Fix the file (UTF-8 CSV)."
                ) from exc
            return
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CatalogError(f"Cannot read {sidecar}, line {number}: {exc}. Fix the file (JSON lines).") from exc
            yield number, row


def read_sidecar(root: Path) -> dict[str, dict[str, Any]]:
    """Rows of `catalog.csv` or `catalog.jsonl` at the catalog root, keyed by their `path` column."""
    by_key: dict[str, dict[str, Any]] = {}
    for name in SIDECAR_NAMES:
        sidecar = root / name
        if not sidecar.is_file():
            continue
        try:
            for number, row in sidecar_rows(sidecar):
                key = str(row.get("path") or "").strip().replace("\\", "/")
                where = f"{name} line {number}"
                if not key:
                    raise CatalogError(f"{where} has no 'path'; every row must name a file relative to {root}.")
                if Path(key).is_absolute() or ".." in Path(key).parts:
                    raise CatalogError(f"{where} names {key!r}, outside the catalog; use a path inside {root}.")
                by_key[key] = {k: v for k, v in row.items() if k != "path" and v not in (None, "")}
        except UnicodeDecodeError as exc:
            raise CatalogError(f"Cannot read {sidecar}: {exc}. Fix the file (UTF-8 CSV or JSON lines).") from exc
    return by_key


def catalog_entries(root: Path) -> list[CatalogEntry]:
    """`scan_catalog` as a list; an empty folder is an error (there is nothing to ingest)."""
    entries = list(scan_catalog(root))
    if not entries:
        raise CatalogError(
            f"No files under {root.expanduser()}: nothing to ingest. Put the photos there (first-level folders are "
            "categories), or check the path."
        )
    return entries


def display_key(relative: str) -> str:
    """A file name as valid text: bytes that are not UTF-8 are shown as \\xNN escapes."""
    return relative.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def scan_catalog(root: Path) -> Iterator[CatalogEntry]:
    """Every file under `root` but the sidecar, sorted, with its sidecar metadata.

    Whether a file is an image is found out by decoding it, so every file ends embedded or failed with a reason.
    Symlinks are followed only while they stay inside the root; the others, and anything that is not a regular
    file, come with a `problem` (`file_problem`). A link to a folder is not walked (its files inside the root are
    found under their own paths); one that leaves the root is an entry with a problem, so it is reported.
    """
    root = root.expanduser()
    if not root.is_dir():
        raise CatalogError(f"Catalog folder {root} does not exist or is not a folder.")
    real_root = root.resolve()
    sidecar = read_sidecar(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        at_root = Path(dirpath) == root
        linked = [name for name in dirnames if (Path(dirpath) / name).is_symlink()]
        for name in sorted(filenames + linked):
            if at_root and name in SIDECAR_NAMES:
                continue
            path = Path(dirpath) / name
            if name in linked and path.resolve().is_relative_to(real_root):
                log.debug("not walking %s: a link to a folder inside the catalog, walked under its own path", path)
                continue
            key = display_key(path.relative_to(root).as_posix())
            entry = make_entry(key, path, sidecar.get(key, {}))
            problem = file_problem(path, real_root)
            yield replace(entry, problem=problem) if problem else entry


def file_problem(path: Path, real_root: Path) -> str | None:
    """Why `path` must not be read as a catalog file (a link leaving `real_root`, not a regular file), or None.

    The one file check of both ingest drivers: the inline scan and the workers of a queued run."""
    if not path.resolve().is_relative_to(real_root):
        kind = "folder" if path.is_dir() else "file"
        return f"it is a link that leaves the catalog folder; copy the {kind} into the catalog instead"
    if not path.is_file():
        return "it is not a regular file (a device, pipe, socket or broken link)"
    return None


def make_entry(key: str, path: Path, meta: dict[str, Any]) -> CatalogEntry:
    """An entry from its key and sidecar row; the first-level folder is the category unless the row says otherwise."""
    parts = key.split("/")
    meta = dict(meta)
    known = {name: (str(meta.pop(name)) if name in meta else None) for name in CATALOG_FIELDS}
    if known["category"] is None and len(parts) > 1:
        known["category"] = parts[0]
    return CatalogEntry(key=key, path=path, extra=meta, **known)
