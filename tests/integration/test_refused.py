"""Processes refused the embedded store touch nothing: a running ingest finishes as if they had never asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_SPEC, draw_product

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAUSED_INGEST = Path(__file__).with_name("paused_ingest.py")


def command(data: Path, *args: str) -> list[str]:
    return [sys.executable, str(PAUSED_INGEST), "--data-dir", str(data), *args]


def test_commands_refused_the_store_leave_a_running_ingest_alone(tmp_path: Path) -> None:
    catalog, data = tmp_path / "catalog", tmp_path / "data"
    env = {**os.environ, "SKETCHTEXT_TEST_PAUSED": str(tmp_path / "paused")}
    env["SKETCHTEXT_TEST_RESUME"] = str(tmp_path / "go")
    for i in range(8):
        if i == 4:  # a collection and a store exist before the ingest under test starts
            first = subprocess.run(command(data, "ingest", str(catalog), "--model", TINY_SPEC), env=env, timeout=300)
            assert first.returncode == 0
        draw_product(catalog / ("shoes" if i % 2 else "bags") / f"item{i}.png", i, "red")
    (catalog / "zz-pause.png").write_bytes(b"PAUSE until the test says go")
    ingest = subprocess.Popen(
        command(data, "ingest", str(catalog), "--model", TINY_SPEC, "--batch-size", "4", "--json"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "paused").exists():  # the ingest holds the store and waits inside the decoder
            assert ingest.poll() is None, ingest.communicate()
            assert time.monotonic() < deadline, "the ingest never reached the paused file"
            time.sleep(0.05)
        for args in (["verify"], ["search", "--text", "a red bag", "--model", TINY_SPEC], ["store", "info"]):
            refused = subprocess.run(command(data, *args), env=env, capture_output=True, text=True, timeout=120)
            assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
            assert "is in use by another process" in refused.stderr and "Traceback" not in refused.stderr, args
        status = subprocess.run(command(data, "status"), env=env, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in status.stderr, status.stderr  # SQL only: it answers while the ingest runs
        live = subprocess.run(command(data, "status", "--json"), env=env, capture_output=True, text=True, timeout=120)
        assert json.loads(live.stdout)["runs"][0]["status"] == "running"  # a live driver holds the ingest lock
    finally:
        (tmp_path / "go").touch()
        out, err = ingest.communicate(timeout=240)
    assert ingest.returncode == 0, err
    report = json.loads(out)
    assert (report["embedded"], report["unchanged"], report["failed"]) == (4, 4, 1)
    assert "(a paused test file)" in report["failures"][0]["reason"]
    verify = subprocess.run(command(data, "verify", "--json"), env=env, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0 and json.loads(verify.stdout) == [], verify.stdout + verify.stderr
