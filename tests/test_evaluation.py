"""FG-SBIR ranks and accuracy, and `sketchtext train` + `sketchtext eval` as a user runs them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sketchtext.cli.main import main
from sketchtext.plugin.method.evaluation import MODES, accuracy, ranks, rerank_ranks
from sketchtext.plugin.store.regions import RegionSearch
from tests.conftest import TINY_SPEC
from tests.generated_pairs import make_pairs


def test_ranks_and_accuracy() -> None:
    gallery = np.eye(3, dtype=np.float32)
    queries = np.array([[1, 0.2, 0], [0.9, 1, 0], [1, 0, 0.1]], np.float32)
    rank = ranks(queries, gallery, [0, 1, 2])
    assert rank.tolist() == [1, 1, 2]
    assert accuracy(rank, (1, 5)) == {"acc@1": pytest.approx(2 / 3), "acc@5": 1.0}


def test_rerank_ranks_follow_the_two_stages() -> None:
    """Target 1 is second by the global vector but has the best region: the rerank lifts it to first. Target 3 is
    outside the 2 prefetched candidates, so it keeps its global rank (the store never returns it)."""
    gallery = np.eye(4, dtype=np.float32)
    query = np.array([0.8, 0.5, 0.1, 0.3], np.float32)
    regions = np.stack([np.stack([g, g]) for g in gallery])
    regions[1, 1] = query / np.linalg.norm(query)
    queries = np.stack([query] * 2)
    assert ranks(queries, gallery, [1, 3]).tolist() == [2, 3]
    assert rerank_ranks(queries, gallery, regions, [1, 3], RegionSearch(prefetch=2, weight=1.0)).tolist() == [1, 3]
    assert rerank_ranks(queries, gallery, regions, [1, 3], RegionSearch(prefetch=2, weight=0.1)).tolist() == [2, 3]


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_and_eval_commands(tmp_path: Path, one_thread: None) -> None:
    data = make_pairs(tmp_path / "pairs", photos=16, sketches_per_photo=2, splits=(8, 4, 4), twins=True)
    out = tmp_path / "checkpoint"
    runner = CliRunner()
    args = ["train", "--base", TINY_SPEC, "--data", str(data), "--out", str(out), "--device", "cpu"]
    trained = runner.invoke(main, [*args, "--epochs", "2", "--lr", "1e-2", "--lambda", "rec=0.1"])
    assert trained.exit_code == 0, trained.output
    assert "best epoch" in trained.output and "val Acc@1" in trained.output and "pairs/s" in trained.output
    config = json.loads((out / "config.json").read_text())
    assert config["method"]["lambda_rec"] == 0.1
    assert config["combine"]["source"] == "best Acc@1 on 8 validation text queries"  # the val split's texts
    assert set(config["combine"]["measured"]) == {"composed", "sum", "fusion"}
    again = runner.invoke(main, [*args, "--epochs", "2", "--lr", "1e-2", "--lambda", "rec=0.1", "--json"])
    assert json.loads(again.output)["resumed_from_epoch"] == 2

    result = runner.invoke(main, ["eval", "--checkpoint", str(out), "--data", str(data), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "split test: 8 sketches, 8 text queries, gallery of 4 photos"
    for mode in MODES:
        row = next(line for line in lines if line.startswith(mode + " "))
        n, acc1, acc5, acc10, mean_rank = (float(v) for v in row.split()[1:6])
        assert n == 8 and 0 <= acc1 <= acc5 <= acc10 == 1.0 and 1 <= mean_rank <= 4
    report = json.loads((out / "eval-test.json").read_text())
    assert [r["mode"] for r in report["results"]] == [row for m in MODES for row in (m, f"{m}+regions")]
    plain = runner.invoke(main, ["eval", "--checkpoint", str(out), "--data", str(data), "--no-regions", "--json"])
    assert [r["mode"] for r in json.loads(plain.output)["results"]] == list(MODES)

    bad = runner.invoke(main, [*args, "--lambda", "speed=1"])
    assert bad.exit_code == 1 and "NAME one of rt, tt, comp, reg, rec" in bad.output
    empty = runner.invoke(main, ["eval", "--checkpoint", str(out), "--data", str(data), "--split", "val"])
    assert empty.exit_code == 0 and "gallery of 4 photos" in empty.output
    nothing = runner.invoke(main, ["eval", "--checkpoint", str(tmp_path), "--data", str(data)])
    assert nothing.exit_code == 1 and "not a sketchtext checkpoint" in nothing.output
