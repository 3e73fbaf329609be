"""A generated corpus of everything a supplier might send, with what sketchtext must make of each file."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageDraw, ImageFile

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


def write_expected(root: Path, expect: dict[str, str], key: str, data: bytes, outcome: str) -> Path:
    """Write one corpus file and note what sketchtext must make of it."""
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    expect[key] = outcome
    return path


def write_hostile_catalog(root: Path) -> dict[str, str]:
    """Write the corpus; return key -> EMBEDDED or a fragment of the expected failure reason."""
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str] = {}

    def put(key: str, data: bytes, outcome: str) -> Path:
        return write_expected(root, expect, key, data, outcome)

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


EITHER = "embedded or failed"  # a damaged file a decoder may still read: any outcome but a crash is right
CUTS = (0.25, 0.5, 0.9)


def _writable_formats() -> dict[str, bytes]:
    """One small image in every format Pillow can write (its first mode that saves), by format name."""
    Image.init()
    found = {}
    for fmt in sorted(Image.SAVE):
        for mode in ("RGB", "P", "1"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # IM: still read, soon not written
                    found[fmt] = _save(_photo(mode, (40, 30)), fmt)
                break
            except Exception:  # this format cannot save this mode (or at all, like the stub handlers)
                continue
    return found


def _dds_dx10(dxgi_format: int) -> bytes:
    """A DDS header with a DX10 extension naming `dxgi_format`, then a few pixels."""
    pixel_format = struct.pack("<II4s5I", 32, 0x4, b"DX10", 0, 0, 0, 0, 0)
    header = struct.pack("<7I44x", 124, 0x1007, 4, 4, 64, 0, 1) + pixel_format + struct.pack("<5I", 0x1000, 0, 0, 0, 0)
    return b"DDS " + header + struct.pack("<5I", dxgi_format, 3, 0, 1, 0) + bytes(64)


def _patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _lying_headers() -> dict[str, tuple[bytes, str]]:
    """Headers that claim variants the decoders do not support, with a fragment of the reason each must give."""
    bmp = _save(_photo(), "BMP")
    tiff = _save(_photo(), "TIFF")
    tag = struct.pack("<HHIH", 259, 3, 1, 1)  # Compression = none, as Pillow writes it (little-endian)
    ico = _save(_photo(size=(32, 32)), "ICO", sizes=[(32, 32)])
    png = _save(_photo(), "PNG")
    frames = [_photo("P"), _photo("P").rotate(30), _photo("P").rotate(60)]
    gif = _save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    second = gif.index(b"\x2c", gif.index(b"\x2c") + 1)  # the second image descriptor
    return {
        "lying/dxgi93.dds": (_dds_dx10(93), "unsupported DDS variant (DXGI format 93)"),
        "lying/depth7.bmp": (_patched(bmp, 28, struct.pack("<H", 7)), "BMP"),
        "lying/compression.tiff": (tiff.replace(tag, struct.pack("<HHIH", 259, 3, 1, 54321)), "TIFF"),
        "lying/sizes.ico": (_patched(ico, 6, b"\x07\x09") + b"", EITHER),
        "lying/offset.ico": (_patched(ico, 6 + 12, struct.pack("<I", 1 << 30)), "ICO"),
        "lying/crc.png": (_patched(png, 29, b"\x00\x00\x00\x00"), "PNG"),
        "lying/broken-frame.gif": (gif[: second + 12] + bytes(40) + gif[second + 52 :], EITHER),
    }


def write_damaged_corpus(root: Path) -> dict[str, str]:
    """Every format Pillow writes, whole, cut at several offsets and with flipped header and body bytes, plus
    headers that lie; return key -> EMBEDDED, EITHER, or a fragment of the expected failure reason."""
    expect: dict[str, str] = {}

    def put(key: str, data: bytes, outcome: str) -> None:
        write_expected(root, expect, key, data, outcome)

    for fmt, data in _writable_formats().items():
        put(f"whole/{fmt.lower()}", data, EITHER)  # some formats Pillow writes but cannot read back (PDF, EPS)
        for cut in CUTS:
            put(f"cut/{fmt.lower()}-{int(cut * 100)}", data[: int(len(data) * cut)], EITHER)
        flipped_header = bytes(b ^ 0xFF if 4 <= i < 40 else b for i, b in enumerate(data))
        put(f"flipped/{fmt.lower()}-header", flipped_header, EITHER)
        middle = len(data) // 2
        put(
            f"flipped/{fmt.lower()}-body",
            _patched(data, middle, bytes(b ^ 0xFF for b in data[middle : middle + 16])),
            EITHER,
        )
    for key, (data, outcome) in _lying_headers().items():
        put(key, data, outcome)
    return expect


# Fault injection: a Pillow plugin whose files name the exception to raise and when (at open or at load).
INJECTED = (
    NotImplementedError,
    SyntaxError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    EOFError,
    ZeroDivisionError,
    ValueError,
    OSError,
    MemoryError,
    RuntimeError,
    AttributeError,
    AssertionError,
    RecursionError,
)
HOSTILE_MAGIC = b"HOSTILE "


def hostile_file(phase: str, kind: type[BaseException]) -> bytes:
    """Bytes the injected plugin opens, then raises `kind` at `phase` ("open" or "load")."""
    return HOSTILE_MAGIC + f"{phase} {kind.__name__}".encode()


def write_injected(root: Path, expect: dict[str, str]) -> None:
    """One file per injected exception and phase under `root/injected`, each expected to fail naming its exception
    (only where `hostile_plugin` is active in the process that decodes)."""
    for phase in ("open", "load"):
        for kind in INJECTED:
            key = f"injected/{phase}-{kind.__name__}"
            write_expected(root, expect, key, hostile_file(phase, kind), f"injected {kind.__name__}")


def _raise_named(data: bytes) -> None:
    name = data.decode().split()[-1]
    kind = next(k for k in INJECTED if k.__name__ == name)
    raise kind(f"injected {name}")


class HostileImageFile(ImageFile.ImageFile):
    format = "HOSTILE"
    format_description = "raises what its bytes name"

    def _open(self) -> None:
        assert self.fp is not None
        data = self.fp.read()
        if b" open " in data:
            _raise_named(data)
        self._data = data
        self._size = (8, 8)
        self._mode = "RGB"

    def load(self):  # type: ignore[override]
        _raise_named(self._data)


@contextlib.contextmanager
def hostile_plugin() -> Iterator[None]:
    """Register the fault-injecting plugin for the duration (in this process only)."""
    Image.init()
    Image.register_open(HostileImageFile.format, HostileImageFile, lambda prefix: prefix.startswith(HOSTILE_MAGIC))
    try:
        yield
    finally:
        Image.ID.remove(HostileImageFile.format)
        del Image.OPEN[HostileImageFile.format]
