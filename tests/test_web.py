"""The search page's JSON API (`sketchtext serve`), through Starlette's TestClient: answers, bad input, access."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from PIL import Image
from starlette.testclient import TestClient

from sketchtext.plugin.db import asset_id
from sketchtext.plugin.errors import (
    CollectionNotFoundError,
    DatabaseUnavailableError,
    EmptyQueryError,
    InvalidSketchError,
    ModelMismatchError,
    StoreUnavailableError,
)
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.settings import Settings, WebSettings
from sketchtext.plugin.web.app import create_app
from tests.conftest import TINY_SPEC, draw_product

COLOURS = ["red", "blue", "green", "orange", "purple", "black", "yellow", "pink"]
TOKEN = "s3cret-token"


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def build_world(tmp: Path, encoder) -> tuple[SketchTextPlugin, Settings, Path]:
    """Eight products in two categories and two scenes, ingested with the tiny model."""
    root = tmp / "catalog"
    rows = ["path,sku,title,scene"]
    for i, colour in enumerate(COLOURS):
        category = "shoes" if i % 2 == 0 else "bags"
        key = f"{category}/item{i}.png"
        draw_product(root / key, i, colour)
        rows.append(f"{key},SKU-{i},{colour.title()} {category[:-1]},{'beach' if i < 4 else 'street'}")
    (root / "catalog.csv").write_text("\n".join(rows) + "\n")
    settings = Settings(data_dir=tmp / "data", model={"spec": TINY_SPEC, "device": "cpu", "batch_size": 8})
    plugin = SketchTextPlugin(settings, encoder=encoder)
    plugin.ingest(root)
    return plugin, settings, root


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_encoder) -> Iterator[tuple[SketchTextPlugin, Settings, Path]]:
    plugin, settings, root = build_world(tmp_path_factory.mktemp("web"), tiny_encoder)
    yield plugin, settings, root
    plugin.close()


@pytest.fixture(scope="module")
def client(world) -> TestClient:
    plugin, settings, _ = world
    return TestClient(create_app(plugin, settings))


@pytest.fixture
def sketch(world) -> str:
    _, _, root = world
    return data_url((root / "shoes/item0.png").read_bytes())


def with_web(settings: Settings, **web: object) -> Settings:
    return settings.model_copy(update={"web": WebSettings(**web)})  # type: ignore[arg-type]


# -- answers


def test_search_with_sketch_text_and_category_returns_hits_with_metadata(client, sketch) -> None:
    response = client.post("/api/search", json={"sketch": sketch, "text": "red", "category": "shoes", "limit": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    hits = body["hits"]
    assert len(hits) == 3
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert {h["category"] for h in hits} == {"shoes"}
    assert all(h["sku"].startswith("SKU-") and h["title"] and h["asset_id"] for h in hits)
    assert body["took_ms"] > 0
    thumb = client.get(hits[0]["thumb_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size[0] <= 256
    photo = client.get(hits[0]["photo_url"])
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/png"


def test_search_takes_multipart_bytes_and_several_filter_values(client, world) -> None:
    _, _, root = world
    response = client.post(
        "/api/search",
        files={"sketch": ("sketch.png", (root / "bags/item1.png").read_bytes(), "image/png")},
        data={"scene": ["beach", "street"], "limit": "20"},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["hits"]) == len(COLOURS)


def test_text_alone_and_scene_filter(client) -> None:
    response = client.post("/api/search", json={"text": "a blue bag", "scene": "street"})
    assert response.status_code == 200, response.text
    assert {h["scene"] for h in response.json()["hits"]} == {"street"}


def test_facets_come_from_the_collections_embedded_assets(client) -> None:
    response = client.get("/api/facets")
    assert response.json() == {
        "collection": "sketchtext",
        "assets": len(COLOURS),
        "categories": ["bags", "shoes"],
        "scenes": ["beach", "street"],
        "regions": False,
    }


def test_a_regions_search_reranks_where_the_collection_has_them(client, world, sketch, tiny_encoder) -> None:
    refused = client.post("/api/search", json={"sketch": sketch, "regions": True})
    assert refused.status_code == 422 and "holds no photo regions" in refused.json()["error"]
    plugin, settings, root = world
    regional = Settings(
        data_dir=settings.data_dir, model=settings.model, store={"collection": "with-regions", "regions": True}
    )
    with SketchTextPlugin(regional, encoder=tiny_encoder) as other:
        other.ingest(root)
        with TestClient(create_app(other, regional)) as regions_client:
            assert regions_client.get("/api/facets").json()["regions"] is True
            plain = regions_client.post("/api/search", json={"sketch": sketch, "limit": 8}).json()["hits"]
            reranked = regions_client.post("/api/search", json={"sketch": sketch, "limit": 8, "regions": True})
    assert reranked.status_code == 200, reranked.text
    hits = reranked.json()["hits"]
    assert {h["key"] for h in hits} == {h["key"] for h in plain}  # the same candidates, ...
    assert [h["score"] for h in hits] != [h["score"] for h in plain]  # ... scored with their regions


def test_page_and_its_files_are_served(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
    assert client.get("/static/../web.py").status_code == 404
    assert client.get("/static/index.html").status_code == 404


def test_thumbnails_revalidate_with_their_etag(client, sketch) -> None:
    hit = client.post("/api/search", json={"sketch": sketch}).json()["hits"][0]
    first = client.get(hit["thumb_url"])
    assert "max-age" in first.headers["cache-control"]
    again = client.get(hit["thumb_url"], headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and not again.content


# -- bad input: clear 4xx answers, never a 500


BLANK = png(Image.new("RGB", (64, 64), "white"))


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"sketch": data_url(b"hello, not an image")}, 422, "not an image"),
        ({"sketch": "data:image/png;base64,%%%"}, 422, "invalid base64"),
        ({"sketch": "/etc/passwd"}, 422, "data URL"),
        ({"sketch": data_url(BLANK)}, 422, "blank"),
        ({}, 422, "neither a sketch nor text"),
        ({"text": "   "}, 422, "neither a sketch nor text"),
        ({"text": "red", "colour": "red"}, 422, "unknown field 'colour'"),
        ({"text": "red", "category": "hats"}, 422, "Unknown category 'hats'; the collection has: bags, shoes"),
        ({"text": "red", "scene": ["beach", "moon"]}, 422, "Unknown scene 'moon'"),
        ({"text": "red", "limit": 0}, 422, "limit"),
        ({"text": "red", "limit": 10_000}, 422, "limit"),
        ({"text": 5}, 422, "text"),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_bad_json_searches_get_clear_4xx(client, body, status, says) -> None:
    response = client.post("/api/search", json=body)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]


def test_bodies_that_are_not_json_or_a_form(client) -> None:
    response = client.post("/api/search", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    response = client.post("/api/search", content=b"text=red", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "multipart/form-data" in response.json()["error"]
    response = client.post("/api/search", files={"sketch": ("s.png", b"GIF89a nonsense", "image/png")})
    assert response.status_code == 422 and "not an image" in response.json()["error"]
    response = client.post("/api/search", files={"text": ("t.txt", b"red", "text/plain")})
    assert response.status_code == 422 and "only 'sketch' may be a file" in response.json()["error"]


def test_uploads_over_the_limit_get_413(world) -> None:
    plugin, settings, root = world
    small = TestClient(create_app(plugin, with_web(settings, max_upload_bytes=4096)))
    big = png(Image.effect_noise((128, 128), 80).convert("RGB"))
    assert len(big) > 4096
    declared = small.post("/api/search", files={"sketch": ("big.png", big, "image/png")})
    assert declared.status_code == 413
    assert "upload limit of 4,096 bytes" in declared.json()["error"]
    streamed = small.post(  # no Content-Length: the limit holds while reading
        "/api/search", content=iter([b'{"sketch": "', b"A" * 8192, b'"}']), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    fine = small.post("/api/search", json={"sketch": data_url((root / "shoes/item0.png").read_bytes())})
    assert fine.status_code == 200


def test_photos_only_by_asset_id_and_only_from_inside_the_catalog(world, client, tmp_path) -> None:
    plugin, _, root = world
    assert client.get("/api/photos/not-a-uuid").status_code == 404
    assert client.get("/api/photos/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert client.get("/api/photos/00000000-0000-0000-0000-000000000000").status_code == 404
    hit = client.post("/api/search", json={"text": "red"}).json()["hits"][0]
    assert client.get(hit["photo_url"] + "?size=5").status_code == 422
    assert client.get(hit["photo_url"] + "?size=big").status_code == 422
    # A row whose key points out of the catalog folder (a tampered database) is refused, not followed.
    outside = tmp_path / "secret.png"
    draw_product(outside, 0, "red")
    key = str(Path("..") / ".." / outside.relative_to(outside.parents[1]))
    plugin.db.save_assets([{"collection": plugin.collection, "key": key, "sha256": "0" * 64}])
    from sketchtext.plugin.db import asset_id

    try:
        escaped = client.get(f"/api/photos/{asset_id(plugin.collection, key)}")
        assert escaped.status_code == 404 and "not in the catalogue folder" in escaped.json()["error"]
    finally:
        plugin.db.delete_assets(plugin.collection, [key])


# -- access


def test_token_guards_the_page_and_the_api(world) -> None:
    plugin, settings, _ = world
    guarded = TestClient(create_app(plugin, with_web(settings, token=TOKEN)))
    bearer = {"Authorization": f"Bearer {TOKEN}"}

    assert guarded.get("/api/facets").status_code == 401
    wrong = guarded.get("/api/facets", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "Wrong token" in wrong.json()["error"]
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert guarded.post("/api/search", json={"text": "red"}).status_code == 401
    assert guarded.post(f"/api/search?token={TOKEN}", json={"text": "red"}).status_code == 401  # header only
    hits = guarded.post("/api/search", json={"text": "red"}, headers=bearer).json()["hits"]
    assert guarded.get(hits[0]["thumb_url"]).status_code == 401
    assert guarded.get(f"{hits[0]['thumb_url']}&token={TOKEN}").status_code == 200  # <img> cannot send headers

    page = guarded.get("/")
    assert page.status_code == 401 and 'name="token"' in page.text
    assert guarded.get(f"/?token={TOKEN}").status_code == 200
    assert guarded.get("/static/app.js").status_code == 200  # code, no data
    assert guarded.get("/openapi.json").status_code == 401  # the schema is behind the token too
    spec = guarded.get("/openapi.json", headers=bearer).json()
    assert spec["security"] == [{"bearer": []}]


def test_deep_json_is_a_400_and_404s_name_no_server_path(tmp_path: Path, tiny_encoder) -> None:
    plugin, settings, root = build_world(tmp_path, tiny_encoder)  # its own world: this test deletes the photos
    with plugin:
        client = TestClient(create_app(plugin, settings))
        deep = client.post("/api/search", content=b"[" * 100_000, headers={"content-type": "application/json"})
        assert deep.status_code == 400 and "nested too deeply" in deep.json()["error"]
        hits = client.post("/api/search", json={"text": "red"}).json()["hits"]
        for photo in root.rglob("*.png"):
            photo.unlink()  # the files are gone: the photo route must say so without naming where they were
        gone = client.get(hits[0]["thumb_url"])
        assert gone.status_code == 404 and "catalogue folder" in gone.json()["error"]
        assert str(root) not in gone.text and str(tmp_path) not in gone.text


# -- errors of the library map to statuses


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (EmptyQueryError("The query has neither a sketch nor text"), 422),
        (InvalidSketchError("not an image"), 422),
        (CollectionNotFoundError("Collection 'x' does not exist; ingest a catalog into it first"), 404),
        (ModelMismatchError("Collection 'x' holds vectors of model A"), 409),
        (StoreUnavailableError("Qdrant is unreachable"), 503),
        (DatabaseUnavailableError("The metadata database is unreachable"), 503),
    ],
)
def test_library_errors_become_json_with_their_status(world, monkeypatch, error, status) -> None:
    plugin, settings, _ = world
    app = TestClient(create_app(plugin, settings))

    def fail(query: object) -> None:
        raise error

    monkeypatch.setattr(plugin, "search", fail)
    response = app.post("/api/search", json={"text": "red"})
    assert response.status_code == status
    assert response.json() == {"error": str(error)}


def test_an_unexpected_failure_is_a_json_500_without_a_traceback(world, monkeypatch) -> None:
    plugin, settings, _ = world
    app = TestClient(create_app(plugin, settings), raise_server_exceptions=False)

    def crash(query: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(plugin, "search", crash)
    response = app.post("/api/search", json={"text": "red"})
    assert response.status_code == 500
    assert response.json() == {"error": "Internal error; the server log has the details."}


def test_a_missing_collection_is_a_404_that_says_to_ingest(settings, tiny_encoder) -> None:
    with SketchTextPlugin(settings, collection="never-ingested", encoder=tiny_encoder) as plugin:
        response = TestClient(create_app(plugin, settings)).post("/api/search", json={"text": "red"})
    assert response.status_code == 404 and "sketchtext ingest" in response.json()["error"]


# -- the command


def test_serve_command_is_registered_and_the_cli_does_not_load_the_server() -> None:
    from click.testing import CliRunner

    from sketchtext.cli.main import main
    from sketchtext.cli.serve import is_loopback

    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0 and "--port" in result.output and "--catalog" in result.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    code = (
        "import sys, json, sketchtext.cli.main;print(json.dumps(sorted({'starlette', 'uvicorn'} & set(sys.modules))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


# -- the OpenAPI description, fuzzed: whatever fits it (and much that does not) never gets a 5xx


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_request_gets_a_5xx(world, mode) -> None:
    """Requests generated from /openapi.json: valid ones (positive) and ones that break it (negative)."""
    import schemathesis
    from hypothesis import given
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation.modes import GenerationMode

    plugin, settings, _ = world
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(plugin, settings))
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: list[int] = []
    assert {op.label for op in operations} == {"POST /api/search", "GET /api/facets", "GET /api/photos/{asset_id}"}
    for operation in operations:
        if mode == "negative" and operation.label == "GET /api/facets":
            continue  # no parameters and no body: nothing to break

        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        @hypothesis_settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case) -> None:
            statuses.append(case.call_and_validate(checks=[not_a_server_error]).status_code)

        no_server_error()
    print(mode, sorted(Counter(statuses).items()))
    assert len(statuses) >= 30 and max(statuses) < 500


def test_search_like_where_offset_and_threshold(client, world) -> None:
    plugin, _, _ = world
    ident = str(asset_id(plugin.collection, "bags/item3.png"))
    first = client.post("/api/search", json={"like": ident, "limit": 8})
    assert first.status_code == 200, first.text
    hits = first.json()["hits"]
    assert hits[0]["asset_id"] == ident and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    page = client.post("/api/search", json={"like": ident, "limit": 3, "offset": 3}).json()["hits"]
    assert [h["key"] for h in page] == [h["key"] for h in hits[3:6]]
    cut = (hits[1]["score"] + hits[2]["score"]) / 2
    above = client.post("/api/search", json={"like": ident, "score_threshold": cut}).json()["hits"]
    assert [h["key"] for h in above] == [h["key"] for h in hits[:2]]
    narrowed = client.post(
        "/api/search", json={"text": "a bag", "where": {"scene": "street", "sku": ["SKU-5", "SKU-6"]}}
    )
    assert {h["sku"] for h in narrowed.json()["hits"]} == {"SKU-5", "SKU-6"}
    with_words = client.post("/api/search", json={"like": "shoes/item0.png", "text": "a blue bag", "limit": 8})
    assert with_words.status_code == 200 and [h["key"] for h in with_words.json()["hits"]] != [
        h["key"] for h in client.post("/api/search", json={"like": "shoes/item0.png", "limit": 8}).json()["hits"]
    ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"text": "a bag", "where": {"colour": "red"}}, "Unknown filter field 'colour'; the collection's fields are"),
        ({"text": "a bag", "where": {"scene": "moon"}}, "Unknown scene 'moon'; the collection has: beach, street."),
        ({"text": "a bag", "category": "bag"}, "Unknown category 'bag'; the collection has: bags, shoes."),
        ({"like": "nope.png"}, "No embedded asset 'nope.png'"),
        ({"text": "a bag", "offset": -1}, "offset"),
        ({"text": "a bag", "score_threshold": 3}, "score_threshold"),
    ],
)
def test_narrowing_refusals_are_422s_naming_the_valid_values(client, body: dict, says: str) -> None:
    response = client.post("/api/search", json=body)
    assert response.status_code == 422 and says in response.json()["error"], response.text
