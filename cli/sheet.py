"""`sketchtext search --sheet`: the query (its sketch, or the photo it is like, and its words) beside its hits."""

from __future__ import annotations

from pathlib import Path

from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.miniature.contact_sheet import draw_contact_sheet
from sketchtext.plugin.search import SearchHit, SketchTextQuery


def draw_search_sheet(plugin: SketchTextPlugin, query: SketchTextQuery, hits: list[SearchHit], out: Path) -> Path:
    """One row: the query's picture and words, then each hit's photo from the catalogue labelled rank and score."""
    picture = query.sketch if isinstance(query.sketch, Path) else None
    if query.like is not None:
        picture = plugin.photo_path(plugin.like_asset(query.like).key)
    photos = [plugin.photo_path(hit.key) if hit.key else None for hit in hits]
    labels = [f"#{query.offset + rank} {hit.score:.3f}" for rank, hit in enumerate(hits, start=1)]
    words = " ".join(part for part in (f"like {query.like}" if query.like else "", query.text or "") if part)
    return draw_contact_sheet(out, [(picture, words, photos, None)], title="query -> results", labels=[labels])
