"""Ingest end to end on the embedded store: round trip, incremental re-ingest, failures, pruning, mismatch."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sketchtext.plugin.db import AssetStatus
from sketchtext.plugin.errors import ModelMismatchError
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.search import SketchTextQuery
from sketchtext.plugin.settings import Settings
from tests.conftest import TINY_SPEC, draw_product


@pytest.fixture
def plugin(settings: Settings, tiny_encoder, db_url: str):
    settings = settings.model_copy(update={"db": settings.db.model_copy(update={"url": db_url})})
    if not db_url.startswith("sqlite"):
        from sketchtext.plugin.db import MetadataDB

        MetadataDB(db_url).upgrade()  # a server database is migrated explicitly (`sketchtext db upgrade`)
    with SketchTextPlugin(settings, encoder=tiny_encoder) as p:
        yield p


def test_ingest_then_search_finds_each_photo_by_its_own_image(plugin: SketchTextPlugin, catalog: Path) -> None:
    summary = plugin.ingest(catalog, batch_size=4)
    assert (len(summary.result.embedded), len(summary.result.failed), summary.total) == (6, 0, 6)
    assert plugin.store.count(plugin.collection) == 6
    for key in summary.result.embedded:
        (hit,) = plugin.search(SketchTextQuery(sketch=catalog / key, limit=1))
        assert hit.key == key and hit.score == pytest.approx(1.0, abs=1e-4)
        assert hit.asset is not None and hit.asset["key"] == key and hit.asset["status"] == "embedded"


def test_hits_come_in_score_order_with_sql_rows(plugin: SketchTextPlugin, catalog: Path) -> None:
    plugin.ingest(catalog)
    hits = plugin.search(SketchTextQuery(text="a red shoe", limit=6))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.asset and h.asset["key"] == h.key and h.asset["sku"].startswith("SKU-") for h in hits)


def test_filters_by_category_and_scene(plugin: SketchTextPlugin, catalog: Path) -> None:
    plugin.ingest(catalog)
    sketch = catalog / "shoes/item0.png"
    shoes = plugin.search(SketchTextQuery(sketch=sketch, category="shoes", limit=10))
    assert {h.asset["category"] for h in shoes} == {"shoes"} and len(shoes) == 3
    beach_bags = plugin.search(SketchTextQuery(sketch=sketch, category="bags", scene="beach", limit=10))
    assert [h.key for h in beach_bags] == ["bags/item1.jpg"]
    either = plugin.search(SketchTextQuery(text="bag", scene=["beach", "street"], limit=10))
    assert len(either) == 6


def test_reingest_is_a_noop_and_a_changed_file_is_reembedded(plugin: SketchTextPlugin, catalog: Path) -> None:
    plugin.ingest(catalog)
    again = plugin.ingest(catalog)
    assert (len(again.result.embedded), len(again.result.unchanged)) == (0, 6)
    draw_product(catalog / "bags/item1.jpg", 9, "yellow")
    changed = plugin.ingest(catalog)
    assert changed.result.embedded == ["bags/item1.jpg"] and len(changed.result.unchanged) == 5
    (hit,) = plugin.search(SketchTextQuery(sketch=catalog / "bags/item1.jpg", limit=1))
    assert hit.key == "bags/item1.jpg" and hit.score == pytest.approx(1.0, abs=1e-4)
    assert plugin.store.count(plugin.collection) == 6


UNCHANGED_PROBE = """
import json, sys
from sketchtext.plugin import SketchTextPlugin, load_settings
with SketchTextPlugin(load_settings(data_dir=sys.argv[1], model={"spec": sys.argv[2], "device": "cpu"})) as plugin:
    summary = plugin.ingest(sys.argv[3])
    loaded = plugin._encoder is not None
