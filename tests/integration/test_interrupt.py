"""Real interruptions of a real `sketchtext ingest` process: SIGINT and SIGKILL at a random point, and two at once."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sketchtext.plugin.ingest.catalog import scan_catalog
from sketchtext.plugin.miniature.generate import generate_world
from tests.conftest import TINY_SPEC

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAUSED_INGEST = Path(__file__).with_name("paused_ingest.py")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, shapes_per_category=6, colourways_per_shape=4, sketches_per_shape=1)
    return out / "catalog"


def cli(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", "from sketchtext.cli.main import main; main()", "--data-dir", str(data), *args]


def ingest_args(catalog: Path, batch_size: int = 4) -> list[str]:
    return ["ingest", str(catalog), "--model", TINY_SPEC, "--device", "cpu", "--batch-size", str(batch_size), "--json"]


def embedded_count(data: Path) -> int:
    try:
        with sqlite3.connect(data / "sketchtext.db", timeout=5) as db:
            return db.execute("SELECT count(*) FROM assets WHERE status = 'embedded'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # not created yet


def wait_for_embedded(process: subprocess.Popen, data: Path, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while embedded_count(data) < at_least:
        assert process.poll() is None, "the ingest finished before it could be interrupted"
        assert time.monotonic() < deadline, "the ingest made no progress"
        time.sleep(0.05)


def run_to_end(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(data, *args), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_ingest_resumes_and_verifies_clean(world: Path, tmp_path: Path, sig: signal.Signals) -> None:
    # The signal comes at a point the test controls, however busy the machine: the decoder pauses on a file placed
    # at a random (reproducible) position, and the signal arrives while it waits there, with earlier batches written.
    catalog, data = tmp_path / "catalog", tmp_path / "data"
    shutil.copytree(world, catalog)
    keys = [entry.key for entry in scan_catalog(catalog)]
    at = random.Random(int(sig)).randint(8, len(keys) // 2)
    (catalog / f"{keys[at]}-pause.png").write_bytes(b"PAUSE until the signal")
    # only the files ingested before the paused one can be written: the batch holding it never completes
    before = [entry.key for entry in scan_catalog(catalog)].index(f"{keys[at]}-pause.png")
    total = len(keys)
    env = {
        **os.environ,
        "SKETCHTEXT_TEST_PAUSED": str(tmp_path / "paused"),
        "SKETCHTEXT_TEST_RESUME": str(tmp_path / "go"),
    }
    process = subprocess.Popen(
        [sys.executable, str(PAUSED_INGEST), "--data-dir", str(data), *ingest_args(catalog)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "paused").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the ingest never reached the paused file"
            time.sleep(0.05)
        wait_for_embedded(process, data, 4)  # the batches before the paused one are written meanwhile
        os.kill(process.pid, sig)
        (tmp_path / "go").touch()  # a SIGINTed run unwinds only once its decode threads return
        process.wait(timeout=60)
    finally:
        process.kill()
    assert 0 < embedded_count(data) <= before < total
    # the next command tells the dead run from a live one and counts what it embedded from SQL
    status = run_to_end(data, "status", "--json")
    latest = json.loads(status.stdout)["runs"][0]
    assert (latest["status"], latest["embedded"]) == ("interrupted", embedded_count(data)), status.stdout
    rerun = subprocess.run(
        [sys.executable, str(PAUSED_INGEST), "--data-dir", str(data), *ingest_args(catalog)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert embedded_count(data) == total
    verify = run_to_end(data, "verify", str(catalog), "--model", TINY_SPEC)
    assert verify.returncode == 0 and "0 difference(s)" in verify.stdout, verify.stdout + verify.stderr


def test_two_ingests_at_once_one_fails_clearly_nothing_corrupt(world: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = subprocess.Popen(
        cli(data, *ingest_args(world, 2)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_embedded(first, data, 1)
        os.kill(first.pid, signal.SIGSTOP)  # paused mid-run, holding the store, however fast this machine is
        second = run_to_end(data, *ingest_args(world))
        os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert second.returncode == 1
    assert second.stderr.startswith("error: ")
    # local mode refuses at opening the store; Edge opens collections lazily, so the ingest lock speaks first
    assert "in use by another process" in second.stderr or "holds the ingest lock" in second.stderr
    assert first.returncode == 0, err
    verify = run_to_end(data, "verify", "--model", TINY_SPEC)
    assert verify.returncode == 0, verify.stdout + verify.stderr
