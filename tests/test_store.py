"""The vector store, on both embedded backends (Qdrant Edge and qdrant-client's local mode): model binding,
upserts, filtered queries, counts, reopening, errors."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from sketchtext.plugin.errors import CollectionNotFoundError, ModelMismatchError, QueryError, StoreUnavailableError
from sketchtext.plugin.store.base import VectorStore, build_filter
from sketchtext.plugin.store.edge import EdgeStore
from sketchtext.plugin.store.qdrant import QdrantStore, open_local

BACKENDS = ["edge", "local"]
Opener = Callable[..., VectorStore]


@pytest.fixture(params=BACKENDS)
def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the backend under test on the same folder, as often as a test needs (reopen = close + open)."""
    opened: list[VectorStore] = []

    def opener(vector_name: str | None = None) -> VectorStore:
        if request.param == "edge":
            store: VectorStore = EdgeStore(tmp_path / "edge", vector_name=vector_name)
        else:
            store = QdrantStore(open_local(tmp_path / "local"), vector_name=vector_name, owns_client=True)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(open_backend: Opener) -> VectorStore:
    return open_backend()


def unit(rng: np.random.Generator, n: int, dim: int = 8) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def products(store: VectorStore, n: int = 12) -> tuple[list[uuid.UUID], np.ndarray, list[dict]]:
    """`n` points in collection "c": categories shoes/bags, scenes beach/street, a price, sometimes a colour."""
    rng = np.random.default_rng(0)
    store.ensure_collection("c", 8, "m1")
    ids = [uuid.uuid5(uuid.NAMESPACE_URL, f"k{i}") for i in range(n)]
    vectors = unit(rng, n)
    payloads = [
        {
            "key": f"k{i}",
            "category": "shoes" if i < n // 2 else "bags",
            "scene": ["beach", "street"][i % 2],
            "price": float(i * 10),
            **({"colour": "red"} if i % 3 == 0 else {}),
        }
        for i in range(n)
    ]
    store.upsert("c", ids, vectors, payloads)
    return ids, vectors, payloads


def keys(store: VectorStore, vector: np.ndarray, query_filter: models.Filter | None) -> set[str]:
    return {h.payload["key"] for h in store.query("c", vector, query_filter=query_filter, limit=100)}


def test_build_filter_one_any_and_host() -> None:
    host = models.Filter(must_not=[models.FieldCondition(key="stock", match=models.MatchValue(value=0))])
    built = build_filter({"category": "shoes", "scene": ["beach", "street"], "sku": None}, host)
    assert built.must[0] == models.FieldCondition(key="category", match=models.MatchValue(value="shoes"))
    assert built.must[1] == models.FieldCondition(key="scene", match=models.MatchAny(any=["beach", "street"]))
    assert built.must[2] is host
    assert build_filter({}) is None and build_filter({"scene": []}) is None
    with pytest.raises(QueryError, match="valid fields: category, scene, sku"):
        build_filter({"colour": "red"})


def test_upsert_query_filter_delete(store: VectorStore) -> None:
    ids, vectors, _ = products(store, 6)
    assert store.count("c") == 6
    top = store.query("c", vectors[4], limit=1)[0]
    assert top.id == str(ids[4]) and top.score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in store.query("c", vectors[4], limit=6)] == sorted(
        (h.score for h in store.query("c", vectors[4], limit=6)), reverse=True
    )
    hits = store.query("c", vectors[4], query_filter=build_filter({"category": "shoes", "scene": "beach"}), limit=10)
    assert {h.payload["key"] for h in hits} == {"k0", "k2"}
    store.upsert("c", ids[:1], vectors[:1], [{"key": "k0", "category": "hats"}])  # idempotent, replaces payload
    assert store.count("c") == 6 and store.count("c", build_filter({"category": "hats"})) == 1
    store.delete("c", ids[:2])
    assert store.count("c") == 4
    assert store.query("c", vectors[0], query_filter=build_filter({"category": "hats"})) == []


