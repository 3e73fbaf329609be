"""What only the Qdrant Edge backend promises: its files, durability when killed, exact vs indexed search."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe
from qdrant_client import models

from sketchtext.plugin.errors import CollectionNotFoundError, ModelMismatchError, QueryError, StoreError
from sketchtext.plugin.store.base import FILTER_FIELDS, build_filter
from sketchtext.plugin.store.edge import EdgeStore
from sketchtext.plugin.store.edge_config import EdgeIndexCfg
from sketchtext.plugin.store.edge_convert import edge_filter
from tests.generated_catalogue import encode, recall_at_k, render_catalogue


def test_binding_lives_in_a_json_file_beside_the_shard(tmp_path: Path) -> None:
    with EdgeStore(tmp_path) as store:
        store.ensure_collection("c", 8, "m1")
        assert set(store.shard("c").info().payload_schema) == set(FILTER_FIELDS)  # keyword indexes
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [".lock", "c", "c.json"]  # the lock of the holding process; no staging folder or temporary file
    assert json.loads((tmp_path / "c.json").read_text()) == {"format": 1, "metadata": {"sketchtext_model:": "m1"}}
    with EdgeStore(tmp_path) as again:
        assert again.binding("c") == "m1" and again.collections() == ["c"]


def test_names_and_ids_that_cannot_be_stored_say_so(tmp_path: Path) -> None:
    with EdgeStore(tmp_path) as store:
        with pytest.raises(StoreError, match="cannot name a folder"):
            store.ensure_collection("../etc", 8, "m1")
        store.ensure_collection("c", 8, "m1")
        with pytest.raises(StoreError, match="neither an unsigned integer nor a UUID"):
            store.upsert("c", ["not-a-uuid"], np.ones((1, 8), np.float32), [{}])
        with pytest.raises(StoreError, match="dimension"):
            store.upsert("c", [1], np.ones((1, 4), np.float32), [{}])


def test_every_qdrant_client_condition_translates(tmp_path: Path) -> None:
    when = datetime(2024, 5, 1)
    full = models.Filter(
        must=[
            models.FieldCondition(key="a", match=models.MatchText(text="red")),
            models.FieldCondition(key="a", match=models.MatchTextAny(text_any="red blue")),
            models.FieldCondition(key="a", match=models.MatchPhrase(phrase="red shoe")),
            models.FieldCondition(key="a", match=models.MatchPrefix(prefix="re")),
            models.FieldCondition(key="t", range=models.DatetimeRange(gte=when)),
            models.FieldCondition(key="n", values_count=models.ValuesCount(gte=1)),
            models.FieldCondition(
                key="g",
                geo_radius=models.GeoRadius(center=models.GeoPoint(lon=1, lat=2), radius=5.0),
            ),
            models.FieldCondition(
                key="g",
                geo_polygon=models.GeoPolygon(
                    exterior=models.GeoLineString(points=[models.GeoPoint(lon=0, lat=0)] * 4), interiors=None
                ),
            ),
            models.IsNullCondition(is_null=models.PayloadField(key="a")),
            models.HasVectorCondition(has_vector=""),
            models.NestedCondition(nested=models.Nested(key="offers", filter=build_filter({"category": "x"}))),
            models.SliceCondition(slice=models.Slice(total=2, index=0)),
        ],
        should=models.FieldCondition(key="a", match=models.MatchValue(value=1)),  # one condition, not a list
    )
    assert edge_filter(full) is not None
    with pytest.raises(QueryError, match="Filter"):
        edge_filter({"category": "shoes"})  # type: ignore[arg-type]


KILLED_WRITER = """
import sys, uuid
import numpy as np
from pathlib import Path
from sketchtext.plugin.store.edge import EdgeStore

store = EdgeStore(Path(sys.argv[1]))
store.ensure_collection("c", 16, "m1")
rng = np.random.default_rng(0)
for batch in range(10_000):
    ids = [uuid.uuid5(uuid.NAMESPACE_URL, f"{batch}-{i}") for i in range(20)]
    store.upsert("c", ids, rng.normal(size=(20, 16)).astype(np.float32), [{"batch": batch}] * 20)
    print(batch, flush=True)  # reported as written only after upsert returned
