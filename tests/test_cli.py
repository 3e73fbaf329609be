"""The command line as a user runs it: ingest with a summary, search with JSON, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sketchtext.cli.main import main
from tests.conftest import TINY_SPEC, draw_product


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
    assert up.exit_code == 0 and "revision 0002" in up.output
    down = run("db", "downgrade", "base", data_dir=data)
    assert down.exit_code == 0 and "revision None" in down.output


def test_an_empty_catalogue_folder_fails_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run("ingest", str(tmp_path / "empty"), "--model", TINY_SPEC, data_dir=tmp_path / "data")
    assert result.exit_code == 1 and f"No files under {tmp_path / 'empty'}: nothing to ingest" in result.output


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "catalog.csv",
            'path,sku\nshoes/a.png,"SKU-1\nshoes/b.png,SKU-2\n',
            "catalog.csv, line 2: unexpected end of data",
        ),
        ("catalog.csv", "path,sku\nshoes/a.png,SKU-1\n,SKU-2\n", "catalog.csv line 3 has no 'path'"),
        ("catalog.csv", 'path,sku\nshoes/a.png,"SKU\n1"\n../x.png,X\n', "catalog.csv line 4 names '../x.png'"),
        ("catalog.jsonl", '{"path": "shoes/a.png"}\n\n{"path": \n', "catalog.jsonl, line 3: Expecting value"),
    ],
    ids=["unclosed-quote", "no-path", "after-a-quoted-newline", "jsonl"],
)
def test_a_bad_sidecar_is_refused_with_its_line_number(tmp_path: Path, name: str, text: str, message: str) -> None:
    root = tmp_path / "catalog"
    draw_product(root / "shoes" / "a.png", 0, "red")
    (root / name).write_text(text)
    result = run("ingest", str(root), "--model", TINY_SPEC, data_dir=tmp_path / "data")
    assert result.exit_code == 1 and message in result.output, result.output


def test_status_and_search_on_a_missing_data_dir_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    status = run("status", data_dir=missing)
    assert status.exit_code == 0 and "no ingest yet" in status.output and "sketchtext ingest ./catalog" in status.output
    search = run("search", "--text", "red", "--model", TINY_SPEC, data_dir=missing)
    assert search.exit_code == 1 and "does not exist; ingest a catalog into it first" in search.output
    assert not missing.exists()


def test_status_on_an_unmigrated_server_database_says_db_upgrade(postgres_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["status"], env={"SKETCHTEXT_DB__URL": postgres_url}, catch_exceptions=False)
    assert result.exit_code == 0 and "run `sketchtext db upgrade`" in result.output
    assert "sketchtext ingest" not in result.output  # ingest refuses an unmigrated server database


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("open_clip:ViT-Q-99", "Unknown open_clip architecture 'ViT-Q-99'"),
        ("open_clip:sketchtext-tiny@/no/such/file.safetensors", "Checkpoint file /no/such/file.safetensors does not"),
    ],
)
def test_a_bad_model_spec_is_told_before_any_progress_bar(catalog: Path, tmp_path: Path, spec: str, message: str):
    result = run("ingest", str(catalog), "--model", spec, data_dir=tmp_path / "data")
    assert result.exit_code == 1 and message in result.output
    assert "img" not in result.output and not (tmp_path / "data").exists()  # no bar, nothing written


def test_search_refuses_unknown_filter_values_like_the_api(catalog: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("ingest", str(catalog), "--model", TINY_SPEC, data_dir=data).exit_code == 0
    for args, says in [
        (("--category", "shoe"), "error: Unknown category 'shoe'; the collection has: bags, shoes."),
        (("--where", "colour=pink"), "error: Unknown colour 'pink'; the collection has: black, blue, green, orange"),
        (("--where", "brand=acme"), "error: Unknown filter field 'brand'; the collection's fields are: category"),
        (("--where", "scene"), "is not FIELD=VALUE"),
    ]:
        refused = CliRunner().invoke(
            main, ["--data-dir", str(data), "search", "--text", "a shoe", *args, "--model", TINY_SPEC]
        )
        assert refused.exit_code == 1 and says in refused.output, refused.output
        assert "no hits" not in refused.output


def test_search_like_where_offset_and_a_sheet(catalog: Path, tmp_path: Path) -> None:
    from PIL import Image

    data = tmp_path / "data"
    assert run("ingest", str(catalog), "--model", TINY_SPEC, data_dir=data).exit_code == 0
    like = ["search", "--like", "bags/item3.png", "--model", TINY_SPEC, "--json"]
    hits = json.loads(run(*like, data_dir=data).output)
    assert hits[0]["key"] == "bags/item3.png" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    second = json.loads(run(*like, "--offset", "1", "--limit", "2", data_dir=data).output)
    assert [h["key"] for h in second] == [h["key"] for h in hits[1:3]]
    narrowed = json.loads(
        run(*like, "--where", "extra.colour=red,blue", "--where", "scene=beach", data_dir=data).output
    )
    assert {h["key"] for h in narrowed} == {"shoes/item0.png", "bags/item1.jpg"}
    sheet = tmp_path / "out" / "results.png"
    drawn = run(
        "search", "--like", "bags/item3.png", "--text", "in red", "--limit", "4", "--sheet", str(sheet),
        "--model", TINY_SPEC, data_dir=data,
    )  # fmt: skip
    assert drawn.exit_code == 0 and f"sheet: {sheet}" in drawn.output, drawn.output
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.width > 4 * 96 and image.height >= 96
        query_cell = image.crop((6, 28, 102, 124)).convert("RGB")
    with Image.open(catalog / "bags/item3.png") as photo:
        orange = photo.convert("RGB").getpixel((photo.width // 3, photo.height // 2))
    assert orange in query_cell.getdata()  # the liked photo stands where a sketch would
