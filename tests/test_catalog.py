"""The catalog reader: walking, metadata, and safe decoding."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from sketchtext.plugin.errors import CatalogError, ImageError
from sketchtext.plugin.images import open_image
from sketchtext.plugin.ingest.catalog import scan_catalog
from tests.conftest import draw_product


def test_scan_reads_folders_and_sidecar(catalog: Path) -> None:
    (catalog / "notes.txt").write_text("not a photo")
    entries = {e.key: e for e in scan_catalog(catalog)}
    photos = ["shoes/item0.png", "bags/item1.jpg", "shoes/item2.jpg", "bags/item3.png", "shoes/item4.jpg"]
    # every file but the sidecar is a candidate: decoding decides what is an image
    assert sorted(entries) == sorted([*photos, "bags/item5.jpg", "notes.txt"])
    first = entries["shoes/item0.png"]
    assert (first.category, first.scene, first.sku, first.extra) == ("shoes", "beach", "SKU-0", {"colour": "red"})


def test_sidecar_category_wins_over_folder(tmp_path: Path) -> None:
    draw_product(tmp_path / "misc" / "a.png", 0, "red")
    (tmp_path / "catalog.jsonl").write_text('{"path": "misc/a.png", "category": "boots", "size_eu": 41}\n')
    (entry,) = scan_catalog(tmp_path)
    assert entry.category == "boots" and entry.extra == {"size_eu": 41}


def test_sidecar_paths_outside_the_root_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "catalog.csv").write_text("path,sku\n../secret.png,X\n")
    with pytest.raises(CatalogError, match="outside the catalog"):
        list(scan_catalog(tmp_path))


def test_links_leaving_the_root_and_special_files_come_with_a_problem(tmp_path: Path) -> None:
    outside = draw_product(tmp_path / "outside" / "x.png", 1, "blue")
    root = tmp_path / "catalog"
    draw_product(root / "shoes" / "in.png", 0, "red")
    os.symlink(outside, root / "shoes" / "escape.png")
    os.symlink(root / "shoes" / "in.png", root / "shoes" / "alias.png")
    os.symlink(root / "shoes" / "gone.png", root / "shoes" / "dangling.png")
    os.symlink("../../outside/x.png", root / "shoes" / "dotdot.png")
    os.mkfifo(root / "shoes" / "pipe.jpg")
    problems = {e.key: e.problem for e in scan_catalog(root)}
    assert problems["shoes/in.png"] is None and problems["shoes/alias.png"] is None
    assert "leaves the catalog" in problems["shoes/escape.png"] and "leaves the catalog" in problems["shoes/dotdot.png"]
    assert "not a regular file" in problems["shoes/pipe.jpg"] and "not a regular file" in problems["shoes/dangling.png"]


def test_odd_file_names_become_valid_text_keys(tmp_path: Path) -> None:
    draw_product(tmp_path / "sp ace, ümlaut & emoji 👢.png", 0, "red")
    raw = os.fsencode(tmp_path) + b"/latin1-\xe9t\xe9.png"
    with open(raw, "wb") as fh:
        fh.write(b"x")
    keys = sorted(e.key for e in scan_catalog(tmp_path))
    assert keys == ["latin1-\\xe9t\\xe9.png", "sp ace, ümlaut & emoji 👢.png"]
    assert all(k.encode("utf-8") for k in keys)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        list(scan_catalog(tmp_path / "nope"))


def _jpeg_bytes(size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, I am text", "not an image"),
        (_jpeg_bytes()[:200], "cannot be decoded"),
    ],
)
def test_bad_bytes_give_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        open_image(data)


def test_oversized_images_are_refused_before_decoding() -> None:
    buffer = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buffer, "PNG")
    with pytest.raises(ImageError, match="above the limit"):
        open_image(buffer.getvalue(), max_pixels=1_000_000)


def test_exif_orientation_is_applied() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.new("RGB", (80, 40), "red").save(buffer, "JPEG", exif=exif)
    assert open_image(buffer.getvalue()).size == (40, 80)


def test_gif_first_frame_and_modes_become_rgb() -> None:
    buffer = io.BytesIO()
    frames = [Image.new("P", (20, 10), i) for i in range(3)]
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    image = open_image(buffer.getvalue())
    assert image.mode == "RGB" and image.size == (20, 10)
