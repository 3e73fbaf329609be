"""Pair sets: pairs.csv, both QMUL ShoeV2/ChairV2 layouts, held-out validation, query files, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from sketchtext.plugin.errors import CatalogError, DatasetError
from sketchtext.plugin.method.pairs import hold_out, load_pairs, load_queries, photos, queries_for
from tests.generated_pairs import make_pairs


def touch(path: Path, colour: str = "white") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def test_pairs_csv(tmp_path: Path) -> None:
    root = make_pairs(tmp_path / "set", photos=8, sketches_per_photo=2, splits=(4, 2, 2))
    pairs = load_pairs(root)
    assert pairs.layout == "pairs.csv" and pairs.counts() == {"train": 8, "val": 4, "test": 4}
    test = pairs.split("test")
    assert all(p.sketch.stem.startswith(p.photo.stem) for p in test) and len(photos(test)) == 2
    assert load_pairs(root / "pairs.csv").counts() == pairs.counts()  # the CSV itself works too
    before = pairs.fingerprint()
    assert before == load_pairs(root).fingerprint()
    touch(test[0].photo, "red")  # same names, new content: another data set
    assert load_pairs(root).fingerprint() != before


def test_pairs_csv_errors(tmp_path: Path) -> None:
    root = make_pairs(tmp_path / "set", photos=4, splits=(4, 0, 0))
    with pytest.raises(DatasetError, match="no 'test' pairs") as info:
        load_pairs(root).split("test")
    assert isinstance(info.value, CatalogError)
    (root / "photos" / "p001.png").unlink()
    with pytest.raises(DatasetError, match=r"1 file\(s\) named by .*pairs.csv do not exist.*p001.png"):
        load_pairs(root)
    (root / "pairs.csv").write_text("sketch,photo,split\nsketches/p000_1.png,photos/p000.png,holdout\n")
    with pytest.raises(DatasetError, match="split 'holdout' is not one of train, val, test"):
        load_pairs(root)
    (root / "pairs.csv").write_text("sketch,image\na,b\n")
    with pytest.raises(DatasetError, match="needs sketch, photo and split"):
        load_pairs(root)
    with pytest.raises(DatasetError, match="does not exist"):
        load_pairs(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="write a pairs.csv"):
        load_pairs(tmp_path / "empty")


def test_qmul_a_b_layout(tmp_path: Path, caplog) -> None:
    root = tmp_path / "ShoeV2"
    for split in ("train", "test"):
        for photo in ("2429245009", "cvpr_12") if split == "train" else ("1135045020",):
            touch(root / f"{split}B" / f"{photo}.png")
            for n in (1, 2):
                touch(root / f"{split}A" / f"{photo}_{n}.png")
    touch(root / "trainA" / "orphan_1.png")
    pairs = load_pairs(root)
    assert pairs.layout == "qmul" and pairs.counts() == {"train": 4, "test": 2}
    assert {p.photo.name for p in pairs.split("train")} == {"2429245009.png", "cvpr_12.png"}
    assert "match no photo" in caplog.text


def test_qmul_list_layout(tmp_path: Path) -> None:
    root = tmp_path / "ChairV2"
    for photo in ("a1", "a2", "b1"):
        touch(root / "ChairV2_photo" / f"{photo}.png")
        touch(root / "ChairV2_sketch" / f"{photo}_1.png")
    touch(root / "ChairV2_sketch" / "a1_2.png")
    (root / "photo_train.txt").write_text("ChairV2_photo/a1.png\nChairV2_photo/a2.png\n")
    (root / "photo_test.txt").write_text("b1.png\n")
    pairs = load_pairs(root)
    assert pairs.counts() == {"train": 3, "test": 1}
    (root / "sketch_train.txt").write_text("a1_1.png\n")  # an explicit sketch list wins
    assert load_pairs(root).counts() == {"train": 1, "test": 1}


def test_hold_out_keeps_a_photo_on_one_side(tmp_path: Path) -> None:
    pairs = load_pairs(make_pairs(tmp_path / "set", photos=10, sketches_per_photo=3, splits=(10, 0, 0)))
    train, val = hold_out(pairs.split("train"), 0.2, seed=0)
    assert len(photos(val)) == 2 and not set(photos(val)) & set(photos(train)) and len(val) == 6
    assert {p.split for p in val} == {"val"}
    assert hold_out(pairs.split("train"), 0.2, seed=0) == (train, val)
    with pytest.raises(DatasetError, match="at least 4 training photos"):
        hold_out(pairs.split("train")[:6], 0.2, seed=0)


def test_queries(tmp_path: Path) -> None:
    root = make_pairs(tmp_path / "set", photos=8, splits=(4, 2, 2), twins=True)
    queries = load_queries(root / "queries.csv")
    assert queries[0].text in ("in red", "in blue") and queries[0].split == "train"
    gallery = photos(load_pairs(root).split("test"))
    chosen = queries_for(queries, gallery, {"test"})
    assert len(chosen) == 2 and all(q.target in gallery for q in chosen)
    (root / "bad.csv").write_text("sketch,words\n")
    with pytest.raises(DatasetError, match="no queries"):
        load_queries(root / "bad.csv")
    with pytest.raises(DatasetError, match="does not exist"):
        load_queries(root / "missing.csv")
