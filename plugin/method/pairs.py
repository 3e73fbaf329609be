"""Sketch–photo pair sets for training and evaluation, and text query files for composed evaluation.

Layouts read from a data folder:
- `pairs.csv` with columns `sketch, photo, split` (paths relative to the CSV's folder; split train/val/test);
- QMUL ShoeV2/ChairV2 as distributed for FG-SBIR: `trainA/ testA/` (sketches) and `trainB/ testB/` (photos);
- QMUL ShoeV2/ChairV2 original: a `*photo/` and a `*sketch/` folder with `photo_train.txt` / `photo_test.txt`
  (and optionally `sketch_train.txt` / `sketch_test.txt`) listing file names.
A sketch is named after its photo: `<photo stem>_<n>.png` (or the photo's own stem).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import random
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sketchtext.plugin.errors import DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"training": "train", "valid": "val", "validation": "val", "dev": "val", "testing": "test"}
SKETCH_NUMBER = re.compile(r"^(?P<photo>.+)_\d+$")


@dataclass(frozen=True)
class SketchPhotoPair:
    """A sketch, the photo it was drawn from, and its split."""

    sketch: Path
    photo: Path
    split: str


@dataclass(frozen=True)
class TextQuery:
    """A composed query for evaluation: a sketch, words for what it lacks, and the photo it should find."""

    sketch: Path
    text: str
    target: Path
    split: str | None = None


@dataclass(frozen=True)
class PairSet:
    """The pairs of a data folder, with the layout they were read from."""

    root: Path
    layout: str
    pairs: tuple[SketchPhotoPair, ...]

    def split(self, name: str) -> list[SketchPhotoPair]:
        """The pairs of one split; an empty split is an error that names the fix."""
        chosen = [p for p in self.pairs if p.split == name]
        if not chosen:
            raise DatasetError(
                f"The {self.layout} data in {self.root} has no {name!r} pairs (it has {self.counts()}); "
                f"add {name} pairs or choose another split."
            )
        return chosen

    def counts(self) -> dict[str, int]:
        return {s: sum(p.split == s for p in self.pairs) for s in SPLITS if any(p.split == s for p in self.pairs)}

    def has(self, name: str) -> bool:
        return any(p.split == name for p in self.pairs)

    def fingerprint(self) -> str:
        """A hash of every pair's relative paths, split and file contents: what the model was trained on."""
        digest = hashlib.sha256()
        for pair in sorted(self.pairs, key=lambda p: (p.split, str(p.sketch), str(p.photo))):
            for path in (pair.sketch, pair.photo):
                digest.update(f"{relative(path, self.root)}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            digest.update(f"{pair.split}\n".encode())
        return f"sha256:{digest.hexdigest()[:16]}"


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def normalise_split(value: str, where: str) -> str:
    split = SPLIT_ALIASES.get(value.strip().lower(), value.strip().lower())
    if split not in SPLITS:
        raise DatasetError(f"{where}: split {value!r} is not one of {', '.join(SPLITS)}.")
    return split


def photos(pairs: Iterable[SketchPhotoPair]) -> list[Path]:
    """The distinct photos of some pairs, sorted: a gallery."""
    return sorted({p.photo for p in pairs})


def load_pairs(root: Path) -> PairSet:
    """Read a data folder (or a `pairs.csv` file) in whichever supported layout it has."""
    root = root.expanduser()
    if root.is_file() and root.suffix.lower() == ".csv":
        return read_pairs_csv(root)
    if not root.is_dir():
        raise DatasetError(f"Data folder {root} does not exist; pass a folder with pairs.csv or the QMUL layout.")
    if (root / "pairs.csv").is_file():
        return read_pairs_csv(root / "pairs.csv")
    if (root / "trainA").is_dir() or (root / "testA").is_dir():
        return read_qmul_ab(root)
    if list(root.glob("photo_*.txt")):
        return read_qmul_lists(root)
    raise DatasetError(
        f"{root} has no pairs.csv, no trainA/trainB/testA/testB folders and no photo_train.txt / photo_test.txt; "
        "write a pairs.csv with columns sketch,photo,split (paths relative to it)."
    )


def read_pairs_csv(path: Path) -> PairSet:
    base = path.parent
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"Cannot read {path}: {exc}. Write a UTF-8 CSV with columns sketch,photo,split.") from exc
    if rows and not {"sketch", "photo", "split"} <= set(rows[0]):
        raise DatasetError(f"{path} has columns {sorted(rows[0])}; it needs sketch, photo and split.")
    pairs = [
        SketchPhotoPair(
            base / row["sketch"].strip(), base / row["photo"].strip(), normalise_split(row["split"], f"{path} row {n}")
        )
        for n, row in enumerate(rows, start=2)
    ]
    check_files(path, [p.sketch for p in pairs] + [p.photo for p in pairs])
    if not pairs:
        raise DatasetError(f"{path} has no rows; add one row per sketch: sketch,photo,split.")
    return PairSet(base, "pairs.csv", tuple(pairs))


def check_files(source: Path, paths: Sequence[Path]) -> None:
    missing = sorted({str(p) for p in paths if not p.is_file()})
    if missing:
        raise DatasetError(
            f"{len(missing)} file(s) named by {source} do not exist, e.g. {', '.join(missing[:3])}; "
            "fix the paths (they are relative to the file's folder)."
        )


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def photo_stem_of(sketch: Path, stems: set[str]) -> str | None:
    """The photo a sketch was drawn from: its own stem, or its stem without a trailing `_<n>`."""
    if sketch.stem in stems:
        return sketch.stem
    match = SKETCH_NUMBER.match(sketch.stem)
    return match["photo"] if match and match["photo"] in stems else None


