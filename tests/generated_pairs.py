"""Generated sketch–photo pairs for the method's tests: each photo is a filled, coloured shape on a light
background; its sketch is the same shape's outline in black on white, drawn with a little jitter."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "red": (210, 40, 40),
    "blue": (40, 70, 210),
    "green": (40, 160, 60),
    "orange": (240, 140, 20),
    "purple": (130, 50, 170),
    "teal": (20, 150, 150),
}
KINDS = ("ellipse", "rectangle", "triangle", "diamond")


def outline(kind: str, box: tuple[float, float, float, float]) -> list[tuple[float, float]] | None:
    x0, y0, x1, y1 = box
    if kind == "triangle":
        return [(x0, y1), ((x0 + x1) / 2, y0), (x1, y1)]
    if kind == "diamond":
        return [((x0 + x1) / 2, y0), (x1, (y0 + y1) / 2), ((x0 + x1) / 2, y1), (x0, (y0 + y1) / 2)]
    return None


def draw(
    kind: str, box: tuple[float, float, float, float], size: int, fill: tuple[int, int, int] | None
) -> Image.Image:
    image = Image.new("RGB", (size, size), (245, 240, 230) if fill else "white")
    pen = ImageDraw.Draw(image)
    width = max(1, size // 32)
    points = outline(kind, box)
    if points is not None:
        pen.polygon(points, fill=fill, outline="black", width=width)
    elif kind == "ellipse":
        pen.ellipse(box, fill=fill, outline="black", width=width)
    else:
        pen.rectangle(box, fill=fill, outline="black", width=width)
    return image


def make_pairs(
    root: Path,
    *,
    photos: int = 24,
    sketches_per_photo: int = 1,
    splits: tuple[int, int, int] = (12, 6, 6),
    twins: bool = False,
    seen_val: bool = False,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write `photos/`, `sketches/`, `pairs.csv` and `queries.csv` (text = the photo's colour) under `root`.

    `splits` counts photos for train/val/test in order. With `twins`, photos come in pairs sharing one shape in
    two colours, so only the text can tell them apart. With `seen_val`, the val split is instead every training
    photo's last sketch (new drawings of seen photos: what a random-weight model can learn)."""
    assert sum(splits) == photos
    rng = random.Random(seed)
    colours = list(COLOURS)
    names = ["train"] * splits[0] + ["val"] * splits[1] + ["test"] * splits[2]
    pair_rows, query_rows = [], []
    geometry: tuple[str, tuple[float, float, float, float]] | None = None
    for i in range(photos):
        if not twins or i % 2 == 0:
            kind = KINDS[i % len(KINDS)] if not twins else KINDS[(i // 2) % len(KINDS)]
            w, h = rng.uniform(0.3, 0.8) * size, rng.uniform(0.3, 0.8) * size
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            geometry = (kind, (x, y, x + w, y + h))
        assert geometry is not None
        kind, box = geometry
        colour = colours[(i % 2) if twins else rng.randrange(len(colours))]
        photo = f"photos/p{i:03d}.png"
        (root / "photos").mkdir(parents=True, exist_ok=True)
        draw(kind, box, size, COLOURS[colour]).save(root / photo)
        for n in range(1, sketches_per_photo + 1):
            jitter = tuple(v + rng.uniform(-1.5, 1.5) for v in box)
            sketch = f"sketches/p{i:03d}_{n}.png"
            (root / "sketches").mkdir(parents=True, exist_ok=True)
            draw(kind, jitter, size, None).save(root / sketch)  # type: ignore[arg-type]
            split = "val" if seen_val and names[i] == "train" and n == sketches_per_photo > 1 else names[i]
            pair_rows.append({"sketch": sketch, "photo": photo, "split": split})
            query_rows.append({"sketch": sketch, "text": f"in {colour}", "target": photo, "split": names[i]})
    for name, rows in (("pairs.csv", pair_rows), ("queries.csv", query_rows)):
        with (root / name).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return root
