"""A contact sheet: each query's sketch and words beside its top results, the true product framed in green."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

CELL = 96  # pixels per thumbnail
PAD = 6
TEXT_W = 150
HIT = (34, 160, 60)
MISS = (200, 200, 200)

Row = tuple[Path, str, Sequence[Path], Path]  # sketch, text, result photos in rank order, the true photo


def thumbnail(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB").resize((CELL, CELL), Image.Resampling.NEAREST)


TITLE = "sketch + text -> top 5 results (composed query)"


def draw_contact_sheet(out: Path, rows: Sequence[Row], title: str = TITLE) -> Path:
    """Write the sheet as PNG to `out` and return it; results equal to the true photo get a green border."""
    k = max((len(r[2]) for r in rows), default=0)
    width = PAD + CELL + PAD + TEXT_W + k * (CELL + PAD) + PAD
    head = 22
    height = head + len(rows) * (CELL + 2 * PAD) + PAD
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 5), title + "   (green frame: the true product)", fill="black")
    for i, (sketch, text, hits, truth) in enumerate(rows):
        y = head + i * (CELL + 2 * PAD) + PAD
        sheet.paste(thumbnail(sketch), (PAD, y))
        draw.multiline_text((2 * PAD + CELL, y + 4), "\n".join(textwrap.wrap(f'"{text}"', 22)), fill="black")
        for j, hit in enumerate(hits):
            x = 2 * PAD + CELL + TEXT_W + j * (CELL + PAD)
            sheet.paste(thumbnail(hit), (x, y))
            found = hit.resolve() == truth.resolve()
            frame = (x - 3, y - 3, x + CELL + 2, y + CELL + 2)
            draw.rectangle(frame, outline=HIT if found else MISS, width=4 if found else 1)
            draw.text((x + 2, y + CELL - 12), f"#{j + 1}", fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
