"""Deleting assets: the point and the SQL row go together, verify explains any interruption, ingest re-adds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sketchtext.cli.main import main
from sketchtext.plugin.db import MetadataDB
from sketchtext.plugin.errors import AssetNotFoundError, QueryError, StoreUnavailableError
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.settings import Settings
from tests.conftest import TINY_SPEC


@pytest.fixture
def plugin(tmp_path: Path, db_url: str, tiny_encoder) -> SketchTextPlugin:
    MetadataDB(db_url).upgrade()  # a server database is migrated by `sketchtext db upgrade`
    settings = Settings(
        data_dir=tmp_path / "data", db={"url": db_url}, model={"spec": TINY_SPEC, "device": "cpu", "batch_size": 4}
    )
    with SketchTextPlugin(settings, encoder=tiny_encoder) as plugin:
        yield plugin


def point_keys(plugin: SketchTextPlugin) -> set[str]:
    return {payload["key"] for _, payload in plugin.store.points(plugin.collection)}


def test_delete_by_key_and_sku_then_ingest_adds_the_files_again(plugin: SketchTextPlugin, catalog: Path) -> None:
    plugin.ingest(catalog)
    removed = plugin.delete(["shoes/item0.png"], skus=["SKU-1"])
    assert removed == ["bags/item1.jpg", "shoes/item0.png"]
    assert point_keys(plugin) & set(removed) == set() and len(point_keys(plugin)) == 4
    assert plugin.db.keys(plugin.collection) & set(removed) == set()
    # The files are still in the folder: verify says exactly that, and nothing about SQL against Qdrant.
    assert sorted((d.kind, d.key) for d in plugin.verify(catalog)) == [("not_ingested", k) for k in removed]
    again = plugin.ingest(catalog)
    assert sorted(again.result.embedded) == removed and plugin.verify(catalog) == []


def test_delete_of_a_removed_file_leaves_verify_clean(plugin: SketchTextPlugin, catalog: Path) -> None:
    plugin.ingest(catalog)
    (catalog / "bags/item3.png").unlink()
    assert plugin.delete(["bags/item3.png"]) == ["bags/item3.png"]
    assert plugin.verify(catalog) == [] and "bags/item3.png" not in point_keys(plugin)


def test_unknown_keys_and_skus_remove_nothing(plugin: SketchTextPlugin, catalog: Path) -> None:
    plugin.ingest(catalog)
    with pytest.raises(AssetNotFoundError, match=r"shoes/nope.png, sku SKU-99; `sketchtext search --json`"):
        plugin.delete(["shoes/item0.png", "shoes/nope.png"], skus=["SKU-99"])
    assert len(point_keys(plugin)) == 6 and len(plugin.db.keys(plugin.collection)) == 6


def test_an_interrupted_delete_is_explained_by_verify_and_finished_by_a_rerun(
    plugin: SketchTextPlugin, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin.ingest(catalog)
    (catalog / "shoes/item4.jpg").unlink()

    def unreachable(*args: object) -> None:
        raise StoreUnavailableError("Qdrant went away")

    with monkeypatch.context() as patch:  # the store fails between the SQL mark and the point's removal
        patch.setattr(plugin.store, "delete", unreachable)
        with pytest.raises(StoreUnavailableError):
            plugin.delete(["shoes/item4.jpg"])
    row = plugin.db.assets_by_key(plugin.collection, ["shoes/item4.jpg"])["shoes/item4.jpg"]
    assert row.status == "pending"  # no row says embedded once its vector may be gone
    assert [d.kind for d in plugin.verify(catalog)] == ["orphan_point", "missing_file"]
    assert plugin.delete(["shoes/item4.jpg"]) == ["shoes/item4.jpg"]
    assert plugin.verify(catalog) == []


def test_delete_command(catalog: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    runner = CliRunner()
    base = ["--data-dir", str(data)]
    assert runner.invoke(main, [*base, "ingest", str(catalog), "--model", TINY_SPEC, "--device", "cpu"]).exit_code == 0
    done = runner.invoke(main, [*base, "delete", "--sku", "SKU-2", "--json"])
    assert done.exit_code == 0 and json.loads(done.output)["removed"] == ["shoes/item2.jpg"]
    missing = runner.invoke(main, [*base, "delete", "shoes/item2.jpg"])
    assert missing.exit_code == 1 and missing.output.startswith("error: Not in collection 'sketchtext': shoes/item2")
    bare = runner.invoke(main, [*base, "delete"])
    assert bare.exit_code == 2 and "Name the assets to remove" in bare.output


def test_delete_where_removes_what_the_filter_matches_and_refuses_unknown_values(
    plugin: SketchTextPlugin, catalog: Path
) -> None:
    plugin.ingest(catalog)
    bags = {key for key in plugin.db.keys(plugin.collection) if key.startswith("bags/")}
    with pytest.raises(QueryError, match="Unknown category 'hats'; the collection has: bags, shoes"):
        plugin.delete(where={"category": "hats"})
    assert len(point_keys(plugin)) == 6  # a refused filter removes nothing
    assert plugin.delete(where={"category": "bags"}) == sorted(bags)
    assert point_keys(plugin) == plugin.db.keys(plugin.collection) and not point_keys(plugin) & bags
    assert sorted((d.kind, d.key) for d in plugin.verify(catalog)) == [("not_ingested", k) for k in sorted(bags)]


def test_delete_command_where(catalog: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    runner = CliRunner()
    base = ["--data-dir", str(data)]
    assert runner.invoke(main, [*base, "ingest", str(catalog), "--model", TINY_SPEC, "--device", "cpu"]).exit_code == 0
    done = runner.invoke(main, [*base, "delete", "--where", "sku=SKU-2,SKU-3", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["removed"] == ["bags/item3.png", "shoes/item2.jpg"]
    unknown = runner.invoke(main, [*base, "delete", "--where", "material=suede"])
    assert unknown.exit_code == 1 and "Unknown filter field 'material'" in unknown.output