@pytest.mark.parametrize(
    ("query_filter", "expected"),
    [
        (build_filter({"category": "bags"}), {f"k{i}" for i in range(6, 12)}),
        (build_filter({"scene": ["beach"], "category": ["shoes", "hats"]}), {"k0", "k2", "k4"}),
        (
            models.Filter(must=[models.FieldCondition(key="price", range=models.Range(gte=30, lt=60))]),
            {"k3", "k4", "k5"},
        ),
        (
            build_filter(
                {"category": "bags"},
                models.Filter(must=[models.FieldCondition(key="price", range=models.Range(gt=90))]),
            ),
            {"k10", "k11"},
        ),
        (
            models.Filter(
                must_not=[models.FieldCondition(key="category", match=models.MatchExcept(**{"except": ["shoes"]}))]
            ),
            {f"k{i}" for i in range(6)},
        ),
        (
            models.Filter(
                should=[
                    models.FieldCondition(key="colour", match=models.MatchValue(value="red")),
                    models.FieldCondition(key="price", range=models.Range(lte=10)),
                ]
            ),
            {"k0", "k1", "k3", "k6", "k9"},
        ),
        (models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="colour"))]), None),
        (
            models.Filter(
                min_should=models.MinShould(
                    conditions=[
                        models.FieldCondition(key="scene", match=models.MatchValue(value="street")),
                        models.FieldCondition(key="colour", match=models.MatchValue(value="red")),
                        models.FieldCondition(key="category", match=models.MatchValue(value="shoes")),
                    ],
                    min_count=3,
                )
            ),
            {"k3"},
        ),
    ],
    ids=["one", "any", "range", "and-host", "except", "should", "is-empty", "min-should"],
)
def test_filters(store: VectorStore, query_filter: models.Filter, expected: set[str] | None) -> None:
    _, vectors, payloads = products(store)
    if expected is None:  # is_empty: every point without a colour
        expected = {p["key"] for p in payloads if "colour" not in p}
    assert keys(store, vectors[0], query_filter) == expected
    assert store.count("c", query_filter) == len(expected)


def test_has_id_filter(store: VectorStore) -> None:
    ids, vectors, _ = products(store)
    assert keys(store, vectors[0], models.Filter(must=[models.HasIdCondition(has_id=[ids[1], str(ids[7])])])) == {
        "k1",
        "k7",
    }


def test_collection_is_bound_to_its_model(store: VectorStore) -> None:
    store.ensure_collection("c", 8, "m1")
    store.ensure_collection("c", 8, "m1")  # same model: fine
    assert store.binding("c") == "m1"
    with pytest.raises(ModelMismatchError, match="re-index"):
        store.ensure_collection("c", 8, "m2")
    with pytest.raises(ModelMismatchError, match="holds vectors of model m1"):
        store.check_binding("c", "m2")
    with pytest.raises(CollectionNotFoundError, match="sketchtext ingest"):
        store.check_binding("nope", "m1")
    with pytest.raises(CollectionNotFoundError, match="sketchtext ingest"):
        store.query("nope", np.ones(8, np.float32))


def test_reopen_keeps_points_payloads_and_binding(open_backend: Opener) -> None:
    store = open_backend()
    ids, vectors, _ = products(store)
    store.delete("c", ids[-1:])
    store.close()
    again = open_backend()
    assert again.count("c") == 11 and again.binding("c") == "m1"
    top = again.query("c", vectors[3], query_filter=build_filter({"scene": "street"}), limit=1)[0]
    assert top.id == str(ids[3]) and top.payload["price"] == 30.0
    with pytest.raises(ModelMismatchError):
        again.ensure_collection("c", 8, "m2")


def test_named_vector(open_backend: Opener) -> None:
    store = open_backend(vector_name="sketch")
    store.ensure_collection("c", 8, "m1")
    vectors = unit(np.random.default_rng(2), 3)
    store.upsert("c", [1, 2, 3], vectors, [{"key": f"k{i}"} for i in range(3)])
    assert store.binding("c") == "m1" and store.query("c", vectors[2], limit=1)[0].id == 3
    store.vector_name = None
    assert store.binding("c") is None  # bindings are per vector name
    store.vector_name = "sketch"
    store.ensure_collection("other", 16, "m1")
    if isinstance(store, EdgeStore):  # an unbound collection of another size, as a host's own would be
        store.binding_path("other").unlink()
    else:
        store.client.update_collection("other", metadata={"sketchtext_model:sketch": None})
    with pytest.raises(ModelMismatchError, match="size 16"):
        store.ensure_collection("other", 8, "m1")


