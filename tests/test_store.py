"""The Qdrant store in local mode: model binding, upserts, filtered queries, errors."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from sketchtext.plugin.errors import CollectionNotFoundError, ModelMismatchError, QueryError, StoreUnavailableError
from sketchtext.plugin.store import QdrantStore, build_filter, open_local


@pytest.fixture
def store(tmp_path) -> QdrantStore:
    with QdrantStore(open_local(tmp_path / "q"), owns_client=True) as s:
        yield s


def unit(rng: np.random.Generator, n: int, dim: int = 8) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_build_filter_one_any_and_host() -> None:
    host = models.Filter(must_not=[models.FieldCondition(key="stock", match=models.MatchValue(value=0))])
    built = build_filter({"category": "shoes", "scene": ["beach", "street"], "sku": None}, host)
    assert built.must[0] == models.FieldCondition(key="category", match=models.MatchValue(value="shoes"))
    assert built.must[1] == models.FieldCondition(key="scene", match=models.MatchAny(any=["beach", "street"]))
    assert built.must[2] is host
    assert build_filter({}) is None and build_filter({"scene": []}) is None
    with pytest.raises(QueryError, match="valid fields: category, scene, sku"):
        build_filter({"colour": "red"})


def test_upsert_query_filter_delete(store: QdrantStore) -> None:
    rng = np.random.default_rng(0)
    store.ensure_collection("c", 8, "m1")
    vectors = unit(rng, 6)
    ids = [uuid.uuid4() for _ in range(6)]
    payloads = [
        {"key": f"k{i}", "category": "shoes" if i < 3 else "bags", "scene": ["beach", "street"][i % 2]}
        for i in range(6)
    ]
    store.upsert("c", ids, vectors, payloads)
    assert store.count("c") == 6
    top = store.query("c", vectors[4], limit=1)[0]
    assert top.id == str(ids[4]) and top.score == pytest.approx(1.0, abs=1e-5)
    hits = store.query("c", vectors[4], query_filter=build_filter({"category": "shoes", "scene": "beach"}), limit=10)
    assert {h.payload["key"] for h in hits} == {"k0", "k2"}
    store.upsert("c", ids[:1], vectors[:1], payloads[:1])  # idempotent
    assert store.count("c") == 6
    store.delete("c", ids[:2])
    assert store.count("c") == 4


def test_collection_is_bound_to_its_model(store: QdrantStore) -> None:
    store.ensure_collection("c", 8, "m1")
    store.ensure_collection("c", 8, "m1")  # same model: fine
    with pytest.raises(ModelMismatchError, match="re-index"):
        store.ensure_collection("c", 8, "m2")
    with pytest.raises(ModelMismatchError, match="holds vectors of model m1"):
        store.check_binding("c", "m2")
    with pytest.raises(CollectionNotFoundError, match="sketchtext ingest"):
        store.check_binding("nope", "m1")


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


def test_second_process_on_the_embedded_store_names_the_fix(tmp_path) -> None:
    import subprocess
    import sys

    first = open_local(tmp_path / "q")
    code = (
        "from pathlib import Path; from sketchtext.plugin.store import open_local\n"
        f"open_local(Path({str(tmp_path / 'q')!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    first.close()
    assert out.returncode != 0
    assert "SKETCHTEXT_STORE__URL" in out.stderr and StoreUnavailableError.__name__ in out.stderr
