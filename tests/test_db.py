"""SQL metadata: migrations up and down, no drift between models and migrations, asset bookkeeping."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from sketchtext.plugin.db import AssetStatus, Base, MetadataDB, asset_id
from sketchtext.plugin.errors import DatabaseError, DatabaseUnavailableError


def test_migrations_up_down_and_no_drift(db_url: str) -> None:
    db = MetadataDB(db_url)
    db.upgrade()
    assert db.current_revision() == db.head_revision()
    assert {"assets", "ingest_runs"} <= set(inspect(db.engine).get_table_names())
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"models and migrations drifted: {diff}"
    db.downgrade("base")
    assert db.current_revision() is None
    assert not {"assets", "ingest_runs"} & set(inspect(db.engine).get_table_names())
    db.upgrade()  # and back up again
    assert db.current_revision() == db.head_revision()


def test_schema_not_current_is_a_clear_error(db_url: str) -> None:
    with pytest.raises(DatabaseError, match="sketchtext db upgrade"):
        MetadataDB(db_url).ensure_schema(auto_upgrade=False)


def test_unreachable_database_names_the_setting() -> None:
    db = MetadataDB("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailableError, match="SKETCHTEXT_DB__URL"):
        db.current_revision()


def test_asset_rows_round_trip(db_url: str) -> None:
    db = MetadataDB(db_url)
    db.upgrade()
    row = {"collection": "c", "key": "shoes/a.jpg", "category": "shoes", "extra": {"colour": "red"}, "sha256": "ab"}
    db.save_assets([row, {**row, "key": "shoes/b.jpg"}])
    db.save_assets([{**row, "sha256": "cd"}])  # update, not duplicate
    db.mark_embedded("c", ["shoes/a.jpg"], "tiny@x")
    assets = db.assets_by_key("c", ["shoes/a.jpg", "shoes/b.jpg", "missing"])
    assert set(assets) == {"shoes/a.jpg", "shoes/b.jpg"}
    a = assets["shoes/a.jpg"]
    assert (a.sha256, a.status, a.model_fingerprint, a.extra) == (
        "cd",
        AssetStatus.EMBEDDED,
        "tiny@x",
        {"colour": "red"},
    )
    assert a.id == asset_id("c", "shoes/a.jpg") != asset_id("other", "shoes/a.jpg")
    assert db.status_counts("c") == {"embedded": 1, "pending": 1}
    db.delete_assets("c", ["shoes/b.jpg"])
    assert db.keys("c") == {"shoes/a.jpg"}
    run = db.start_run("c", "/cat", "tiny@x", 2)
    db.finish_run(run, "completed", embedded=1, failed=1)
    (latest,) = db.latest_runs(1)
    assert (latest.id, latest.status, latest.embedded, latest.failed) == (run, "completed", 1, 1)
