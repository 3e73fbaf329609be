"""Decoding images safely: any file a supplier or a user sends becomes an upright RGB image or an `ImageError`.

Shared by ingest (catalogue photos), queries (sketches) and the web page (thumbnails).
"""

from __future__ import annotations

import io
import warnings
from typing import cast

from PIL import Image, ImageOps, UnidentifiedImageError

from sketchtext.plugin.errors import ImageError

DEFAULT_MAX_PIXELS = 64_000_000
ORIENTATION_TAG = 0x0112


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB: 16/32-bit greys scaled (not clipped), transparency laid on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        low, high = cast(tuple[float, float], image.getextrema())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = image.convert("F").point(lambda value: (value - low) * scale).convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        white = Image.new("RGBA", image.size, "white")
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image") -> Image.Image:
    """Decode image bytes to an upright RGB image (first frame), refusing bombs and oversized images."""
    return decode_image(data, max_pixels=max_pixels, name=name)[0]


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image", draft_size: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode image bytes to an upright RGB image and the upright full-resolution (width, height).

    `draft_size` lets JPEG decoding scale down by 1/2, 1/4 or 1/8 while staying at least that many pixels a side,
    which bounds memory and time for photos much larger than the model's input."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # corrupt EXIF and the like: the pixels still count
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > max_pixels:
                raise ImageError(
                    f"{name} is {image.width}x{image.height} pixels, above the limit of {max_pixels:,}; "
                    "downscale it before ingesting"
                )
            image.seek(0)
            width, height = image.size
            if image.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8):  # these orientations swap the sides
                width, height = height, width
            if draft_size:
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            return to_rgb(ImageOps.exif_transpose(image)), (width, height)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name} is not an image Pillow can read") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name} looks like a decompression bomb: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"{name} cannot be decoded: {exc}") from exc
