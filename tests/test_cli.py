"""The command line as a user runs it: ingest with a summary, search with JSON, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sketchtext.cli.main import main
from tests.conftest import TINY_SPEC


def run(*args: str, data_dir: Path):
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *args], catch_exceptions=False)


def test_ingest_search_and_summary(catalog: Path, tmp_path: Path) -> None:
    (catalog / "broken.jpg").write_text("nope")
    data = tmp_path / "data"
    first = run("ingest", str(catalog), "--model", TINY_SPEC, "--device", "cpu", data_dir=data)
    assert first.exit_code == 0, first.output
    assert "6 embedded, 0 unchanged, 1 failed" in first.output and "failed: broken.jpg" in first.output
    second = run("ingest", str(catalog), "--model", TINY_SPEC, "--json", data_dir=data)
    report = json.loads(second.output)
    assert (report["embedded"], report["unchanged"], report["failed"]) == (0, 6, 1)
    assert report["failures"][0]["key"] == "broken.jpg"
    hits = run(
        "search",
        "--sketch",
        str(catalog / "bags/item3.png"),
        "--category",
        "bags",
        "--model",
        TINY_SPEC,
        "--json",
        data_dir=data,
    )
    parsed = json.loads(hits.output)
    assert parsed[0]["key"] == "bags/item3.png" and {h["asset"]["category"] for h in parsed} == {"bags"}
    text = run("search", "--text", "a red bag", "--limit", "2", "--model", TINY_SPEC, data_dir=data)
    assert text.exit_code == 0 and text.output.count("sku=SKU-") == 2


def test_errors_are_one_line_with_exit_code_1(catalog: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    empty = run("search", "--model", TINY_SPEC, data_dir=data)
    assert empty.exit_code == 1 and empty.output.startswith("error: The query has neither")
    missing = run("search", "--text", "boot", "--model", TINY_SPEC, data_dir=data)
    assert missing.exit_code == 1 and "does not exist; ingest a catalog" in missing.output
    assert run("ingest", str(catalog), "--model", TINY_SPEC, data_dir=data).exit_code == 0
    other = run("search", "--text", "boot", "--model", "open_clip:RN50", data_dir=data)
    assert other.exit_code == 1 and "holds vectors of model sketchtext-tiny" in other.output
    assert "Traceback" not in other.output


def test_db_upgrade_and_downgrade(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = run("db", "upgrade", data_dir=data)
    assert up.exit_code == 0 and "revision 0001" in up.output
    down = run("db", "downgrade", "base", data_dir=data)
    assert down.exit_code == 0 and "revision None" in down.output
