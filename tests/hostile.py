"""A generated corpus of everything a supplier might send, with what sketchtext must make of each file."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

EMBEDDED = "embedded"


def _photo(mode: str = "RGB", size: tuple[int, int] = (96, 72)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).ellipse((10, 10, size[0] - 10, size[1] - 20), fill="red", outline="black", width=3)
    return image.convert(mode)


def _save(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny file that claims a huge 1-bit image: the header is all Pillow needs to refuse it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    body = zlib.compress(row * 64, 9)  # a few rows suffice; the decoder must never get that far
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def write_hostile_catalog(root: Path) -> dict[str, str]:
    """Write the corpus; return key -> EMBEDDED or a fragment of the expected failure reason."""
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str] = {}

    def put(key: str, data: bytes, outcome: str) -> Path:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expect[key] = outcome
        return path

    jpeg = _save(_photo(), "JPEG")
    put("good/plain.jpg", jpeg, EMBEDDED)
    put("good/png-named.jpg", _save(_photo(), "PNG"), EMBEDDED)  # wrong extension: the content decides
    put("good/no-extension", jpeg, EMBEDDED)
    put("good/bilevel.png", _save(_photo("1"), "PNG"), EMBEDDED)
    put("good/grey16.png", _save(_photo("L").convert("I;16"), "PNG"), EMBEDDED)
    put("good/cmyk.jpg", _save(_photo("CMYK"), "JPEG"), EMBEDDED)
    put("good/palette-alpha.png", _save(_photo("P"), "PNG", transparency=0), EMBEDDED)
    put("good/rgba.png", _save(_photo("RGBA"), "PNG"), EMBEDDED)
    put("good/la.png", _save(_photo("LA"), "PNG"), EMBEDDED)
    frames = [_photo("P"), _photo("P").rotate(30)]
    put("good/animated.gif", _save(frames[0], "GIF", save_all=True, append_images=frames[1:]), EMBEDDED)
    put(
        "good/multipage.tiff",
        _save(frames[0].convert("RGB"), "TIFF", save_all=True, append_images=[_photo()]),
        EMBEDDED,
    )
    put("good/photo.webp", _save(_photo(), "WEBP"), EMBEDDED)
    put("good/photo.bmp", _save(_photo(), "BMP"), EMBEDDED)
    put("good/icon.ico", _save(_photo(size=(64, 64)), "ICO"), EMBEDDED)  # a format nobody listed
    exif = Image.Exif()
    exif[0x0112] = 8
    put("good/exif-rotated.jpg", _save(_photo(), "JPEG", exif=exif), EMBEDDED)
    put("good/name with spaces, ümlauts & 👢.png", _save(_photo(), "PNG"), EMBEDDED)
    put("good/semi;colon'quote\".png", _save(_photo(), "PNG"), EMBEDDED)

    put("bad/empty.jpg", b"", "empty")
    put("bad/truncated.jpg", jpeg[: len(jpeg) // 3], "cannot be decoded")
    put("bad/text.jpg", b"this is a shopping list, not a photo\n", "not an image")
    put("bad/readme.txt", b"hello", "not an image")
    put("bad/fake.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", "not an image")
    put("bad/garbage.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2, "not an image")
    put("bad/bomb.png", _bomb_png(30_000, 30_000), "decompression bomb")
    put("bad/wide.png", _bomb_png(200_000, 400), "above the limit")
    raw = os.fsencode(root / "bad") + b"/latin1-caf\xe9.txt"
    with open(raw, "wb") as fh:
        fh.write(b"not utf-8 named, not an image")
    expect["bad/latin1-caf\\xe9.txt"] = "not an image"

    os.mkfifo(root / "bad" / "pipe.jpg")
    expect["bad/pipe.jpg"] = "not a regular file"
    os.symlink(root / "bad" / "nowhere.jpg", root / "bad" / "dangling.jpg")
    expect["bad/dangling.jpg"] = "not a regular file"
    outside = root.parent / "outside.jpg"
    outside.write_bytes(jpeg)
    os.symlink(outside, root / "bad" / "escape.jpg")
    expect["bad/escape.jpg"] = "leaves the catalog"
    os.symlink(root / "good" / "plain.jpg", root / "good" / "inside-link.jpg")
    expect["good/inside-link.jpg"] = EMBEDDED

    locked = put("bad/locked.jpg", jpeg, "Permission denied")
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads it anyway
        expect["bad/locked.jpg"] = EMBEDDED
    return expect
