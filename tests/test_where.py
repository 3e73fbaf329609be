"""Find similar, narrowing by any payload field, and paging, through the facade on both embedded backends (Qdrant
Edge and qdrant-client's local mode) with real encodes of the tiny model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import models

from sketchtext.plugin.db import asset_id
from sketchtext.plugin.errors import QueryError
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.search import SketchTextQuery
from sketchtext.plugin.settings import Settings
from sketchtext.plugin.store.where import parse_where
from tests.conftest import TINY_SPEC, draw_product

COLOURS = ["red", "blue", "green", "orange", "purple", "black", "yellow", "pink"]


def write_catalogue(root: Path) -> Path:
    """Eight products with typed sidecar fields (catalog.jsonl): a brand, a price, a season."""
    lines = []
    for i, colour in enumerate(COLOURS):
        category = "shoes" if i % 2 == 0 else "bags"
        key = f"{category}/item{i}.png"
        draw_product(root / key, i, colour)
        row = {"path": key, "sku": f"SKU-{i}", "brand": "acme" if i < 4 else "zenith", "price": 10 + 5 * i}
        lines.append(json.dumps({**row, "season": "winter" if i % 3 == 0 else "summer"}))
    (root / "catalog.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module", params=["edge", "local"])
def plugin(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_encoder) -> Iterator:
    tmp = tmp_path_factory.mktemp(f"where-{request.param}")
    root = write_catalogue(tmp / "catalog")
    settings = Settings(
        data_dir=tmp / "data",
        model={"spec": TINY_SPEC, "device": "cpu", "batch_size": 8},
        store={"backend": request.param},
    )
    with SketchTextPlugin(settings, encoder=tiny_encoder) as plugin:
        plugin.ingest(root)
        yield plugin


def keys(plugin: SketchTextPlugin, **query: object) -> list[str]:
    return [hit.key or "" for hit in plugin.search(SketchTextQuery(**query))]  # type: ignore[arg-type]


def test_like_an_asset_finds_it_first_from_its_stored_vector(plugin: SketchTextPlugin, monkeypatch) -> None:
    def no_encoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a like query without words must not encode anything")

    monkeypatch.setattr(type(plugin.query_encoder), "query_vectors", no_encoding)
    by_key = plugin.search(SketchTextQuery(like="bags/item3.png", limit=8))
    assert by_key[0].key == "bags/item3.png" and by_key[0].score == pytest.approx(1.0, abs=1e-4)
    by_id = keys(plugin, like=str(asset_id(plugin.collection, "bags/item3.png")), limit=8)
    assert by_id == [h.key for h in by_key]
    assert plugin.encode(SketchTextQuery(like="bags/item3.png")).mode == "like"


def test_like_with_words_goes_through_the_photo_and_reranks(plugin: SketchTextPlugin) -> None:
    alone = keys(plugin, like="shoes/item0.png", limit=8)
    with_words = plugin.search(SketchTextQuery(like="shoes/item0.png", text="a blue bag", limit=8))
    assert {h.key for h in with_words} == set(alone) and [h.key for h in with_words] != alone
    same_as_sketch = keys(plugin, sketch=plugin.photo_path("shoes/item0.png"), text="a blue bag", limit=8)
    assert [h.key for h in with_words] == same_as_sketch  # the photo takes the sketch's path, exactly


def test_like_refuses_unknown_assets_and_a_sketch_beside_it(plugin: SketchTextPlugin) -> None:
    with pytest.raises(QueryError, match="No embedded asset 'shoes/nope.png'"):
        plugin.search(SketchTextQuery(like="shoes/nope.png"))
    with pytest.raises(QueryError, match="not both"):
        plugin.search(SketchTextQuery(like="shoes/item0.png", sketch=plugin.photo_path("shoes/item0.png")))


def test_where_on_sidecar_fields_bare_or_under_extra(plugin: SketchTextPlugin) -> None:
    assert set(keys(plugin, text="a shoe", where={"brand": "acme"})) == {
        "shoes/item0.png",
        "bags/item1.png",
        "shoes/item2.png",
        "bags/item3.png",
    }
    winter = set(keys(plugin, text="a shoe", where={"extra.season": "winter", "brand": ["acme", "zenith"]}))
    assert winter == {"shoes/item0.png", "bags/item3.png", "shoes/item6.png"}
    both = keys(plugin, text="a shoe", category="shoes", where={"extra.season": "winter", "brand": "zenith"})
    assert both == ["shoes/item6.png"]


def test_where_ranges_on_numbers(plugin: SketchTextPlugin) -> None:
    assert set(keys(plugin, text="a bag", where={"price": {"gte": 20, "lt": 35}})) == {
        "shoes/item2.png",
        "bags/item3.png",
        "shoes/item4.png",
    }
    cli_range = parse_where(["price=20..30", "brand=acme,zenith"])
    assert cli_range == {"price": {"gte": "20", "lte": "30"}, "brand": ["acme", "zenith"]}
    assert set(keys(plugin, text="a bag", where=cli_range)) == {"shoes/item2.png", "bags/item3.png", "shoes/item4.png"}
    assert keys(plugin, text="a bag", where=parse_where(["price=..10"])) == ["shoes/item0.png"]
    assert keys(plugin, text="a bag", where={"price": "25"}) == ["bags/item3.png"]


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ({"colour": "red"}, r"Unknown filter field 'colour'; the collection's fields are: category, extra.brand"),
        ({"brand": "acm"}, r"Unknown brand 'acm'; the collection has: acme, zenith\."),
        ({"category": "shoe"}, r"Unknown category 'shoe'; the collection has: bags, shoes\."),
        ({"price": "12"}, r"Unknown price 12; the collection has: 10, 15"),
        ({"price": "cheap"}, r"price holds numbers; 'cheap' is not one"),
        ({"brand": {"gte": 1}}, r"brand holds text, so it has no range"),
        ({"price": {"above": 1}}, r"A range for price takes gt, gte, lt, lte"),
        ({"brand": []}, r"empty list"),
    ],
)
def test_where_refuses_unknown_fields_and_values_listing_the_valid_ones(plugin, where, says: str) -> None:
    with pytest.raises(QueryError, match=says):
        plugin.search(SketchTextQuery(text="a shoe", where=where))


def test_where_and_a_hosts_own_filter_both_hold(plugin: SketchTextPlugin) -> None:
    host = models.Filter(must=[models.FieldCondition(key="category", match=models.MatchValue(value="bags"))])
    found = keys(plugin, text="a bag", where={"brand": "acme"}, filters=host)
    assert set(found) == {"bags/item1.png", "bags/item3.png"}


def test_offset_pages_and_score_threshold_cuts(plugin: SketchTextPlugin) -> None:
    everything = plugin.search(SketchTextQuery(like="shoes/item0.png", limit=8))
    pages = [keys(plugin, like="shoes/item0.png", limit=3, offset=offset) for offset in (0, 3, 6)]
    assert sum(pages, []) == [h.key for h in everything]
    cut = (everything[3].score + everything[4].score) / 2
    assert everything[3].score > cut > everything[4].score
    assert keys(plugin, like="shoes/item0.png", limit=8, score_threshold=cut) == [h.key for h in everything[:4]]
    for bad in ({"offset": -1}, {"offset": 1.5}, {"score_threshold": 2}, {"score_threshold": "high"}):
        with pytest.raises(QueryError, match="offset|score_threshold"):
            plugin.search(SketchTextQuery(text="a shoe", **bad))  # type: ignore[arg-type]


def test_values_are_read_again_after_an_ingest_adds_one(tmp_path: Path, tiny_encoder) -> None:
    root = write_catalogue(tmp_path / "catalog")
    settings = Settings(data_dir=tmp_path / "data", model={"spec": TINY_SPEC, "device": "cpu"})
    with SketchTextPlugin(settings, encoder=tiny_encoder) as plugin:
        plugin.ingest(root)
        with pytest.raises(QueryError, match="Unknown brand 'nova'; the collection has: acme, zenith"):
            plugin.search(SketchTextQuery(text="a shoe", where={"brand": "nova"}))
        draw_product(root / "shoes/item9.png", 9, "teal")
        with (root / "catalog.jsonl").open("a") as fh:
            fh.write(json.dumps({"path": "shoes/item9.png", "brand": "nova", "price": 99}) + "\n")
        plugin.ingest(root)
        assert keys(plugin, text="a shoe", where={"brand": "nova"}) == ["shoes/item9.png"]
