"""`sketchtext reproduce` on a micro world, and `sketchtext demo` on a tiny catalogue with the bundled checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from sketchtext.cli.main import main
from sketchtext.plugin.errors import ConfigError
from sketchtext.plugin.miniature.demo import bundle_dir, run_demo
from sketchtext.plugin.miniature.reproduce import ROWS, config_for, export_bundle, reproduce


def test_reproduce_runs_every_stage_on_a_micro_world(tmp_path: Path) -> None:
    stages: list[str] = []
    table = reproduce(tmp_path / "run", "micro", progress=lambda stage, done, total: stages.append(stage))
    assert {"generate", "pretrain", "train", "evaluate"} <= set(stages)
    saved = json.loads((tmp_path / "run" / "table.json").read_text())
    assert [r["row"] for r in saved["rows"]] == [label for label, _ in ROWS]
    assert all(0.0 <= r["acc1"] <= r["acc10"] <= 1.0 and r["n"] > 0 for r in saved["rows"])
    assert saved["probes"] and saved["seconds"]["total"] > 0 and table["gallery"] > 0
    assert "| composed sketch+text |" in (tmp_path / "run" / "table.md").read_text()
    bundle = export_bundle(tmp_path / "run", tmp_path / "bundle")
    assert {p.name for p in bundle} >= {"mini-clip.safetensors", "model.safetensors", "config.json"}


def test_unknown_sizes_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="micro"):
        config_for("huge")
    with pytest.raises(ConfigError, match="tiny"):
        run_demo(tmp_path, size="huge")


def test_bundled_demo_checkpoint_fits_the_package_budget() -> None:
    root = bundle_dir()
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) <= 20 * 1024 * 1024
    assert not (root / "method" / "train-state").exists()


def test_demo_runs_end_to_end_on_a_tiny_catalogue(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--size", "tiny"])
    assert result.exit_code == 0, result.output
    for mode in ("sketch", "text", "sum", "composed", "fusion"):
        assert f"| {mode} |" in result.output
    sheet = tmp_path / "demo" / "contact-sheet.png"
    with Image.open(sheet) as image:
        assert image.width > 500 and image.height > 200
    assert (tmp_path / "demo" / "table.md").is_file()


def test_reproduce_builds_a_second_world_from_other_families_and_colours(tmp_path: Path) -> None:
    args = ["reproduce", "--out", str(tmp_path / "run"), "--size", "micro", "--seed", "1", "--families", "mug,vase"]
    colours = "orange,yellow,green,teal,navy,purple,pink,brown,white,beige"
    result = CliRunner().invoke(main, [*args, "--colours", colours])
    assert result.exit_code == 0, result.output
    assert "families mug, vase" in result.output and "zero-shot sketch→photo Acc@1" in result.output
    assert json.loads((tmp_path / "run" / "table.json").read_text())["config"]["categories"] == ["mug", "vase"]
