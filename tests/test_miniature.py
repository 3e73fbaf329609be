"""The miniature world generator: deterministic, split by shape, shared colourways, sketch-like sketches."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchtext.plugin.errors import ConfigError
from sketchtext.plugin.miniature.families import FAMILIES
from sketchtext.plugin.miniature.generate import generate_world
from sketchtext.plugin.miniature.world import (
    COLOURS,
    PATTERNS,
    SCENES,
    Colourway,
    MiniatureCfg,
    _reserved,
    build_world,
    product_names,
    render_photo,
    render_sketch,
)

SMALL = MiniatureCfg(
    shapes_per_category=6,
    colourways_per_shape=3,
    sketches_per_shape=2,
    image_size=32,
    palette_size=12,
    shapes_per_colourway=3,
)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, SMALL)
    return out


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(world_dir: Path, tmp_path: Path) -> None:
    summary = generate_world(tmp_path / "again", SMALL, workers=2)
    assert summary["photos"] == 4 * 6 * 3 and summary["sketches"] == 4 * 6 * 2
    assert tree(tmp_path / "again") == tree(world_dir)
    generate_world(tmp_path / "other", SMALL, seed=1)
    other = tree(tmp_path / "other")
    for name in ("pairs.csv", "captions.csv", "queries.csv", "catalog/catalog.csv"):
        assert other[name] != tree(world_dir)[name]
    images = {v for k, v in tree(world_dir).items() if k.endswith((".png", ".jpg"))}
    assert not images & {v for k, v in other.items() if k.endswith((".png", ".jpg"))}


def test_splits_are_disjoint_by_shape_and_every_category_has_test_shapes() -> None:
    world = build_world()
    names = [s.name for s in world.shapes]
    assert len(set(names)) == len(names) == 4 * 40
    by_split = defaultdict(set)
    for s in world.shapes:
        by_split[s.split].add(s.index)
    assert set(by_split) == {"train", "val", "test"}
    assert not (
        by_split["train"] & by_split["test"]
        or by_split["train"] & by_split["val"]
        or by_split["val"] & by_split["test"]
    )
    for category in world.cfg.categories:
        assert {s.split for s in world.shapes if s.category == category} == {"train", "val", "test"}
    assert len({(s.category, s.params) for s in world.shapes}) == len(world.shapes)


def test_every_shape_has_several_colourways_and_every_colourway_several_shapes() -> None:
    world = build_world()
    per_shape = defaultdict(set)
    per_group = defaultdict(Counter)
    for p in world.products:
        per_shape[p.shape.index].add(p.colourway)
        per_group[(p.shape.category, p.shape.split)][p.colourway] += 1
    assert all(len(cws) == world.cfg.colourways_per_shape for cws in per_shape.values())
    for counts in per_group.values():
        assert min(counts.values()) >= 3  # within one category and split a colourway never picks the shape
    used = {p.colourway for p in world.products}
    assert {c.colour for c in used} == set(COLOURS) and {c.pattern for c in used} == set(PATTERNS)
    assert len({(c.colour, c.pattern) for c in used}) == len(used)  # file names stay unique
    assert {p.scene for p in world.products} == set(SCENES)


def test_sketches_are_near_binary_black_on_white_and_photos_are_colour() -> None:
    world = build_world(SMALL)
    for shape in world.shapes[::5]:
        sketch = render_sketch(shape, size=64, seed=3)
        assert sketch.mode == "L"
        px = np.asarray(sketch)
        assert (px > 208).mean() > 0.7 and (px < 48).mean() > 0.01
        assert ((px >= 48) & (px <= 208)).mean() < 0.03
        photo = np.asarray(render_photo(shape, Colourway("red", "stripes", "white"), "studio", size=64), np.float32)
        assert photo.shape == (64, 64, 3)
        assert (photo[..., 0] - photo[..., 1] > 80).mean() > 0.05  # a good share of the object is red
    boot = world.shapes[0]
    assert render_sketch(boot, seed=1).tobytes() != render_sketch(boot, seed=2).tobytes()
    plain = render_photo(boot, Colourway("blue", "plain"), "snow", seed=1)
    dotted = render_photo(boot, Colourway("blue", "dots", "yellow"), "snow", seed=1)
    assert np.abs(np.asarray(plain, np.float32) - np.asarray(dotted, np.float32)).mean() > 2


def test_files_named_in_the_csvs_exist_and_pair_the_same_shape(world_dir: Path) -> None:
    catalog = read_csv(world_dir / "catalog" / "catalog.csv")
    assert len(catalog) == 72
    assert set(catalog[0]) == {
        "path",
        "sku",
        "title",
        "category",
        "scene",
        "colour",
        "colour2",
        "pattern",
        "shape",
        "split",
    }
    for row in catalog:
        assert (world_dir / "catalog" / row["path"]).is_file()
        assert row["path"].split("/")[0] == row["category"]
    photo_split = {f"catalog/{r['path']}": r["split"] for r in catalog}
    shape_of = {f"catalog/{r['path']}": r["shape"] for r in catalog}
    pairs = read_csv(world_dir / "pairs.csv")
    assert len(pairs) == 24 * 2 * 3
    for row in pairs:
        assert (world_dir / row["sketch"]).is_file() and (world_dir / row["photo"]).is_file()
        assert Path(row["sketch"]).stem.rsplit("-", 1)[0] == shape_of[row["photo"]]
        assert photo_split[row["photo"]] == row["split"]
    captions = read_csv(world_dir / "captions.csv")
    assert all((world_dir / row["photo"]).is_file() for row in captions)
    assert Counter(row["kind"] for row in captions) == {"photo": 72 * 2, "sketch": 48}
    for name in ("sketches/boot", "catalog/lamp"):
        assert len(list((world_dir / name).iterdir())) == {"sketches/boot": 12, "catalog/lamp": 18}[name]
    with Image.open(next((world_dir / "sketches" / "bag").iterdir())) as im:
        assert im.mode == "L" and im.size == (32, 32)


def test_queries_pick_one_photo_of_the_sketched_shape_and_test_queries_use_test_shapes(world_dir: Path) -> None:
    catalog = {f"catalog/{r['path']}": r for r in read_csv(world_dir / "catalog" / "catalog.csv")}
    shapes = {r["shape"]: r for r in read_csv(world_dir / "shapes.csv")}
    queries = read_csv(world_dir / "queries.csv")
    assert {q["split"] for q in queries} == {"train", "val", "test"}
    seen = set()
    for q in queries:
        target = catalog[q["target"]]
        assert (world_dir / q["sketch"]).is_file()
        assert target["shape"] == q["shape"] and shapes[q["shape"]]["split"] == q["split"] == target["split"]
        assert q["text"].startswith(f"in {target['colour']}") and target["pattern"] in q["text"] + "plain"
        assert (q["sketch"], q["text"]) not in seen
        seen.add((q["sketch"], q["text"]))
    test_shapes = {name for name, row in shapes.items() if row["split"] == "test"}
    assert {q["shape"] for q in queries if q["split"] == "test"} == test_shapes


def test_captions_name_category_colour_and_often_the_product_line(world_dir: Path) -> None:
    catalog = {f"catalog/{r['path']}": r for r in read_csv(world_dir / "catalog" / "catalog.csv")}
    photo_rows = [r for r in read_csv(world_dir / "captions.csv") if r["kind"] == "photo"]
    named = 0
    for row in photo_rows:
        item = catalog[row["photo"]]
        assert item["category"] in row["caption"] and item["colour"] in row["caption"]
        named += item["shape"] in row["caption"].split()
    assert 0.5 < named / len(photo_rows) < 1
    heads = ("a photo of", "a picture of", "product photo:", "a close-up photo of", "a ", "the ")
    assert len({next(h for h in heads if r["caption"].startswith(h)) for r in photo_rows}) >= 4  # varied templates
    assert any(r["caption"].startswith("a photo of a ") for r in photo_rows)


def test_product_names_are_unique_words_with_no_meaning_in_captions() -> None:
    names = product_names(700, seed=0)
    assert len(set(names)) == 700 and all(n.isalpha() and n.islower() for n in names)
    assert not set(names) & _reserved()
    assert product_names(50, seed=0) == names[:50] and product_names(50, seed=1) != names[:50]


def test_the_in_memory_api_reproduces_the_files(world_dir: Path) -> None:
    world = build_world(SMALL)
    shape = world.shapes[7]
    saved = Image.open(world_dir / world.sketch_paths(shape)[1])
    drawn = render_sketch(shape, size=32, seed=(SMALL.seed, 2, shape.index, 1))
    assert np.array_equal(np.asarray(saved), np.asarray(drawn))


def test_the_catalog_reader_picks_up_the_sidecar(world_dir: Path) -> None:
    from sketchtext.plugin.ingest.catalog import scan_catalog

    entries = list(scan_catalog(world_dir / "catalog"))
    assert len(entries) == 72
    entry = entries[0]
    assert entry.category in FAMILIES and entry.scene in SCENES and entry.sku and entry.title
    assert {"colour", "pattern", "shape", "split"} <= set(entry.extra)


def test_bad_settings_raise_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="categories"):
        build_world(MiniatureCfg(categories=("boot", "spaceship")))
    with pytest.raises(ConfigError, match="palette_size"):
        build_world(MiniatureCfg(palette_size=100))
    with pytest.raises(ConfigError, match="valid settings"):
        generate_world(tmp_path, shapes=3)
    with pytest.raises(ConfigError, match="colours"):
        build_world(MiniatureCfg(colours=("red", "ultraviolet")))
    with pytest.raises(ConfigError, match="palette_size"):
        build_world(MiniatureCfg(colours=("red", "blue"), palette_size=32))


def test_a_world_of_other_families_and_colours_uses_only_those() -> None:
    colours = ("orange", "yellow", "green", "teal", "navy", "purple", "pink", "brown", "white", "beige")
    world = build_world(MiniatureCfg(seed=1, categories=("mug", "vase"), colours=colours, shapes_per_category=12))
    assert {p.shape.category for p in world.products} == {"mug", "vase"}
    used = {c for p in world.products for c in (p.colourway.colour, p.colourway.colour2) if c}
    assert used <= set(colours) and len(used) >= 5
