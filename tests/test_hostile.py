"""Hostile files, bad queries, outages and random bytes: nothing crashes, nothing is lost, SQL and Qdrant agree."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from qdrant_client.http.exceptions import ResponseHandlingException

from sketchtext.plugin.db import AssetStatus
from sketchtext.plugin.errors import (
    DatabaseUnavailableError,
    EmptyQueryError,
    ImageError,
    InvalidSketchError,
    QueryError,
    StoreUnavailableError,
)
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.images import open_image
from sketchtext.plugin.search import SketchTextQuery, load_sketch
from sketchtext.plugin.settings import Settings
from tests.hostile import EMBEDDED, write_hostile_catalog


@pytest.fixture
def plugin(settings: Settings, tiny_encoder):
    with SketchTextPlugin(settings, encoder=tiny_encoder) as p:
        yield p


def test_hostile_corpus_every_file_accounted_for(plugin: SketchTextPlugin, tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    expect = write_hostile_catalog(root)
    summary = plugin.ingest(root, batch_size=5)
    outcome = {key: EMBEDDED for key in summary.result.embedded} | summary.result.failed
    assert outcome.keys() == expect.keys(), "every file ends embedded or failed, none skipped"
    for key, wanted in expect.items():
        if wanted == EMBEDDED:
            assert outcome[key] == EMBEDDED, f"{key}: {outcome[key]}"
        else:
            assert wanted in outcome[key], f"{key}: expected {wanted!r}, got {outcome[key]!r}"
    rows = {row.key: row for row in plugin.db.all_assets(plugin.collection)}
    assert rows.keys() == expect.keys()
    assert all((row.status == AssetStatus.EMBEDDED) == (expect[k] == EMBEDDED) for k, row in rows.items())
    assert plugin.store.count(plugin.collection) == sum(v == EMBEDDED for v in expect.values())
    assert plugin.verify(root) == []
    rotated = plugin.db.assets_by_key(plugin.collection, ["good/exif-rotated.jpg"])["good/exif-rotated.jpg"]
    assert (rotated.width, rotated.height) == (72, 96)


def test_transparent_and_16bit_images_are_not_turned_black() -> None:
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert open_image(_png(transparent)).getpixel((0, 0)) == (255, 255, 255)
    grey16 = Image.new("I;16", (8, 8), 40000)
    grey16.putpixel((0, 0), 0)
    decoded = open_image(_png(grey16))
    assert decoded.getpixel((1, 1)) == (255, 255, 255) and decoded.getpixel((0, 0)) == (0, 0, 0)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_bad_queries_get_clear_errors(plugin: SketchTextPlugin, catalog: Path, caplog) -> None:
    plugin.ingest(catalog)
    with pytest.raises(EmptyQueryError, match="blank"):
        plugin.search(SketchTextQuery(sketch=Image.new("RGB", (300, 300), "white")))
    with pytest.raises(InvalidSketchError, match="above the limit"):
        plugin.search(SketchTextQuery(sketch=_png(Image.new("1", (5000, 5000)))))
    with pytest.raises(InvalidSketchError, match="not an image"):
        plugin.search(SketchTextQuery(sketch=b"GIF89a? no"))
    with pytest.raises(EmptyQueryError):
        plugin.search(SketchTextQuery(text=""))
    with pytest.raises(QueryError, match="limit must be at least 1"):
        plugin.search(SketchTextQuery(text="red", limit=0))
    long_text = "a red boot with white stripes " * 400
    assert len(long_text) > 10_000
    hits = plugin.search(SketchTextQuery(text=long_text, limit=3))
    assert len(hits) == 3 and "cut to" in caplog.text


def test_qdrant_outage_mid_run_leaves_sql_matching_qdrant(plugin: SketchTextPlugin, catalog: Path, monkeypatch) -> None:
    plugin.settings.store.backend = "local"  # the outage is qdrant-client's transport failing, as with a server
    client = plugin.store.client  # type: ignore[attr-defined]
    real = client.batch_update_points
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:  # the first batch lands, then Qdrant goes away for good
            raise ResponseHandlingException(ConnectionRefusedError("connection refused"))
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "batch_update_points", flaky)
    context = plugin.ingest_context()
    context.retry_attempts, context.retry_wait_s = 3, 0.01
    monkeypatch.setattr(plugin, "ingest_context", lambda: context)
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        plugin.ingest(catalog, batch_size=2)
    assert calls["n"] == 1 + 3  # retried, then gave up
    embedded = {r.key for r in plugin.db.all_assets(plugin.collection) if r.status == AssetStatus.EMBEDDED}
    stored = {payload["key"] for _, payload in plugin.store.points(plugin.collection)}
    assert embedded == stored and len(stored) == 2
    assert {d.kind for d in plugin.verify(catalog)} == {"not_ingested"}
    monkeypatch.setattr(client, "batch_update_points", real)
    plugin.ingest(catalog)
    assert plugin.verify(catalog) == []
    (last,) = plugin.db.latest_runs(1)
    assert last.status == "completed"


def test_database_blip_is_retried(plugin: SketchTextPlugin, catalog: Path, monkeypatch) -> None:
    real = plugin.db.mark_embedded
    failures = iter([True, False, False, False, False])

    def blip(*args, **kwargs):
        if next(failures, False):
            raise DatabaseUnavailableError("database restarting")
        return real(*args, **kwargs)

    monkeypatch.setattr(plugin.db, "mark_embedded", blip)
    context = plugin.ingest_context()
    context.retry_wait_s = 0.01
    monkeypatch.setattr(plugin, "ingest_context", lambda: context)
    assert len(plugin.ingest(catalog, batch_size=3).result.embedded) == 6
    assert plugin.verify(catalog) == []


def test_verify_reports_and_repairs_every_kind(plugin: SketchTextPlugin, catalog: Path) -> None:
    from sketchtext.plugin.db import asset_id

    plugin.ingest(catalog)
    store, name = plugin.store, plugin.collection
    store.delete(name, [asset_id(name, "shoes/item0.png")])  # missing vector
    import numpy as np

    store.upsert(
        name, [asset_id(name, "ghost.png")], np.ones((1, plugin.encoder.dim), np.float32), [{"key": "ghost.png"}]
    )
    (catalog / "bags/item1.jpg").write_bytes((catalog / "bags/item3.png").read_bytes())  # stale hash
    (catalog / "shoes/item2.jpg").unlink()  # missing file
    (catalog / "shoes/new.png").write_bytes((catalog / "bags/item5.jpg").read_bytes())  # not ingested
    found = {(d.kind, d.key) for d in plugin.verify(catalog)}
    assert found == {
        ("missing_vector", "shoes/item0.png"),
        ("orphan_point", "ghost.png"),
        ("stale_hash", "bags/item1.jpg"),
        ("missing_file", "shoes/item2.jpg"),
        ("not_ingested", "shoes/new.png"),
    }
    assert plugin.verify(catalog, repair=True) == []
    assert plugin.verify() == []  # defaults to the folder last ingested
    (hit,) = plugin.search(SketchTextQuery(sketch=catalog / "shoes/item0.png", limit=1))
    assert hit.key == "shoes/item0.png"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_escape_as_anything_but_our_errors(data: bytes) -> None:
    for prefix in (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP", b"II*\x00"):
        with contextlib.suppress(ImageError):
            open_image(prefix + data)
        with contextlib.suppress(InvalidSketchError):
            load_sketch(prefix + data)


def test_random_files_in_a_catalog_end_failed_not_crashed(plugin: SketchTextPlugin, tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    root = tmp_path / "catalog"
    root.mkdir()
    for i in range(12):
        prefix = rng.choice([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM"])
        (root / f"r{i}.jpg").write_bytes(prefix + rng.randbytes(rng.randint(0, 3000)))
    summary = plugin.ingest(root, batch_size=4)
    assert len(summary.result.failed) + len(summary.result.embedded) == 12
    assert all(reason for reason in summary.result.failed.values())
    assert plugin.verify(root) == []


def test_damaged_corpus_and_injected_faults_end_accounted_in_sql_and_json(settings: Settings, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from sketchtext.cli.main import main
    from tests.hostile import EITHER, hostile_plugin, write_damaged_corpus, write_injected

    root = tmp_path / "catalog"
    expect = write_damaged_corpus(root)
    write_injected(root, expect)
    with hostile_plugin():
        with SketchTextPlugin(settings) as plugin:
            summary = plugin.ingest(root, batch_size=8)
            rows = {row.key: row for row in plugin.db.all_assets(plugin.collection)}
            stored = {payload["key"] for _, payload in plugin.store.points(plugin.collection)}
            assert plugin.verify(root) == []
        args = ["--data-dir", str(settings.data_dir), "ingest", str(root), "--model", settings.model.spec, "--json"]
        again = CliRunner().invoke(main, args, catch_exceptions=False)
    outcome = {key: EMBEDDED for key in summary.result.embedded} | summary.result.failed
    assert outcome.keys() == expect.keys() == rows.keys(), "every file accounted, none skipped, none crashed the run"
    for key, wanted in expect.items():
        if wanted not in (EITHER, EMBEDDED):
            assert wanted in outcome[key], f"{key}: expected {wanted!r}, got {outcome[key]!r}"
        assert rows[key].error == summary.result.failed.get(key)
        assert (rows[key].status == AssetStatus.EMBEDDED) == (outcome[key] == EMBEDDED)
    assert stored == set(summary.result.embedded)
    assert again.exit_code == 0, again.output
    report = json.loads(again.output)
    assert (report["embedded"], report["unchanged"]) == (0, len(summary.result.embedded))
    assert {f["key"]: f["reason"] for f in report["failures"]} == summary.result.failed
