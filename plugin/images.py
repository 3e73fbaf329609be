"""Decoding images safely: any file a supplier or a user sends becomes an upright RGB image or an `ImageError`.

Shared by ingest (catalogue photos), queries (sketches) and the web page (thumbnails).
"""

from __future__ import annotations

import io
import logging
import math
import re
import warnings
from types import TracebackType
from typing import cast

from PIL import Image, ImageOps, UnidentifiedImageError

from sketchtext.plugin.errors import ImageError

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 64_000_000
ORIENTATION_TAG = 0x0112
# Pillow's plugins log a line for some damaged files; each becomes one debug line of ours instead (`-vv` shows them).
PILLOW_LOGGERS = ("PIL.ImageFile", "PIL.PcxImagePlugin", "PIL.PngImagePlugin", "PIL.TiffImagePlugin")
PLUGIN_FILE = re.compile(r"(\w+)ImagePlugin\.py$")
NOT_DONE = re.compile(r"^(unimplemented|unsupported|not supported|not implemented)\s*:?\s*", re.IGNORECASE)


class _PillowToDebug(logging.Filter):
    """Drop a Pillow plugin's log record, re-logging it as one debug line of this module."""

    def filter(self, record: logging.LogRecord) -> bool:
        log.debug("pillow (%s): %s", record.name, record.getMessage())
        return False


for _name in PILLOW_LOGGERS:
    logging.getLogger(_name).addFilter(_PillowToDebug())


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB: 16/32-bit greys scaled (not clipped), transparency laid on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        low, high = cast(tuple[float, float], image.getextrema())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = image.convert("F").point(lambda value: (value - low) * scale).convert("L")
    if image.mode == "La":  # premultiplied: Pillow converts it to nothing else
        image = image.convert("LA")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        white = Image.new("RGBA", image.size, "white")
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def plugin_format(traceback: TracebackType | None) -> str | None:
    """The format whose Pillow plugin raised, from the innermost `…ImagePlugin.py` frame of a traceback."""
    found = None
    while traceback is not None:
        match = PLUGIN_FILE.search(traceback.tb_frame.f_code.co_filename)
        found = match.group(1) if match else found
        traceback = traceback.tb_next
    return found


def failure_reason(exc: Exception, fmt: str | None = None) -> str:
    """Why a file failed to decode, in words, whatever the decoder raised: the plugin's format and its message."""
    fmt = (plugin_format(exc.__traceback__) or fmt or "image").upper()
    detail = str(exc).strip() or type(exc).__name__
    if isinstance(exc, NotImplementedError):
        return f"uses an unsupported {fmt} variant ({NOT_DONE.sub('', detail)}); convert it to PNG or JPEG"
    if isinstance(exc, MemoryError):
        return f"needs more memory to decode than this machine has ({fmt}: {detail}); downscale it before ingesting"
    kind = "" if isinstance(exc, OSError | ValueError | SyntaxError) else f"{type(exc).__name__}: "
    return f"cannot be decoded as {fmt} ({kind}{detail}): the file is damaged, truncated or of an unsupported variant"


def unidentified_reason(data: bytes) -> str:
    """Why no Pillow plugin opened the bytes: Pillow drops the error of a plugin whose signature matched, so ask it."""
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        try:
            matches = accept is not None and bool(accept(data[:16]))
        except Exception:  # some signature checks trip over a very short file
            matches = False
        if not matches:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                factory(io.BytesIO(data), "")
        except Exception as exc:  # the error Pillow dropped: the header is damaged or claims an unsupported variant
            return f"is not an image Pillow can read: it starts like {fmt} but {failure_reason(exc, fmt)}"
        break
    return "is not an image Pillow can read"


def check_resized_pixels(name: str, size: tuple[int, int], fit_side: int, max_pixels: int) -> None:
    """Refuse an image whose short side scaled to `fit_side` (what the model's resize does) exceeds `max_pixels`.

    A 1 x 200 000 strip is tiny on disk and in pixels, but resized to 224 on its short side it is 224 x 44 800 000."""
    short, long = sorted(size)
    resized = fit_side * math.ceil(long * fit_side / max(short, 1))
    if resized > max_pixels:
        raise ImageError(
            f"{name} is {size[0]}x{size[1]} pixels: resized to {fit_side} pixels on its short side it would be "
            f"{resized:,} pixels, above the limit of {max_pixels:,}; crop it to an aspect ratio under "
            f"{max_pixels // fit_side**2}:1"
        )


def open_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image", fit_side: int | None = None
) -> Image.Image:
    """Decode image bytes to an upright RGB image (first frame), refusing bombs and oversized images."""
    return decode_image(data, max_pixels=max_pixels, name=name, fit_side=fit_side)[0]


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str = "image",
    draft_size: int | None = None,
    fit_side: int | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode image bytes to an upright RGB image and the upright full-resolution (width, height).

    `draft_size` lets JPEG decoding scale down by 1/2, 1/4 or 1/8 while staying at least that many pixels a side,
    which bounds memory and time for photos much larger than the model's input. `fit_side` refuses aspect ratios
    whose resize to that short side would exceed `max_pixels`, before any pixel is decoded. Whatever the decoder
    raises becomes an `ImageError` naming the format and the reason: one file never stops a run.
    """
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    fmt = None
    try:
        with warnings.catch_warnings(record=True) as caught:  # corrupt EXIF and the like: the pixels still count
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format
            if image.width * image.height > max_pixels:
                raise ImageError(
                    f"{name} is {image.width}x{image.height} pixels, above the limit of {max_pixels:,}; "
                    "downscale it before ingesting"
                )
            if fit_side:
                check_resized_pixels(name, image.size, fit_side, max_pixels)
            image.seek(0)
            width, height = image.size
            if image.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8):  # these orientations swap the sides
                width, height = height, width
            if draft_size:
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            for warning in caught:
                log.debug("%s: pillow warns: %s", name, warning.message)
            return to_rgb(ImageOps.exif_transpose(image)), (width, height)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        reason = unidentified_reason(data)
        log.debug("%s %s", name, reason)
        raise ImageError(f"{name} {reason}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name} looks like a decompression bomb: {exc}") from exc
    except Exception as exc:  # Pillow's plugins raise anything: struct.error, IndexError, NotImplementedError...
        reason = failure_reason(exc, fmt)
        log.debug("%s %s", name, reason)
        raise ImageError(f"{name} {reason}") from exc
