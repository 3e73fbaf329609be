"""A host product's own Qdrant collection, ids, named vectors and payload, with sketchtext added to it."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qdrant_client import QdrantClient, models

from sketchtext.plugin.errors import (
    CollectionNotFoundError,
    ConfigError,
    EmptyQueryError,
    InvalidSketchError,
    ModelMismatchError,
    QueryError,
    StoreError,
    StoreUnavailableError,
)
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.search import SketchTextQuery
from sketchtext.plugin.settings import Settings
from tests.conftest import TINY_SPEC, docker_answers, draw_product

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "host_search.py"
QDRANT_ENV = "SKETCHTEXT_TEST_QDRANT_URL"
HOST_IDS = [101, 102, 103, 104, 105, 106]


@pytest.fixture(params=["local", "server"])
def host_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantClient]:
    """The host's client: Qdrant local mode here, a server where one is reachable."""
    if request.param == "local":
        client = QdrantClient(path=str(tmp_path / "host-qdrant"))
        yield client
        client.close()
        return
    if os.environ.get(QDRANT_ENV):
        client = QdrantClient(url=os.environ[QDRANT_ENV])
        for name in ("products",):
            if client.collection_exists(name):
                client.delete_collection(name)
        yield client
        client.close()
        return
    if not docker_answers():
        pytest.skip(f"no Qdrant server: set {QDRANT_ENV} (e.g. http://127.0.0.1:6333) or run a Docker engine")
    from testcontainers.qdrant import QdrantContainer

    with QdrantContainer("qdrant/qdrant:v1.15.1") as container:
        yield container.get_client()


def host_products(client: QdrantClient, **more_vectors: models.VectorParams) -> None:
    """The host's own collection as a host makes it: its ids, a `title` vector and payload (no sketchtext slot
    unless `more_vectors` has one)."""
    title = models.VectorParams(size=4, distance=models.Distance.DOT)
    client.create_collection("products", vectors_config={"title": title, **more_vectors})
    client.upsert(
        "products",
        [
            models.PointStruct(
                id=pid,
                vector={"title": [float(i), 1.0, 0.0, 0.0]},
                payload={"name": f"product {pid}", "in_stock": i % 3 != 2, "category": "host-own-category"},
            )
            for i, pid in enumerate(HOST_IDS)
        ],
    )


@pytest.fixture
def host_collection(host_client: QdrantClient, tiny_encoder) -> QdrantClient:
    """The host's products with an empty `sketch` vector slot made by the host."""
    host_products(host_client, sketch=models.VectorParams(size=tiny_encoder.dim, distance=models.Distance.COSINE))
    return host_client