def test_named_vector_in_a_host_collection(tmp_path) -> None:
    client = QdrantClient(path=str(tmp_path / "host"))
    client.create_collection(
        "products",
        vectors_config={
            "title": models.VectorParams(size=4, distance=models.Distance.DOT),
            "sketch": models.VectorParams(size=8, distance=models.Distance.COSINE),
        },
    )
    store = QdrantStore(client, vector_name="sketch")
    store.ensure_collection("products", 8, "m1")
    assert store.binding("products") == "m1"
    vector = unit(np.random.default_rng(1), 1)
    client.upsert(
        "products",
        [
            models.PointStruct(
                id=7, vector={"title": [1, 0, 0, 0], "sketch": vector[0].tolist()}, payload={"name": "boot"}
            )
        ],
    )
    assert store.query("products", vector[0], limit=1)[0].id == 7
    client.create_collection(
        "small", vectors_config={"sketch": models.VectorParams(size=16, distance=models.Distance.COSINE)}
    )
    with pytest.raises(ModelMismatchError, match="size 16"):
        store.ensure_collection("small", 8, "m1")
    client.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_process_on_the_embedded_store_names_the_fix(tmp_path, backend: str) -> None:
    opener = {
        "edge": "from sketchtext.plugin.store.edge import EdgeStore\ns = EdgeStore(Path({path!r}))\ns.count('c')",
        "local": "from sketchtext.plugin.store.qdrant import open_local\nopen_local(Path({path!r}))",
    }[backend]
    path = str(tmp_path / backend)
    if backend == "edge":
        first: VectorStore = EdgeStore(Path(path))
        first.ensure_collection("c", 8, "m1")
        first.count("c")
    else:
        first = QdrantStore(open_local(Path(path)), owns_client=True)
    code = "from pathlib import Path\n" + opener.format(path=path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    first.close()
    assert out.returncode != 0
    assert "SKETCHTEXT_STORE__URL" in out.stderr and StoreUnavailableError.__name__ in out.stderr


def host_sets_payload(store: VectorStore, collection: str, pid: int, payload: dict) -> None:
    """The host writing its own fields to its own point, with the backend's own client."""
    if isinstance(store, EdgeStore):
        import qdrant_edge

        store.shard(collection).update(qdrant_edge.UpdateOperation.set_payload([pid], payload))
    else:
        store.client.set_payload(collection, payload=payload, points=[pid])  # type: ignore[attr-defined]


def test_host_points_keep_the_hosts_fields(open_backend: Opener) -> None:
    store = open_backend(vector_name="sketch")
    store.host_points = True
    store.ensure_collection("c", 8, "m1")
    vectors = unit(np.random.default_rng(3), 2)
    store.upsert("c", ["7", 8], vectors, [{"key": "boot", "category": "shoes"}, {"key": "bag", "category": "bags"}])
    host_sets_payload(store, "c", 7, {"price": 120, "name": "Chelsea boot"})
    store.upsert("c", [7], vectors[:1], [{"key": "boot", "category": "boots"}])  # re-ingest: only our part changes
    (hit,) = store.query("c", vectors[0], query_filter=build_filter({"category": "boots"}, prefix="sketchtext."))
    assert hit.id == 7 and hit.payload == {
        "price": 120,
        "name": "Chelsea boot",
        "sketchtext": {"key": "boot", "category": "boots"},
    }
    assert (
        store.own_payload(hit.payload) == {"key": "boot", "category": "boots"} and store.payload_prefix == "sketchtext."
    )
    assert dict(store.points("c")) == {7: {"key": "boot", "category": "boots"}, 8: {"key": "bag", "category": "bags"}}
    store.delete("c", [7])  # the host's point stays, without sketchtext's vector and payload
    assert store.count("c") == 2 and dict(store.points("c")) == {8: {"key": "bag", "category": "bags"}}
    assert [h.id for h in store.query("c", vectors[0], limit=5)] == [8]


def test_stored_vectors_read_back_and_pages_skip_and_cut(store: VectorStore) -> None:
    ids, vectors, _ = products(store)
    back = store.stored_vector("c", ids[4])
    assert back is not None and np.allclose(back, vectors[4], atol=1e-6)
    assert store.stored_vector("c", uuid.uuid4()) is None
    full = store.query("c", vectors[4], limit=12)
    assert full[0].payload["key"] == "k4" and full[0].score == pytest.approx(1.0, abs=1e-5)
    [paged, cut] = store.query_batch("c", [(vectors[4], None, 3), (vectors[4], None, 12)], [(2, None), (0, 0.2)])
    assert [h.id for h in paged] == [h.id for h in full[2:5]]
    assert 0 < len(cut) < 12 and all(h.score >= 0.2 for h in cut) and len(cut) == sum(h.score >= 0.2 for h in full)
