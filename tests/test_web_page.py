"""The search page in a real headless Chromium: draw a stroke, type words, pick a category, see results."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sketchtext.plugin.settings import WebSettings
from sketchtext.plugin.web.app import create_app
from sketchtext.plugin.web.feedback import feedback_marks
from tests.test_web import build_world

CHROMIUM_ENV = "SKETCHTEXT_TEST_CHROMIUM"
ARTIFACTS_ENV = "SKETCHTEXT_TEST_ARTIFACTS"
TOKEN = "page-token"
# Debian's chromium, kept quiet: no network of its own, no GPU, no first-run work.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = pytest.mark.slow


def chromium_path() -> str:
    found = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip(f"no Chromium: install Debian's `chromium` (.ci/run does) or set {CHROMIUM_ENV}")
    return found


@contextmanager
def serving(app) -> Iterator[str]:
    """An app under uvicorn on a free loopback port, in a thread."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: asyncio sets NODELAY
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def page_world(tmp_path_factory: pytest.TempPathFactory, tiny_encoder):
    plugin, settings, root = build_world(tmp_path_factory.mktemp("page"), tiny_encoder)
    yield plugin, settings, root
    plugin.close()


@pytest.fixture(scope="module")
def server(page_world) -> Iterator[str]:
    """`sketchtext serve`'s app under uvicorn on a free loopback port, with a token."""
    plugin, settings, _ = page_world
    settings = settings.model_copy(update={"web": WebSettings(token=TOKEN)})  # type: ignore[arg-type]
    with serving(create_app(plugin, settings)) as url:
        yield url


@pytest.fixture
def page(server: str):
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test extra: pip install -e '.[test]'")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
            yield context.new_page()
        finally:
            browser.close()


def artifact_path(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get(ARTIFACTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def stroke(page, points: list[tuple[float, float]]) -> None:
    """Draw one stroke through points given as fractions of the canvas."""
    box = page.locator("#canvas").bounding_box()
    at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=6)
    page.mouse.up()


def test_draw_type_filter_and_see_results(server: str, page, tmp_path: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))  # a script error, or one the CSP blocked
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    searches: list[dict] = []
    page.on("request", lambda r: searches.append(json.loads(r.post_data)) if r.url.endswith("/api/search") else None)

    # The token arrives once in the URL, is kept for the tab and leaves the address bar.
    page.goto(f"{server}/?token={TOKEN}")
    assert "token" not in page.url
    page.wait_for_function("() => document.querySelectorAll('#category option').length === 3")
    assert page.locator("#meta").inner_text() == "sketchtext · 8 photos"

    # A stroke, undone, then the real drawing: a boot-like outline.
    stroke(page, [(0.2, 0.2), (0.8, 0.8)])
    assert page.locator("#hint").is_hidden()
    page.click("#undo")
    assert page.locator("#hint").is_visible()
    stroke(page, [(0.3, 0.2), (0.35, 0.65), (0.75, 0.7), (0.78, 0.55), (0.5, 0.5), (0.45, 0.2)])
    page.fill("#text", "in red")
    page.select_option("#category", "shoes")

    started = time.perf_counter()
    page.click("#search")
    page.wait_for_function("() => /results? ·/.test(document.querySelector('#status').textContent)")
    seconds = time.perf_counter() - started
    cards = page.locator("#grid .card")
    assert cards.count() == 4  # every shoe, best first
    assert set(page.locator("#grid .chip:not(.scene)").all_inner_texts()) == {"shoes"}
    assert all(s.startswith("SKU-") for s in page.locator("#grid .sku").all_inner_texts())
    page.wait_for_function(
        "() => [...document.querySelectorAll('#grid .card img')].every(img => img.complete && img.naturalWidth > 0)"
    )
    sent = searches[-1]
    assert sent["sketch"].startswith("data:image/png;base64,") and sent["text"] == "in red"
    assert sent["category"] == "shoes" and sent["regions"] is False
    assert page.locator("#regions-field").is_hidden()  # this collection holds no regions: no such choice offered
    assert seconds < 3, f"results took {seconds:.2f}s"

    screenshot = artifact_path(tmp_path, "search-page.png")
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"\nscreenshot of the search page: {screenshot} (results in {seconds * 1000:.0f} ms)")

    # A result's photo opens large and closes with Escape.
    cards.first.click()
    lightbox = page.locator("#lightbox")
    assert lightbox.is_visible()
    page.wait_for_function("() => document.querySelector('#lightbox-img').naturalWidth > 0")
    assert "shoe" in page.locator("#lightbox-caption").inner_text()
    page.keyboard.press("Escape")
    assert lightbox.is_hidden()

    # Clearing the canvas and the words leaves nothing to search.
    page.click("#clear")
    page.fill("#text", "")
    page.wait_for_function("() => document.querySelectorAll('#grid .card').length === 0")
    assert errors == []


def test_the_page_asks_for_a_token_and_rejects_a_wrong_one(server: str, page) -> None:
    page.goto(server + "/")
    assert page.locator("input[name=token]").is_visible()
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelector('#token-message').textContent.includes('not accepted')")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#canvas")
    page.reload()  # the token lives in sessionStorage: a reload finds its way back in
    page.wait_for_selector("#canvas")