@pytest.fixture
def host_catalog(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    rows = ["path,host_id,sku,scene"]
    for i, pid in enumerate(HOST_IDS):
        key = f"{'shoes' if i % 2 == 0 else 'bags'}/p{pid}.png"
        draw_product(root / key, i, ["red", "blue", "green", "orange", "purple", "black"][i])
        rows.append(f"{key},{pid},SKU-{pid},{'beach' if i < 3 else 'street'}")
    (root / "catalog.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def host_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SKETCHTEXT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SKETCHTEXT_MODEL__SPEC", TINY_SPEC)
    monkeypatch.setenv("SKETCHTEXT_MODEL__DEVICE", "cpu")
    return Settings(store={"point_ids": "host"})


@pytest.fixture
def plugin(host_collection: QdrantClient, host_settings: Settings, tiny_encoder) -> SketchTextPlugin:
    return SketchTextPlugin(
        host_settings, client=host_collection, collection="products", vector_name="sketch", encoder=tiny_encoder
    )


def test_readme_holds_the_host_example_verbatim() -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- examples/host_search.py -->\n```python\n(.*?)```\n<!-- /examples -->", readme, re.S)
    assert block is not None and block.group(1) == EXAMPLE.read_text()


def test_host_example_runs_as_pasted_on_a_collection_without_the_slot(host_catalog, tmp_path) -> None:
    qdrant = tmp_path / "host-qdrant"
    client = QdrantClient(path=str(qdrant))
    host_products(client)
    client.close()
    env = {**os.environ, "SKETCHTEXT_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(EXAMPLE), str(host_catalog), str(host_catalog / "shoes/p101.png"), str(qdrant)]
    for _ in range(2):  # the second run finds the slot there and nothing to embed
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        host_ids = lines[0].removeprefix("host query: ")
        hits = [line.split() for line in lines[1:]]
        assert [int(h[0]) for h in hits] == json.loads(host_ids)
        assert {int(h[0]) for h in hits} == {101, 105}  # the shoes in stock
        assert {h[2] for h in hits} == {"SKU-101", "SKU-105"} and hits[0][0] == "101"  # its own photo first
    client = QdrantClient(path=str(qdrant))
    point = client.retrieve("products", [101], with_vectors=True, with_payload=True)[0]
    client.close()
    assert point.vector["title"] == [0.0, 1.0, 0.0, 0.0] and point.payload["name"] == "product 101"
    assert point.payload["category"] == "host-own-category" and point.payload["sketchtext"]["sku"] == "SKU-101"
    assert len(point.vector["sketch"]) > 0


@pytest.mark.parametrize("as_type", [str, Path])
def test_add_to_collection_takes_str_or_path(host_client, host_catalog, tmp_path, tiny_encoder, as_type) -> None:
    host_products(host_client)
    settings = Settings(data_dir=as_type(tmp_path / "data"), store={"point_ids": "host"})
    plugin = SketchTextPlugin(
        settings, client=host_client, collection="products", vector_name="sketch", encoder=tiny_encoder
    )
    with pytest.raises(StoreError, match=r"add_to_collection\(catalog_dir\)"):
        plugin.ingest(as_type(host_catalog))  # plain ingest names the call that adds the slot
    assert len(plugin.add_to_collection(as_type(host_catalog)).result.embedded) == 6
    assert len(plugin.add_to_collection(as_type(host_catalog)).result.embedded) == 0  # idempotent
    assert plugin.verify(as_type(host_catalog)) == []
    hit = plugin.search(SketchTextQuery(sketch=host_catalog / "bags/p104.png", limit=1))[0]
    assert hit.id == 104 and (tmp_path / "data" / "sketchtext.db").is_file()


def test_add_to_collection_refuses_a_missing_collection_or_an_unnamed_vector(host_client, tmp_path, tiny_encoder):
    settings = Settings(data_dir=tmp_path / "data", store={"point_ids": "host"})
    plugin = SketchTextPlugin(settings, client=host_client, collection="nope", vector_name="sketch")
    with pytest.raises(CollectionNotFoundError):
        plugin.store.add_vector("nope", tiny_encoder.dim)
    unnamed = SketchTextPlugin(settings, client=host_client, collection="products")
    with pytest.raises(ConfigError, match="vector_name='sketch'"):
        unnamed.store.add_vector("products", tiny_encoder.dim)


def test_plugin_adds_to_host_points_without_touching_them(plugin, host_collection, host_catalog) -> None:
    summary = plugin.ingest(host_catalog)
    assert len(summary.result.embedded) == 6
    points = {p.id: p for p in host_collection.retrieve("products", HOST_IDS, with_vectors=True)}
    assert set(points) == set(HOST_IDS) and host_collection.count("products").count == 6
    first = points[101]
    assert first.vector["title"] == [0.0, 1.0, 0.0, 0.0]  # the host's vector is intact
    assert first.payload["name"] == "product 101" and first.payload["category"] == "host-own-category"
    assert first.payload["sketchtext"]["category"] == "shoes" and first.payload["sketchtext"]["sku"] == "SKU-101"
    assert len(first.vector["sketch"]) == plugin.encoder.dim
    hit = plugin.search(SketchTextQuery(sketch=host_catalog / "bags/p104.png", limit=1))[0]
    assert hit.id == 104 and hit.asset["sku"] == "SKU-104" and hit.key == "bags/p104.png"


def test_host_filter_and_context_filters_all_hold(plugin, host_collection, host_catalog) -> None:
    plugin.ingest(host_catalog)
    in_stock = models.Filter(must=[models.FieldCondition(key="in_stock", match=models.MatchValue(value=True))])
    for query in [
        SketchTextQuery(sketch=host_catalog / "shoes/p103.png", text="red", category="shoes", filters=in_stock),
        SketchTextQuery(text="a bag", category=["bags"], scene="street", filters=in_stock),
        SketchTextQuery(sketch=host_catalog / "bags/p102.png", scene=["beach"], limit=10),
    ]:
        encoded = plugin.encode(query)
        points = host_collection.query_points(
            "products", query=encoded.query, using=encoded.using, query_filter=encoded.query_filter, limit=10
        ).points
        assert points, query
        for point in points:
            own = point.payload["sketchtext"]
            assert query.filters is None or point.payload["in_stock"] is True
            assert query.category is None or own["category"] in np.atleast_1d(query.category)
            assert query.scene is None or own["scene"] in np.atleast_1d(query.scene)
        assert [h.id for h in plugin.search(query)] == [p.id for p in points]


def test_batch_and_single_queries_give_the_same_hits(plugin, host_catalog) -> None:
    plugin.ingest(host_catalog)
    queries = [
        SketchTextQuery(sketch=host_catalog / "shoes/p101.png"),
        SketchTextQuery(text="a green shoe", category="shoes"),
        SketchTextQuery(sketch=(host_catalog / "bags/p106.png").read_bytes(), text="in black", scene="street"),
    ]
    batch = plugin.search_batch(queries)
    for query, hits in zip(queries, batch, strict=True):
        single = plugin.search(query)
        assert [h.id for h in single] == [h.id for h in hits]
        assert [h.score for h in single] == pytest.approx([h.score for h in hits], abs=1e-5)
    encoded = plugin.encode_batch(queries)
    for query, many in zip(queries, encoded, strict=True):
        np.testing.assert_allclose(plugin.encode(query).vector, many.vector, atol=1e-5)


def test_prune_removes_only_sketchtext_parts_of_host_points(plugin, host_collection, host_catalog) -> None:
    plugin.ingest(host_catalog)
    (host_catalog / "bags/p102.png").unlink()
    assert plugin.ingest(host_catalog, prune=True).pruned == ["bags/p102.png"]
    (point,) = host_collection.retrieve("products", [102], with_vectors=True)
    assert point.payload == {"name": "product 102", "in_stock": True, "category": "host-own-category"}
    assert "sketch" not in point.vector and point.vector["title"] == [1.0, 1.0, 0.0, 0.0]


def test_photos_without_or_sharing_a_host_id_are_failed(plugin, host_catalog) -> None:
    draw_product(host_catalog / "shoes/orphan.png", 7, "pink")
    draw_product(host_catalog / "shoes/twin.png", 8, "teal")
    with (host_catalog / "catalog.csv").open("a") as fh:
        fh.write("shoes/twin.png,101,SKU-TWIN,beach\n")
    failed = plugin.ingest(host_catalog).result.failed
    assert set(failed) == {"shoes/orphan.png", "shoes/twin.png"}
    assert "no host_id" in failed["shoes/orphan.png"]
    assert "already belongs to shoes/p101.png" in failed["shoes/twin.png"]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_each_error_has_its_type_and_says_what_to_do(plugin, host_catalog, host_settings, tiny_encoder) -> None:
    with pytest.raises(EmptyQueryError, match="neither a sketch nor text"):
        plugin.encode(SketchTextQuery(text="   "))
    with pytest.raises(EmptyQueryError, match="blank"):
        plugin.encode(SketchTextQuery(sketch=_png(Image.new("RGB", (64, 64), "white"))))
    assert plugin.encode(SketchTextQuery(sketch=_png(Image.new("RGB", (64, 64), "white")), text="red")).mode == "text"
    with pytest.raises(InvalidSketchError, match="PNG or JPEG"):
        plugin.encode(SketchTextQuery(sketch=b"\x89PNG not really"))
    with pytest.raises(InvalidSketchError, match="base64"):
        plugin.encode(SketchTextQuery(sketch="data:image/png;base64,@@@"))
    with pytest.raises(CollectionNotFoundError, match="ingest a catalog"):
        SketchTextPlugin(host_settings, client=plugin.store.client, collection="nope", encoder=tiny_encoder).search(
            SketchTextQuery(text="red")
        )
    plugin.ingest(host_catalog)
    other = SketchTextPlugin(
        host_settings, client=plugin.store.client, collection="products", vector_name="sketch", encoder=tiny_encoder
    )
    other.store.check_binding("products", tiny_encoder.fingerprint)  # same model: fine
    with pytest.raises(ModelMismatchError, match="re-index"):
        other.store.check_binding("products", "ViT-B-32@laion2b_s34b_b79k")
    closed_port = QdrantClient(url="http://127.0.0.1:9", timeout=2, check_compatibility=False)
    down = SketchTextPlugin(host_settings, client=closed_port, encoder=tiny_encoder)
    with pytest.raises(StoreUnavailableError, match="SKETCHTEXT_STORE__URL"):
        down.search(SketchTextQuery(text="red"))


def test_like_and_where_on_host_points_with_a_named_vector(plugin, host_catalog) -> None:
    plugin.ingest(host_catalog)
    key = "bags/p102.png"
    hits = plugin.search(SketchTextQuery(like=key, limit=6))
    assert hits[0].key == key and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert str(hits[0].id) == "102"  # the host's own product id
    narrowed = plugin.search(SketchTextQuery(like=key, where={"scene": "street", "sku": ["SKU-104", "SKU-105"]}))
    assert {h.payload["sketchtext"]["sku"] for h in narrowed} == {"SKU-104", "SKU-105"}
    with pytest.raises(QueryError, match="Unknown sku 'SKU-999'"):
        plugin.search(SketchTextQuery(like=key, where={"sku": "SKU-999"}))
