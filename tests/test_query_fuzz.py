"""Fuzzing queries: whatever a host or a user puts in a SketchTextQuery, search answers or raises our errors."""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sketchtext.plugin.errors import InvalidSketchError, QueryError, SketchTextError
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.images import to_rgb
from sketchtext.plugin.search import SketchTextQuery
from sketchtext.plugin.settings import Settings
from tests.conftest import TINY_SPEC, draw_product

MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "I;16"]
SIDES = st.one_of(st.integers(0, 48), st.sampled_from([1, 2, 300, 20_000, 200_000]))
PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}
OUTCOMES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory, tiny_encoder) -> Iterator[SketchTextPlugin]:
    root = tmp_path_factory.mktemp("fuzz")
    rows = ["path,scene"]
    for i, category in enumerate(["shoes", "bags", "shoes", "bags"]):
        draw_product(root / "catalog" / category / f"item{i}.png", i, "red")
        rows.append(f"{category}/item{i}.png,{'beach' if i < 2 else 'street'}")
    (root / "catalog" / "catalog.csv").write_text("\n".join(rows) + "\n")
    settings = Settings(data_dir=root / "data", model={"spec": TINY_SPEC, "device": "cpu", "batch_size": 4})
    with SketchTextPlugin(settings, encoder=tiny_encoder) as p:
        p.ingest(root / "catalog")
        yield p


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """`good` three times in four, so the fuzz reaches the encoders and the store, not only the field checks."""
    return st.integers(0, 3).flatmap(lambda pick: bad if pick == 3 else good)  # hypothesis leans to 0


@st.composite
def images(draw: st.DrawFn) -> Image.Image:
    width, height = draw(SIDES), draw(SIDES)
    if width * height > 400_000:  # bounded test memory; the aspect ratio is what counts
        width, height = (width, 1) if width > height else (1, height)
    image = Image.new("RGB", (width, height), draw(st.sampled_from(["white", "black", "red"])))
    if width > 2 and height > 2:
        image.putpixel((1, 1), (0, 0, 255))
    return image.convert(draw(st.sampled_from(MODES)))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    (image if image.mode in PNG_MODES else to_rgb(image)).save(buffer, "PNG")
    return buffer.getvalue()


SKETCHES = mostly(
    st.one_of(st.none(), images(), images().filter(lambda i: i.width * i.height > 0).map(png)),
    st.one_of(
        st.binary(max_size=64),
        st.text(max_size=40),
        st.sampled_from(["data:image/png;base64,", "data:,", "data:,x", "iVBORw0KGgo=", "a\x00b", "/dev/zero"]),
        st.sampled_from([Path("/dev/zero"), Path("/nonexistent.png"), Path("/"), Path("a\x00b")]),
        st.integers(),
        st.floats(),
        st.lists(st.integers(0, 255), max_size=4),
    ),
)


def filters(known: list[str]) -> st.SearchStrategy:
    return mostly(
        st.one_of(st.none(), st.sampled_from(known), st.lists(st.sampled_from(known), min_size=1)),
        st.one_of(
            st.sampled_from(["boots", "", known[0].upper()]),
            st.lists(st.one_of(st.sampled_from([known[0], "boot"]), st.integers(), st.none()), max_size=3),
            st.text(max_size=10),
            st.integers(),
            st.binary(max_size=4),
        ),
    )


TEXTS = mostly(
    st.one_of(st.none(), st.text(max_size=30), st.just("\x00 red")), st.one_of(st.integers(), st.binary(max_size=8))
)
LIMITS = mostly(
    st.integers(1, 30),
    st.one_of(
        st.integers(-3, 0), st.sampled_from([2**64, 10**9, 10_001, True]), st.floats(), st.text(max_size=3), st.none()
    ),
)
COMBINE = mostly(st.one_of(st.none(), st.sampled_from(["sum", "composed", "fusion"])), st.sampled_from(["bad", 5]))


@settings(
    max_examples=5_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(
    sketch=SKETCHES,
    text=TEXTS,
    category=filters(["shoes", "bags"]),
    scene=filters(["beach", "street"]),
    limit=LIMITS,
    combine=COMBINE,
)
def test_any_query_is_answered_or_refused_with_our_errors(plugin, sketch, text, category, scene, limit, combine):
    query = SketchTextQuery(sketch=sketch, text=text, category=category, scene=scene, limit=limit, combine=combine)
    try:
        hits = plugin.search(query)
    except SketchTextError as exc:
        assert str(exc), "every refusal says why"
        OUTCOMES[type(exc).__name__] += 1
        return
    OUTCOMES["answered"] += 1
    assert isinstance(hits, list) and len(hits) <= limit


def test_fuzz_saw_both_answers_and_refusals() -> None:
    """Runs after the fuzz test (file order): the fuzz reached searches that answer, not only refusals."""
    if not OUTCOMES:
        pytest.skip("run with the fuzz test")
    print(dict(OUTCOMES))
    assert OUTCOMES["answered"] > 500 and sum(OUTCOMES.values()) >= 5_000


def test_a_tiny_png_of_an_extreme_aspect_ratio_is_refused_in_milliseconds(plugin) -> None:
    strip = png(Image.new("1", (200_000, 1)))
    assert len(strip) < 1_000
    started = time.perf_counter()
    with pytest.raises(InvalidSketchError, match="aspect ratio under 79:1"):
        plugin.search(SketchTextQuery(sketch=strip))
    assert time.perf_counter() - started < 1.0  # from the header: a generous bound, not a timing race


def test_a_str_sketch_is_never_read_as_a_path(plugin, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    draw_product(secret, 1, "red")
    with pytest.raises(InvalidSketchError, match="never read as a path"):
        plugin.search(SketchTextQuery(sketch=str(secret)))
    assert plugin.search(SketchTextQuery(sketch=secret, limit=1))  # a Path is


def test_filters_and_batches_name_what_is_wrong(plugin) -> None:
    with pytest.raises(QueryError, match="category is an empty list"):
        plugin.search(SketchTextQuery(text="red", category=[]))
    with pytest.raises(QueryError, match="Unknown category 'boots'; the collection has: bags, shoes"):
        plugin.search(SketchTextQuery(text="red", category="boots"))
    with pytest.raises(QueryError, match=r"Query 1 of the batch: limit must be a whole number, got str '5'"):
        plugin.search_batch([SketchTextQuery(text="red"), SketchTextQuery(text="red", limit="5")])  # type: ignore[arg-type]