"""


def test_a_killed_process_loses_nothing_it_reported_written(tmp_path: Path) -> None:
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    reported = -1
    for line in writer.stdout:
        reported = int(line)
        if reported >= 5:
            break
    writer.send_signal(signal.SIGKILL)  # mid-way through the next upsert, most likely
    writer.wait(timeout=30)
    assert reported >= 5
    with EdgeStore(tmp_path) as store:
        assert store.count("c") >= 20 * (reported + 1)
        for batch in range(reported + 1):
            of_batch = models.FieldCondition(key="batch", match=models.MatchValue(value=batch))
            assert store.count("c", models.Filter(must=[of_batch])) == 20
        assert store.binding("c") == "m1"


def test_a_process_that_exits_without_closing_flushes_and_releases_the_folder(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np; from pathlib import Path; from sketchtext.plugin.store.edge import EdgeStore\n"
        "s = EdgeStore(Path(sys.argv[1])); s.ensure_collection('c', 4, 'm1')\n"
        "s.upsert('c', [1, 2], np.ones((2, 4), np.float32), [{}, {}])\n"  # no close(): the finalizer closes at exit
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    with EdgeStore(tmp_path) as store:
        assert store.count("c") == 2


def test_exact_below_the_threshold_and_a_recalling_index_above(tmp_path: Path, tiny_encoder) -> None:
    pixels, categories = render_catalogue(3000, seed=3)
    vectors = encode(tiny_encoder, pixels)
    queries = encode(tiny_encoder, render_catalogue(40, seed=4)[0])
    ids = [uuid.uuid5(uuid.NAMESPACE_URL, str(i)) for i in range(len(vectors))]
    index = EdgeIndexCfg(exact_below=1000, full_scan_kb=16)  # tiny thresholds so 3000 points get a real HNSW graph
    with EdgeStore(tmp_path, index=index) as store:
        store.ensure_collection("c", tiny_encoder.dim, tiny_encoder.fingerprint)
        store.upsert("c", ids[:500], vectors[:500], [{"category": c} for c in categories[:500]])
        assert store.search_params("c").exact and not store.optimize("c")
        store.upsert("c", ids[500:], vectors[500:], [{"category": c} for c in categories[500:]])
        assert not store.search_params("c").exact
        assert store.optimize("c") and store.shard("c").info().indexed_vectors_count >= 2500
        for category in (None, categories[0]):
            query_filter = build_filter({"category": category})
            found = [[h.id for h in store.query("c", q, query_filter=query_filter)] for q in queries]
            exact = vectors @ queries.T
            allowed = np.array([category is None or c == category for c in categories])
            truth = [[str(ids[i]) for i in np.argsort(-np.where(allowed, column, -2))[:10]] for column in exact.T]
            assert recall_at_k(found, truth) >= 0.99


def test_add_vector_gives_a_host_collection_the_named_vector_and_keeps_its_own(tmp_path: Path) -> None:
    with EdgeStore(tmp_path, vector_name="sketch", host_points=True) as store:
        store.create_collection("products", {"title": (4, "Dot")}, {}, index_prefixes=[])
        store.write("products", [qe.Point(7, {"title": [1.0, 0.0, 0.0, 0.0]}, {"name": "boot"})])
        with pytest.raises(StoreError, match=r"add_to_collection"):
            store.ensure_collection("products", 3, "m1")
        assert store.add_vector("products", 3) is True
        assert store.add_vector("products", 3) is False  # already there, and of the right size
        with pytest.raises(ModelMismatchError, match="size 3, the model makes 5"):
            store.add_vector("products", 5)
        store.ensure_collection("products", 3, "m1")
        store.upsert("products", [7], np.array([[0.0, 1.0, 0.0]], dtype=np.float32), [{"sku": "B-7"}])
        record = store.shard("products").retrieve([7], True, True)[0]
        assert record.payload == {"name": "boot", "sketchtext": {"sku": "B-7"}}
        assert record.vector["title"] == [1.0, 0.0, 0.0, 0.0] and len(record.vector["sketch"]) == 3
    with EdgeStore(tmp_path, vector_name="sketch") as again:
        assert again.vector_size("products") == 3  # kept on disk
        with pytest.raises(CollectionNotFoundError):
            again.add_vector("missing", 3)
