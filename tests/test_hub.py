"""Pretrained weights offline: one attempt, a message that says what to do, in seconds rather than a minute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import json, sys, time
import open_clip, torch  # imported before the clock starts: the failure is what is measured
from sketchtext.plugin.errors import ModelUnavailableError
from sketchtext.plugin.model.factory import load_encoder
start = time.perf_counter()
try:
    load_encoder(sys.argv[1], device="cpu")
except ModelUnavailableError as exc:
    print(json.dumps({"seconds": time.perf_counter() - start, "message": str(exc)}))
"""


@pytest.mark.parametrize(
    "offline",
    [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],  # set offline, or a hub that does not answer
    ids=["HF_HUB_OFFLINE", "unreachable"],
)
def test_uncached_weights_offline_fail_at_once_with_the_fix(tmp_path: Path, offline: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(offline, HF_HOME=str(tmp_path / "hf"), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "open_clip:ViT-B-32@laion2b_s34b_b79k"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["seconds"] < 5.0
    assert "--model open_clip:ViT-B-32@/path/to/open_clip_pytorch_model.bin" in result["message"]
    assert "Retrying" not in done.stderr and "WARNING" not in done.stderr  # one attempt, nothing repeated


def test_an_unknown_pretrained_tag_lists_the_valid_ones() -> None:
    from sketchtext.plugin.errors import ConfigError
    from sketchtext.plugin.model.hub import hub_files

    with pytest.raises(ConfigError, match="laion2b_s34b_b79k"):
        hub_files("ViT-B-32", "no-such-tag")
    assert hub_files("ViT-B-32", "laion2b_s34b_b79k") == (
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
    )