def test_scan_the_catalogue_again_and_mark_a_hit(server: str, page, page_world) -> None:
    plugin, _, _ = page_world
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{server}/?token={TOKEN}")
    page.wait_for_selector("#run-list li")
    latest = int(page.locator("#run-list li").first.inner_text().split()[0].lstrip("#"))
    assert page.locator("#rescan").inner_text() == "Scan catalogue again"

    # The server scans the catalogue in the background; the list shows the new run once it ends.
    page.click("#rescan")
    page.wait_for_function(
        f"() => document.querySelector('#run-list li').textContent.startsWith('#{latest + 1} completed')"
    )
    page.wait_for_function("() => document.querySelector('#rescan').textContent === 'Scan catalogue again'")
    assert "8 unchanged" in page.locator("#run-list li").first.inner_text()

    # A hit of a sketch + words search, marked in its lightbox: both marks are kept with the query.
    marks_before = len(feedback_marks(plugin.db, plugin.collection))
    stroke(page, [(0.3, 0.2), (0.35, 0.65), (0.75, 0.7), (0.78, 0.55)])
    page.fill("#text", "in blue")
    page.click("#search")
    page.wait_for_function("() => /results? ·/.test(document.querySelector('#status').textContent)")
    page.locator("#grid .card").first.click()
    page.click("#mark-match")
    page.wait_for_function("() => document.querySelector('#mark-status').textContent.includes('this is it')")
    page.click("#mark-wrong")
    page.wait_for_function("() => document.querySelector('#mark-status').textContent.includes('wrong')")
    assert page.locator("#lightbox").is_visible()  # marking does not close the photo
    marks = feedback_marks(plugin.db, plugin.collection)[marks_before:]
    assert [m.mark for m in marks] == ["match", "wrong"] and {m.text for m in marks} == {"in blue"}
    assert all(m.sketch_png and m.sketch_png.startswith(b"\x89PNG") for m in marks)
    assert errors == []


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory, tiny_encoder) -> Iterator[str]:
    """A catalogue of 60 products (more than the page's 24 a page), served without a token."""
    from sketchtext.plugin.facade import SketchTextPlugin
    from sketchtext.plugin.settings import Settings
    from tests.conftest import TINY_SPEC, draw_product

    tmp = tmp_path_factory.mktemp("page-big")
    colours = ["red", "blue", "green", "orange", "purple", "black", "yellow", "pink", "brown", "grey"]
    rows = ["path,sku"] + [f"p/item{i:02d}.png,SKU-{i:02d}" for i in range(60)]
    for i in range(60):
        draw_product(tmp / "catalog" / f"p/item{i:02d}.png", i, colours[i % len(colours)])
    (tmp / "catalog" / "catalog.csv").write_text("\n".join(rows) + "\n")
    settings = Settings(data_dir=tmp / "data", model={"spec": TINY_SPEC, "device": "cpu", "batch_size": 32})
    with SketchTextPlugin(settings, encoder=tiny_encoder) as plugin:
        plugin.ingest(tmp / "catalog")
        with serving(create_app(plugin, settings)) as url:
            yield url


def test_similar_and_paging_on_scroll(big_server: str, page) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    searches: list[dict] = []
    page.on("request", lambda r: searches.append(json.loads(r.post_data)) if r.url.endswith("/api/search") else None)
    page.goto(big_server + "/")
    page.wait_for_function("() => /60 photos/.test(document.querySelector('#meta').textContent)")
    page.fill("#text", "a red shoe")
    page.click("#search")
    page.wait_for_function("() => document.querySelectorAll('#grid .card').length >= 24")
    assert searches[-1].get("offset") is None and searches[-1]["limit"] == 24

    # Scrolling to the end of the grid loads the next pages (offset = hits shown) until the catalogue runs out.
    for shown in (48, 60):
        page.locator("#more").scroll_into_view_if_needed()
        page.wait_for_function(f"() => document.querySelectorAll('#grid .card').length === {shown}")
    ranks = page.locator("#grid .rank").all_inner_texts()
    assert ranks == [f"#{i}" for i in range(1, 61)]
    skus = page.locator("#grid .sku").all_inner_texts()
    assert len(set(skus)) == 60  # no hit twice across pages
    assert [s.get("offset") for s in searches[-2:]] == [24, 48]

    # "Similar" on a hit searches like that asset: it comes first, and the words still count.
    target = page.locator("#grid .card").nth(30)
    sku = target.locator(".sku").inner_text()
    page.uncheck("#auto")  # no search of its own for the emptied words: only the button's search runs
    page.fill("#text", "")
    before = len(searches)
    target.locator(".similar").click()
    assert page.locator("#lightbox").is_hidden()  # the button does not open the photo
    page.wait_for_function(f"() => document.querySelector('#grid .card .sku')?.textContent === {json.dumps(sku)}")
    sent = searches[before]
    assert sent["like"] and sent["sketch"] is None and sent["text"] is None and sent.get("offset") is None
    assert page.locator("#like-bar").is_visible() and page.locator("#like-label").inner_text() == sku
    assert page.locator("#grid .score").first.inner_text() == "1.000"

    # Clearing "similar" goes back to the words.
    page.fill("#text", "a red shoe")
    page.click("#like-clear")
    page.wait_for_function("() => document.querySelector('#like-bar').hidden")
    page.wait_for_function(f"() => document.querySelector('#grid .card .sku')?.textContent !== {json.dumps(sku)}")
    assert searches[-1]["like"] is None and searches[-1]["text"] == "a red shoe"
    assert errors == []