def match_sketches(
    sketches: Sequence[Path], photo_files: Sequence[Path], split: str, where: Path
) -> list[SketchPhotoPair]:
    by_stem = {p.stem: p for p in photo_files}
    pairs, orphans = [], []
    for sketch in sketches:
        stem = photo_stem_of(sketch, set(by_stem))
        if stem is None:
            orphans.append(sketch.name)
        else:
            pairs.append(SketchPhotoPair(sketch, by_stem[stem], split))
    if orphans:
        log.warning("%d sketch(es) in %s match no photo and are skipped, e.g. %s", len(orphans), where, orphans[:3])
    return pairs


def read_qmul_ab(root: Path) -> PairSet:
    pairs: list[SketchPhotoPair] = []
    for split in ("train", "test"):
        sketches, photo_dir = root / f"{split}A", root / f"{split}B"
        if not sketches.is_dir():
            continue
        if not photo_dir.is_dir():
            raise DatasetError(f"{sketches} has no photo folder {photo_dir}; QMUL pairs need {split}A and {split}B.")
        pairs += match_sketches(images_in(sketches), images_in(photo_dir), split, sketches)
    if not pairs:
        raise DatasetError(f"No sketch in {root}/trainA or testA is named after a photo in trainB/testB.")
    return PairSet(root, "qmul", tuple(pairs))


def read_list(path: Path) -> set[str]:
    return {Path(line.strip()).stem for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def read_qmul_lists(root: Path) -> PairSet:
    photo_dirs = [p for p in root.iterdir() if p.is_dir() and p.name.lower().endswith("photo")]
    sketch_dirs = [p for p in root.iterdir() if p.is_dir() and p.name.lower().endswith("sketch")]
    if len(photo_dirs) != 1 or len(sketch_dirs) != 1:
        raise DatasetError(
            f"{root} has photo_*.txt lists but not exactly one *photo and one *sketch folder "
            f"(found {[p.name for p in photo_dirs + sketch_dirs]}); use the QMUL layout or a pairs.csv."
        )
    all_photos, all_sketches = images_in(photo_dirs[0]), images_in(sketch_dirs[0])
    pairs: list[SketchPhotoPair] = []
    for split in ("train", "test"):
        listed = root / f"photo_{split}.txt"
        if not listed.is_file():
            continue
        stems = read_list(listed)
        split_photos = [p for p in all_photos if p.stem in stems]
        sketch_list = root / f"sketch_{split}.txt"
        sketch_stems = read_list(sketch_list) if sketch_list.is_file() else None
        sketches = [s for s in all_sketches if sketch_stems is None or s.stem in sketch_stems]
        if sketch_stems is None:
            sketches = [s for s in sketches if photo_stem_of(s, stems) is not None]
        pairs += match_sketches(sketches, split_photos, split, sketch_dirs[0])
    if not pairs:
        raise DatasetError(f"No sketch in {sketch_dirs[0]} matches a photo listed in {root}/photo_*.txt.")
    return PairSet(root, "qmul", tuple(pairs))


def hold_out(
    pairs: Sequence[SketchPhotoPair], fraction: float, seed: int
) -> tuple[list[SketchPhotoPair], list[SketchPhotoPair]]:
    """Split training pairs by photo into (train, val) when the data has no val split; all sketches of a photo
    stay on one side."""
    gallery = photos(pairs)
    if len(gallery) < 4 or fraction <= 0:
        raise DatasetError(
            f"Cannot hold out a validation split from {len(gallery)} training photo(s); "
            "add val pairs to the data or at least 4 training photos."
        )
    count = min(max(2, round(len(gallery) * fraction)), len(gallery) - 2)
    held = set(random.Random(seed).sample(gallery, count))
    train = [p for p in pairs if p.photo not in held]
    val = [SketchPhotoPair(p.sketch, p.photo, "val") for p in pairs if p.photo in held]
    return train, val


def load_queries(path: Path) -> list[TextQuery]:
    """A queries CSV (`sketch, text, target[, split]`; paths relative to its folder)."""
    path = path.expanduser()
    if not path.is_file():
        raise DatasetError(f"Queries file {path} does not exist; write a CSV with columns sketch,text,target[,split].")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"Cannot read {path}: {exc}. Write a UTF-8 CSV with columns sketch,text,target.") from exc
    if not rows:
        raise DatasetError(f"{path} has no queries; add rows of sketch,text,target.")
    if not {"sketch", "text", "target"} <= set(rows[0]):
        raise DatasetError(f"{path} has columns {sorted(rows[0])}; it needs sketch, text and target.")
    base = path.parent
    queries = [
        TextQuery(
            base / row["sketch"].strip(),
            row["text"].strip(),
            base / row["target"].strip(),
            normalise_split(row["split"], f"{path} row {n}") if (row.get("split") or "").strip() else None,
        )
        for n, row in enumerate(rows, start=2)
    ]
    check_files(path, [q.sketch for q in queries] + [q.target for q in queries])
    return queries


def queries_for(queries: Sequence[TextQuery], gallery: Sequence[Path], splits: Collection[str]) -> list[TextQuery]:
    """The queries of some splits whose target is in the gallery (a query without a split counts for any)."""
    members = {p.resolve() for p in gallery}
    return [q for q in queries if (q.split is None or q.split in splits) and q.target.resolve() in members]
