"""The files of a generated world, read into plain tables for pretraining and probes (no generator objects).

Reads the layout documented in `sketchtext.plugin.miniature.world`: `catalog/catalog.csv` (photos with shape, category,
colourway and split), `captions.csv`, `pairs.csv`, `queries.csv` and `shapes.csv`. Any world laid out the same
way works. Paths in the returned tables are relative to the world folder.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sketchtext.plugin.errors import ConfigError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Photo:
    """One catalogue photo and what it shows."""

    path: str
    shape: str
    category: str
    colour: str
    colour2: str
    pattern: str
    split: str

    @property
    def colourway(self) -> tuple[str, str, str]:
        return (self.colour, self.pattern, self.colour2)


@dataclass(frozen=True)
class WorldFiles:
    """A world's tables; `photos` / `sketches` map a path to its record or shape."""

    root: Path
    photos: dict[str, Photo]
    sketches: dict[str, str]  # sketch path -> shape
    captions: list[tuple[str, str, str, str]]  # (image path, caption, split, kind)
    shapes: dict[str, dict[str, str]]  # shape -> row of shapes.csv
    queries: list[dict[str, str]]

    def photos_of(self, split: str) -> list[Photo]:
        return [p for p in self.photos.values() if p.split == split]

    def sketches_of(self, split: str) -> list[tuple[str, str]]:
        return [(s, shape) for s, shape in self.sketches.items() if self.shapes[shape]["split"] == split]

    def shape_groups(self, split: str) -> dict[str, tuple[list[str], list[str]]]:
        """shape -> (its photos, its sketches) for the shapes of one split."""
        groups: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        for p in self.photos_of(split):
            groups[p.shape][0].append(p.path)
        for s, shape in self.sketches_of(split):
            groups[shape][1].append(s)
        return dict(groups)


def _read(path: Path, required: set[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise ConfigError(f"{path} is missing; generate a world with `sketchtext generate DIR` or point at one.")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = required - set(rows[0] if rows else required)
    if missing:
        raise ConfigError(
            f"{path} lacks columns {sorted(missing)}; see the layout in sketchtext.plugin.miniature.world"
        )
    return rows


def read_world(root: str | Path) -> WorldFiles:
    """Read a world folder's CSVs.

    Raises:
        ConfigError: a file or column of the layout is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"World folder {root} does not exist; create one with `sketchtext generate {root}`.")
    cols = {"path", "shape", "category", "colour", "colour2", "pattern", "split"}
    photos = {
        f"catalog/{r['path']}": Photo(
            f"catalog/{r['path']}", r["shape"], r["category"], r["colour"], r["colour2"], r["pattern"], r["split"]
        )
        for r in _read(root / "catalog" / "catalog.csv", cols)
    }
    shapes = {r["shape"]: r for r in _read(root / "shapes.csv", {"shape", "category", "split", "description"})}
    sketches = {
        r["sketch"]: photos[r["photo"]].shape
        for r in _read(root / "pairs.csv", {"sketch", "photo", "split"})
        if r["photo"] in photos
    }
    captions = [
        (r["photo"], r["caption"], r["split"], r.get("kind") or "photo")
        for r in _read(root / "captions.csv", {"photo", "caption", "split"})
    ]
    queries = _read(root / "queries.csv", {"sketch", "text", "target", "split"})
    return WorldFiles(root, photos, sketches, captions, shapes, queries)