print(json.dumps({**summary.as_dict(), "loaded": loaded, "torch": "torch" in sys.modules}))
"""


def test_an_unchanged_reingest_never_loads_the_model(settings: Settings, tiny_encoder, catalog: Path) -> None:
    with SketchTextPlugin(settings, encoder=tiny_encoder) as first:
        first.ingest(catalog)
    command = [sys.executable, "-c", UNCHANGED_PROBE, str(settings.data_dir), TINY_SPEC, str(catalog)]

    def reingest() -> dict:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    again = reingest()
    assert (again["unchanged"], again["embedded"], again["loaded"], again["torch"]) == (6, 0, False, False)
    draw_product(catalog / "bags/item1.jpg", 9, "yellow")  # one file needs the model: it loads, and only it embeds
    changed = reingest()
    assert (changed["embedded"], changed["unchanged"], changed["loaded"]) == (1, 5, True)
    with SketchTextPlugin(settings, encoder=tiny_encoder) as plugin:
        runs = [plugin.ingest(catalog).run_id for _ in range(2)]
        assert runs[1] == runs[0] + 1 == again["run_id"] + 3  # every re-ingest is recorded as a run


def test_prune_removes_assets_whose_files_are_gone(plugin: SketchTextPlugin, catalog: Path) -> None:
    plugin.ingest(catalog)
    (catalog / "shoes/item2.jpg").unlink()
    kept = plugin.ingest(catalog)
    assert kept.pruned == [] and plugin.store.count(plugin.collection) == 6
    pruned = plugin.ingest(catalog, prune=True)
    assert pruned.pruned == ["shoes/item2.jpg"]
    assert plugin.store.count(plugin.collection) == 5 and "shoes/item2.jpg" not in plugin.db.keys(plugin.collection)


def test_bad_files_are_recorded_and_good_ones_embedded(plugin: SketchTextPlugin, catalog: Path) -> None:
    bad = catalog / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), "red").save(buffer, "JPEG")
    (bad / "truncated.jpg").write_bytes(buffer.getvalue()[:300])
    (bad / "text.jpg").write_text("this is not a JPEG")
    big = io.BytesIO()
    Image.new("1", (9000, 9000)).save(big, "PNG")  # 81 Mpx, above the default 64 Mpx limit
    (bad / "huge.png").write_bytes(big.getvalue())
    summary = plugin.ingest(catalog, batch_size=3)
    assert len(summary.result.embedded) == 6
    assert summary.result.failed.keys() == {"bad/empty.jpg", "bad/truncated.jpg", "bad/text.jpg", "bad/huge.png"}
    reasons = summary.result.failed
    assert "empty" in reasons["bad/empty.jpg"] and "not an image" in reasons["bad/text.jpg"]
    assert "cannot be decoded" in reasons["bad/truncated.jpg"] and "above the limit" in reasons["bad/huge.png"]
    rows = plugin.db.assets_by_key(plugin.collection, list(reasons))
    assert all(r.status == AssetStatus.FAILED and r.error == reasons[k] for k, r in rows.items())
    assert plugin.store.count(plugin.collection) == 6
    # a failed file that gets fixed is embedded on the next run
    draw_product(bad / "text.jpg", 3, "pink")
    assert plugin.ingest(catalog).result.embedded == ["bad/text.jpg"]


def test_another_model_on_a_bound_collection_is_refused(plugin: SketchTextPlugin, catalog: Path) -> None:
    plugin.ingest(catalog)
    from sketchtext.plugin.model.factory import load_encoder

    other = load_encoder("open_clip:sketchtext-tiny", device="cpu")
    other.fingerprint = "sketchtext-tiny@another-checkpoint"
    with SketchTextPlugin(plugin.settings, encoder=other) as second:
        second._db = plugin.db
        second._store = plugin.store
        with pytest.raises(ModelMismatchError, match="re-index"):
            second.ingest(catalog)
        with pytest.raises(ModelMismatchError):
            second.search(SketchTextQuery(text="a shoe"))


def test_reduced_size_decoding_keeps_full_dimensions_and_agrees(plugin: SketchTextPlugin, tmp_path: Path) -> None:
    import numpy as np

    from sketchtext.plugin.images import decode_image

    root = tmp_path / "big"
    for i, colour in enumerate(["red", "navy", "olive", "teal"]):
        draw_product(root / f"p{i}.jpg", i, colour, size=(960, 720))
    plugin.ingest(root)
    row = plugin.db.assets_by_key(plugin.collection, ["p0.jpg"])["p0.jpg"]
    assert (row.width, row.height) == (960, 720)
    data = (root / "p1.jpg").read_bytes()
    reduced, size = decode_image(data, draft_size=plugin.encoder.image_size)
    full, _ = decode_image(data)
    assert size == full.size == (960, 720) and reduced.width < full.width and min(reduced.size) >= 64
    a, b = plugin.encoder.encode_images([reduced, full])
    assert float(np.dot(a, b)) > 0.99


def test_pipelined_run_and_single_batches_write_the_same_vectors(plugin: SketchTextPlugin, catalog: Path) -> None:
    import numpy as np
    import qdrant_edge

    from sketchtext.plugin.ingest.catalog import scan_catalog
    from sketchtext.plugin.ingest.pipeline import ingest_batch
    from sketchtext.plugin.store.edge import EdgeStore

    plugin.ingest(catalog, batch_size=2)
    single = plugin.ingest_context()
    single.collection = "one-by-one"
    single.ensure_collection()
    for entry in scan_catalog(catalog):
        ingest_batch(single, [entry])

    def vectors(name: str) -> dict[str, list[float]]:
        store = plugin.store
        if isinstance(store, EdgeStore):
            request = qdrant_edge.ScrollRequest(limit=100, with_payload=True, with_vector=True)
            records, _ = store.shard(name).scroll(request)
        else:
            records, _ = store.client.scroll(name, limit=100, with_vectors=True, with_payload=True)  # type: ignore[attr-defined]
        return {r.payload["key"]: r.vector for r in records}

    pipelined, sequential = vectors(plugin.collection), vectors("one-by-one")
    assert pipelined.keys() == sequential.keys() and len(pipelined) == 6
    for key in pipelined:
        np.testing.assert_allclose(pipelined[key], sequential[key], atol=1e-5)


@pytest.mark.parametrize(("device", "waits"), [("cpu", True), ("cuda", False)])
def test_decoding_waits_while_the_model_runs_on_the_cpu_only(device: str, waits: bool) -> None:
    import threading

    from sketchtext.plugin.ingest.pipeline import ModelTurn

    turn = ModelTurn(device)
    decoded = threading.Event()
    decoder = threading.Thread(target=lambda: (turn.wait(), decoded.set()))
    with turn.model_runs():
        decoder.start()
        assert decoded.wait(0.2) is not waits
    decoder.join(1)
    assert decoded.is_set()  # and once the model is done, decoding goes on
