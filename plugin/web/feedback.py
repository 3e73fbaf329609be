"""Staff feedback: marks on hits kept in SQL, exported as the `pairs.csv` + `queries.csv` layout that
`sketchtext eval` and `train` read (the shop's own queries become an evaluation set)."""

from __future__ import annotations

import csv
import io
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select

from sketchtext.plugin.db import Feedback, MetadataDB
from sketchtext.plugin.errors import AssetNotFoundError, CatalogError, QueryError
from sketchtext.plugin.images import decode_image

Mark = Literal["match", "wrong"]
MARKS = ("match", "wrong")


def record_feedback(
    db: MetadataDB,
    collection: str,
    ident: uuid.UUID,
    mark: str,
    *,
    sketch: bytes | None = None,
    text: str | None = None,
    filters: dict[str, Any] | None = None,
) -> int:
    """Store a mark on the asset `ident` with its query (the sketch re-encoded as PNG); returns the mark's id."""
    if mark not in MARKS:
        raise QueryError(f"Unknown mark {mark!r}; use one of {', '.join(MARKS)}.")
    row = db.asset(collection, ident)
    if row is None:
        raise AssetNotFoundError(f"No asset {ident} in collection {collection!r}; mark a hit of a search.")
    png = None
    if sketch is not None:
        image, _ = decode_image(sketch, name="the sketch")
        out = io.BytesIO()
        image.save(out, "PNG")
        png = out.getvalue()
    with db.session() as session:
        entry = Feedback(
            collection=collection,
            asset_id=ident,
            key=row.key,
            mark=mark,
            text=(text or "").strip() or None,
            filters=filters or {},
            sketch_png=png,
        )
        session.add(entry)
        session.flush()
        return entry.id


def feedback_marks(db: MetadataDB, collection: str) -> list[Feedback]:
    with db.session() as session:
        return list(session.scalars(select(Feedback).where(Feedback.collection == collection).order_by(Feedback.id)))


def export_feedback(db: MetadataDB, collection: str, catalog: Path, out: Path) -> dict[str, int]:
    """Write `out/pairs.csv` (sketch, photo, split) for every "this is it" with a sketch, `out/queries.csv`
    (sketch, text, target, split) for those with words too, and `out/marks.csv` with every mark; the sketches and
    photos are copied beside them, so the folder is complete. Everything goes to the test split."""
    marks = feedback_marks(db, collection)
    pairs, queries, skipped = [], [], 0
    (out / "sketches").mkdir(parents=True, exist_ok=True)
    for mark in marks:
        if mark.mark != "match" or mark.sketch_png is None:
            continue
        source = catalog / mark.key
        if not source.is_file():
            skipped += 1  # the photo is gone from the catalogue: nothing to rank
            continue
        photo = Path("photos") / mark.key
        (out / photo).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out / photo)
        sketch = Path("sketches") / f"{mark.id}.png"
        (out / sketch).write_bytes(mark.sketch_png)
        pair = {"sketch": sketch.as_posix(), "photo": photo.as_posix(), "split": "test"}
        pairs.append(pair)
        if mark.text:
            queries.append({"sketch": pair["sketch"], "text": mark.text, "target": pair["photo"], "split": "test"})
    if not pairs:
        raise CatalogError(
            f"No 'this is it' marks with a sketch in {collection!r} whose photo is under {catalog}; "
            "mark hits of sketch searches on the page first."
        )
    write_csv(out / "pairs.csv", ["sketch", "photo", "split"], pairs)
    if queries:
        write_csv(out / "queries.csv", ["sketch", "text", "target", "split"], queries)
    rows = [
        {"id": m.id, "mark": m.mark, "key": m.key, "text": m.text or "", "filters": m.filters, "at": m.created_at}
        for m in marks
    ]
    write_csv(out / "marks.csv", ["id", "mark", "key", "text", "filters", "at"], rows)
    return {"marks": len(marks), "pairs": len(pairs), "queries": len(queries), "skipped": skipped}


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
