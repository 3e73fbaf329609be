"""A host product's own Qdrant collection, ids, named vectors and payload, with sketchtext added to it."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qdrant_client import QdrantClient, models

from sketchtext.plugin.errors import (
    CollectionNotFoundError,
    EmptyQueryError,
    InvalidSketchError,
    ModelMismatchError,
    StoreUnavailableError,
)
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.search import SketchTextQuery
from sketchtext.plugin.settings import Settings
from tests.conftest import TINY_SPEC, docker_answers, draw_product

REPO = Path(__file__).resolve().parents[1]
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


@pytest.fixture
def host_collection(host_client: QdrantClient, tiny_encoder) -> QdrantClient:
    """The host's products: its own ids, a `title` vector and payload, and an empty `sketch` vector slot."""
    host_client.create_collection(
        "products",
        vectors_config={
            "title": models.VectorParams(size=4, distance=models.Distance.DOT),
            "sketch": models.VectorParams(size=tiny_encoder.dim, distance=models.Distance.COSINE),
        },
    )
    host_client.upsert(
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


def test_readme_host_example_runs_as_written(host_collection, host_settings, host_catalog, capsys) -> None:
    readme = (REPO / "README.md").read_text()
    code = re.search(r"<!-- host-example -->\n```python\n(.*?)```\n<!-- /host-example -->", readme, re.S).group(1)
    sketch_png = (host_catalog / "shoes/p101.png").read_bytes()
    namespace = {"host_client": host_collection, "catalog_dir": host_catalog, "sketch_png": sketch_png}
    exec(compile(code, "README.md", "exec"), namespace)
    hits, points = namespace["hits"], namespace["points"]
    assert [h.id for h in hits] == [p.id for p in points]
    assert {h.id for h in hits} <= {101, 105}  # shoes that are in stock
    assert "SKU-" in capsys.readouterr().out


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
