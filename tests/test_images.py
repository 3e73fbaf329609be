"""Decoding hostile bytes: whatever a file holds, and whatever Pillow raises, it decodes or fails with a reason."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sketchtext.plugin.errors import ImageError
from sketchtext.plugin.images import decode_image
from tests.hostile import EITHER, EMBEDDED, INJECTED, hostile_file, hostile_plugin, write_damaged_corpus


def test_every_format_damaged_every_way_decodes_or_fails_with_its_reason(tmp_path: Path) -> None:
    expect = write_damaged_corpus(tmp_path)
    failed = {}
    for key, wanted in expect.items():
        try:
            decode_image((tmp_path / key).read_bytes(), name=key, draft_size=64, fit_side=64)
        except ImageError as exc:
            failed[key] = str(exc)
        if wanted not in (EITHER, EMBEDDED):
            assert wanted in failed.get(key, EMBEDDED), f"{key}: expected {wanted!r}, got {failed.get(key)!r}"
    assert all(reason.startswith(f"{key} ") and len(reason) > len(key) + 10 for key, reason in failed.items())
    assert 0 < len(failed) < len(expect), "some damaged files still decode, most do not"
    assert "uses an unsupported DDS variant (DXGI format 93)" in failed["lying/dxgi93.dds"]


@pytest.mark.parametrize("phase", ["open", "load"])
@pytest.mark.parametrize("kind", INJECTED, ids=lambda kind: kind.__name__)
def test_whatever_the_decoder_raises_becomes_an_image_error_with_its_message(phase: str, kind: type) -> None:
    with hostile_plugin(), pytest.raises(ImageError) as caught:
        decode_image(hostile_file(phase, kind), name="supplier.jpg")
    message = str(caught.value)
    assert message.startswith("supplier.jpg ") and f"injected {kind.__name__}" in message
    if phase == "load":
        assert "HOSTILE" in message


def test_an_extreme_aspect_ratio_is_refused_before_decoding() -> None:
    from tests.hostile import _bomb_png

    strip = _bomb_png(200_000, 1)
    started = time.perf_counter()
    with pytest.raises(ImageError, match=r"resized to 224 pixels on its short side .* aspect ratio under 318:1"):
        decode_image(strip, max_pixels=16_000_000, fit_side=224)
    assert time.perf_counter() - started < 1.0  # refused from the header: a generous bound, not a timing race
    decode_image(_bomb_png(2_000, 400), max_pixels=16_000_000, fit_side=224)  # 5:1 is fine
