"""Staff feedback round trip: marks posted through the API → `sketchtext feedback export` → `sketchtext eval`."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from sketchtext.cli.main import main
from sketchtext.plugin.method.evaluation import MODES
from sketchtext.plugin.miniature.demo import bundle_dir
from sketchtext.plugin.web.app import create_app
from sketchtext.plugin.web.feedback import feedback_marks
from tests.test_web import build_world, data_url


@pytest.fixture
def world(tmp_path: Path, tiny_encoder):
    plugin, settings, root = build_world(tmp_path, tiny_encoder)
    yield plugin, settings, root
    plugin.close()


def test_marks_from_the_api_become_an_evaluation_set(world, tmp_path: Path) -> None:
    plugin, settings, root = world
    client = TestClient(create_app(plugin, settings))
    marked = []
    for i, words in ((0, "in red"), (2, None), (4, "on a beach")):
        key = f"shoes/item{i}.png"
        sketch = data_url((root / key).read_bytes())
        found = client.post("/api/search", json={"sketch": sketch, "text": words, "category": "shoes"}).json()
        hit = next(h for h in found["hits"] if h["key"] == key)
        mark = {"asset_id": hit["asset_id"], "mark": "match", "sketch": sketch, "text": words, "category": "shoes"}
        answer = client.post("/api/feedback", json=mark)
        assert answer.status_code == 201, answer.text
        marked.append(key)
        wrong = next(h for h in found["hits"] if h["key"] != key)
        assert (
            client.post("/api/feedback", json={**mark, "asset_id": wrong["asset_id"], "mark": "wrong"}).status_code
            == 201
        )
    bad = client.post("/api/feedback", json={"asset_id": hit["asset_id"], "mark": "maybe"})
    assert bad.status_code == 422 and "use one of match, wrong" in bad.json()["error"]
    gone = client.post("/api/feedback", json={"asset_id": "00000000-0000-0000-0000-000000000000", "mark": "match"})
    assert gone.status_code == 404
    stored = feedback_marks(plugin.db, plugin.collection)
    assert [m.mark for m in stored] == ["match", "wrong"] * 3 and stored[0].filters == {"category": "shoes"}
    assert stored[0].text == "in red" and stored[0].sketch_png.startswith(b"\x89PNG")

    out = tmp_path / "feedback"
    runner = CliRunner()
    exported = runner.invoke(main, ["--data-dir", str(settings.data_dir), "feedback", "export", str(out)])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output.splitlines()[0]) == {
        "out": str(out), "marks": 6, "pairs": 3, "queries": 2, "skipped": 0
    }  # fmt: skip
    with (out / "pairs.csv").open() as fh:
        assert [row["photo"] for row in csv.DictReader(fh)] == [f"photos/{key}" for key in marked]
    with (out / "queries.csv").open() as fh:
        assert [row["text"] for row in csv.DictReader(fh)] == ["in red", "on a beach"]

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(bundle_dir() / "method", checkpoint)  # the demo's; eval writes its report beside it
    base = f"open_clip:sketchtext-mini@{bundle_dir() / 'mini-clip.safetensors'}"
    args = ["eval", "--checkpoint", str(checkpoint), "--model", base, "--data", str(out), "--device", "cpu", "--json"]
    report = runner.invoke(main, args)
    assert report.exit_code == 0, report.output
    result = json.loads(report.output)
    assert result["sketches"] == 3 and result["text_queries"] == 2
    # the sketch modes and, with words, the rest; each also reranked by regions (the trained checkpoint stores them)
    assert {row["mode"] for row in result["results"]} == set(MODES) | {f"{mode}+regions" for mode in MODES}
    assert all(
        0 <= row["accuracy"]["acc@1"] <= row["accuracy"]["acc@5"] == 1.0 for row in result["results"]
    )  # a gallery of 3 photos


def test_export_without_marks_says_what_to_do(world, tmp_path: Path) -> None:
    _, settings, _ = world
    result = CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), "feedback", "export", str(tmp_path / "o")])
    assert result.exit_code == 1 and "mark hits of sketch searches on the page first" in result.output
