"""The distributed commands that need no broker: `status`, and the worker's refusals before it starts."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sketchtext.cli.main import main
from tests.conftest import TINY_SPEC


def run(*args: str, data_dir: Path):
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *args], catch_exceptions=False)


def test_status_shows_runs_and_counts(catalog: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert "no ingest yet" in run("status", data_dir=data).output
    (catalog / "broken.jpg").write_text("nope")
    assert run("ingest", str(catalog), "--model", TINY_SPEC, data_dir=data).exit_code == 0
    assert run("ingest", str(catalog), "--model", TINY_SPEC, "--collection", "other", data_dir=data).exit_code == 0
    shown = run("status", data_dir=data)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].split()[:3] == ["run", "collection", "status"]
    assert lines[1].split()[:3] == ["2", "other", "completed"] and lines[2].split()[:3] == [
        "1",
        "sketchtext",
        "completed",
    ]
    assert "assets in sketchtext: 6 embedded, 0 pending, 1 failed" in shown.output
    report = json.loads(run("status", "--collection", "sketchtext", "--json", data_dir=data).output)
    assert [r["id"] for r in report["runs"]] == [1] and report["assets"] == {"sketchtext": {"embedded": 6, "failed": 1}}
    assert report["runs"][0]["total"] == 7 and report["runs"][0]["failed"] == 1


def test_status_names_the_rerun_for_assets_left_pending_by_a_dead_run(catalog: Path, tmp_path: Path) -> None:
    from sketchtext.plugin.db import MetadataDB
    from sketchtext.plugin.ingest.catalog import scan_catalog
    from sketchtext.plugin.ingest.queued import register_pending

    data = tmp_path / "data"
    assert run("ingest", str(catalog), "--model", TINY_SPEC, data_dir=data).exit_code == 0
    db = MetadataDB(f"sqlite:///{data / 'sketchtext.db'}")
    db.start_run("sketchtext", str(catalog), "tiny@x", 6)  # an `ingest --queue` killed with its batches queued
    register_pending(db, "sketchtext", list(scan_catalog(catalog))[:2])
    db.engine.dispose()
    shown = run("status", data_dir=data).output
    assert "interrupted" in shown and "assets in sketchtext: 4 embedded, 2 pending, 0 failed" in shown
    assert f"`sketchtext ingest {catalog} --queue`" in shown


def test_worker_refuses_a_pool_the_embedded_store_cannot_serve(tmp_path: Path) -> None:
    result = run("worker", "--pool", "prefork", "--concurrency", "2", data_dir=tmp_path / "data")
    assert result.exit_code == 1 and "Qdrant server" in result.output and "Traceback" not in result.output
