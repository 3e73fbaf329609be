"""Which backend the settings open, and moving an existing local-mode store to Qdrant Edge."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sketchtext.cli.main import main
from sketchtext.plugin.errors import StoreError
from sketchtext.plugin.settings import Settings
from sketchtext.plugin.store.base import VectorStore, build_filter
from sketchtext.plugin.store.edge import EdgeStore
from sketchtext.plugin.store.migrate import BACKUP_FOLDER, migrate_local_store
from sketchtext.plugin.store.open import Layout, detect_layout, open_store
from sketchtext.plugin.store.qdrant import QdrantStore, open_local


def settings_for(tmp_path: Path, **store: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", store=store)


def local_store_with_points(path: Path, n: int = 30) -> tuple[list[uuid.UUID], np.ndarray]:
    """A local-mode store as sketchtext wrote it before Edge: two collections, one with a named vector."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [uuid.uuid5(uuid.NAMESPACE_URL, f"k{i}") for i in range(n)]
    with QdrantStore(open_local(path), owns_client=True) as store:
        store.ensure_collection("sketchtext", 8, "m1")
        store.upsert("sketchtext", ids, vectors, [{"key": f"k{i}", "category": f"c{i % 3}"} for i in range(n)])
        store.vector_name = "sketch"
        store.ensure_collection("named", 8, "m2")
        store.upsert("named", [1, 2], vectors[:2], [{"key": "a"}, {"key": "b"}])
    return ids, vectors


def test_both_backends_are_vector_stores(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "e") as edge, QdrantStore(open_local(tmp_path / "l"), owns_client=True) as local:
        assert isinstance(edge, VectorStore) and isinstance(local, VectorStore)


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_edge_is_the_embedded_default_and_local_mode_stays_selectable(tmp_path: Path) -> None:
    with open_store(settings_for(tmp_path)) as store:
        assert isinstance(store, EdgeStore)
        store.ensure_collection("c", 8, "m1")
    assert detect_layout(tmp_path / "data" / "qdrant") is Layout.EDGE
    with pytest.raises(StoreError, match="holds a Qdrant Edge store"):
        open_store(settings_for(tmp_path, backend="local"))
    with open_store(settings_for(tmp_path / "other", backend="local")) as local:
        assert isinstance(local, QdrantStore)
    server = open_store(settings_for(tmp_path, url="http://127.0.0.1:1"))
    assert isinstance(server, QdrantStore) and server.client._client.__class__.__name__ == "QdrantRemote"
    server.close()


def test_an_existing_local_mode_store_keeps_working(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ids, vectors = local_store_with_points(tmp_path / "data" / "qdrant")
    with caplog.at_level(logging.WARNING), open_store(settings_for(tmp_path)) as store:
        assert isinstance(store, QdrantStore) and store.count("sketchtext") == 30
    assert "sketchtext store migrate" in caplog.text


def test_migration_moves_points_payloads_and_bindings(tmp_path: Path) -> None:
    path = tmp_path / "data" / "qdrant"
    ids, vectors = local_store_with_points(path)
    with QdrantStore(open_local(path), owns_client=True) as local:
        before = [h.id for h in local.query("sketchtext", vectors[4], query_filter=build_filter({"category": "c1"}))]
    report = migrate_local_store(path)
    assert report.collections == {"named": 2, "sketchtext": 30} and report.backup == path / BACKUP_FOLDER
    assert (path / BACKUP_FOLDER / "meta.json").is_file() and not (path / "meta.json").exists()
    assert detect_layout(path) is Layout.EDGE
    with open_store(settings_for(tmp_path)) as store:
        assert isinstance(store, EdgeStore)
        assert store.count("sketchtext") == 30 and store.binding("sketchtext") == "m1"
        after = [h.id for h in store.query("sketchtext", vectors[4], query_filter=build_filter({"category": "c1"}))]
        assert after == before
        store.vector_name = "sketch"
        assert store.binding("named") == "m2" and store.query("named", vectors[1], limit=1)[0].payload == {"key": "b"}
    with pytest.raises(StoreError, match="nothing to migrate|already holds"):
        migrate_local_store(path)


def test_store_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    local_store_with_points(data / "qdrant")

    def run(*args: str):
        return CliRunner().invoke(main, ["--data-dir", str(data), "store", *args], catch_exceptions=False)

    before = run("info", "--json")
    assert json.loads(before.output)["layout"] == "local" and "store migrate" in before.output
    migrated = run("migrate")
    assert migrated.exit_code == 0 and "sketchtext: 30 points moved to Qdrant Edge" in migrated.output
    after = json.loads(run("info", "--json").output)
    assert after["layout"] == "edge" and after["collections"]["sketchtext"] == {
        "points": 30,
        "indexed": 0,
        "model": "m1",
    }
    again = run("migrate")
    assert again.exit_code == 1 and "error: " in again.output and "nothing to migrate" in again.output
    assert run("optimize").output.strip() == "sketchtext: nothing to do"


def test_an_edge_store_beside_local_mode_files_wins_and_is_not_migrated_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "data" / "qdrant"
    local_store_with_points(path)
    with EdgeStore(path / "edge") as edge:
        edge.ensure_collection("sketchtext", 8, "m1")
    assert detect_layout(path) is Layout.BOTH
    with caplog.at_level(logging.WARNING), open_store(settings_for(tmp_path)) as store:
        assert isinstance(store, EdgeStore) and store.count("sketchtext") == 0
    assert "local-mode files" in caplog.text
    with pytest.raises(StoreError, match="already holds a Qdrant Edge store"):
        migrate_local_store(path)
