"""A contact sheet: each query's sketch and words beside its top results, the true product (when known) framed in
green. The demo draws one per table; `sketchtext search --sheet` draws one for a search."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from sketchtext.plugin.errors import ImageError
from sketchtext.plugin.images import decode_image

CELL = 96  # pixels per thumbnail
PAD = 6
TEXT_W = 150
HIT = (34, 160, 60)
MISS = (200, 200, 200)
BLANK = (235, 235, 235)

# sketch (None: words alone), words, result photos in rank order (None: the file is gone), the true photo (if known)
Row = tuple[Path | None, str, Sequence[Path | None], Path | None]


def thumbnail(path: Path | None) -> Image.Image:
    """A cell's picture, safely decoded; a grey cell for no picture or one that cannot be read."""
    if path is None:
        return Image.new("RGB", (CELL, CELL), BLANK)
    try:
        image, _ = decode_image(path.read_bytes(), name=path.name, draft_size=CELL)
    except (ImageError, OSError):
        return Image.new("RGB", (CELL, CELL), BLANK)
    return image.resize((CELL, CELL), Image.Resampling.NEAREST)


TITLE = "sketch + text -> top 5 results (composed query)"


def draw_contact_sheet(
    out: Path, rows: Sequence[Row], title: str = TITLE, labels: Sequence[Sequence[str]] | None = None
) -> Path:
    """Write the sheet as PNG to `out` and return it; results equal to the true photo get a green border.

    `labels` (per row, per hit) replace the rank under each result, e.g. with its score."""
    k = max((len(r[2]) for r in rows), default=0)
    width = PAD + CELL + PAD + TEXT_W + k * (CELL + PAD) + PAD
    head = 22
    height = head + len(rows) * (CELL + 2 * PAD) + PAD
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    known = any(r[3] is not None for r in rows)
    draw.text((PAD, 5), title + ("   (green frame: the true product)" if known else ""), fill="black")
    for i, (sketch, text, hits, truth) in enumerate(rows):
        y = head + i * (CELL + 2 * PAD) + PAD
        sheet.paste(thumbnail(sketch), (PAD, y))
        words = f'"{text}"' if text else ""
        draw.multiline_text((2 * PAD + CELL, y + 4), "\n".join(textwrap.wrap(words, 22)), fill="black")
        for j, hit in enumerate(hits):
            x = 2 * PAD + CELL + TEXT_W + j * (CELL + PAD)
            sheet.paste(thumbnail(hit), (x, y))
            found = hit is not None and truth is not None and hit.resolve() == truth.resolve()
            frame = (x - 3, y - 3, x + CELL + 2, y + CELL + 2)
            draw.rectangle(frame, outline=HIT if found else MISS, width=4 if found else 1)
            label = labels[i][j] if labels is not None else f"#{j + 1}"
            draw.text((x + 2, y + CELL - 12), label, fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, "PNG")
    return out
