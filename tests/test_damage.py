"""Damaged or missing state is named, never a traceback: a broken database, a store that lost its points, a deleted
database, read-only folders and a full disk (issue 19)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sketchtext.cli.main import main
from tests.conftest import TINY_SPEC

DAMAGED = "is damaged"
REBUILD = "move it aside (with its -wal and -shm files) and run `sketchtext verify --repair CATALOG`"


def run(data: Path, *args: str):
    return CliRunner().invoke(main, ["--data-dir", str(data), *args], catch_exceptions=False)


def ingest(data: Path, catalog: Path, *more: str):
    return run(data, "ingest", str(catalog), "--model", TINY_SPEC, "--device", "cpu", *more)


def search(data: Path, catalog: Path, *more: str):
    return run(data, "search", "--sketch", str(catalog / "bags/item3.png"), "--model", TINY_SPEC, "--json", *more)


def aside(database: Path) -> None:
    """What the message tells a user to do: move the file and its WAL companions away."""
    for path in database.parent.glob(database.name + "*"):
        path.rename(path.with_name("aside-" + path.name))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_database_is_named_on_every_command_and_verify_repair_rebuilds_it(
    catalog: Path, tmp_path: Path, damage: str
) -> None:
    data = tmp_path / "data"
    assert ingest(data, catalog).exit_code == 0
    database = data / "sketchtext.db"
    run(data, "db", "upgrade")  # closes cleanly: the WAL is checkpointed into the file
    for extra in database.parent.glob("sketchtext.db-*"):
        extra.unlink()
    whole = database.read_bytes()
    database.write_bytes(bytes(range(256)) * 64 if damage == "garbage" else whole[: len(whole) // 2])
    commands = {
        "ingest": ingest(data, catalog),
        "search": search(data, catalog),
        "verify": run(data, "verify", str(catalog), "--model", TINY_SPEC),
        "verify --repair": run(data, "verify", str(catalog), "--repair", "--model", TINY_SPEC),
        "status": run(data, "status"),
        "db upgrade": run(data, "db", "upgrade"),
    }
    for name, result in commands.items():
        assert result.exit_code == 1, (name, result.output)
        assert f"error: The metadata database at {database} {DAMAGED}" in result.output, name
        assert REBUILD in result.output and "Traceback" not in result.output, name
    aside(database)
    rebuilt = run(data, "verify", str(catalog), "--repair", "--model", TINY_SPEC, "--json")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert json.loads(rebuilt.output) == []
    hits = json.loads(search(data, catalog).output)
    assert hits[0]["key"] == "bags/item3.png" and hits[0]["asset"]["sku"] == "SKU-3"
    again = json.loads(ingest(data, catalog, "--json").output)
    assert (again["embedded"], again["unchanged"]) == (0, 6)


def test_a_store_that_lost_its_points_is_noticed_and_filled_again(catalog: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert ingest(data, catalog).exit_code == 0
    shutil.rmtree(data / "qdrant")
    report = json.loads(ingest(data, catalog, "--json").output)
    assert (report["embedded"], report["unchanged"]) == (6, 0)
    assert run(data, "verify", str(catalog), "--model", TINY_SPEC).exit_code == 0


def test_a_store_that_lost_some_points_gets_them_back(catalog: Path, tmp_path: Path) -> None:
    from sketchtext.plugin.db import asset_id
    from sketchtext.plugin.settings import load_settings
    from sketchtext.plugin.store.open import open_store

    data = tmp_path / "data"
    assert ingest(data, catalog).exit_code == 0
    settings = load_settings(data_dir=data)
    with open_store(settings) as store:
        store.delete(settings.store.collection, [asset_id(settings.store.collection, "shoes/item0.png")])
    report = json.loads(ingest(data, catalog, "--json").output)
    assert (report["embedded"], report["unchanged"]) == (1, 5)
    assert run(data, "verify", str(catalog), "--model", TINY_SPEC).exit_code == 0


def test_search_warns_when_the_database_is_gone(
    catalog: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    assert ingest(data, catalog).exit_code == 0
    aside(data / "sketchtext.db")
    with caplog.at_level(logging.WARNING, logger="sketchtext.plugin.facade"):
        hits = json.loads(search(data, catalog).output)
    assert hits and all(hit["asset"] is None for hit in hits)
    assert f"have no row in the metadata database at {data / 'sketchtext.db'}" in caplog.text
    assert "sketchtext verify --repair CATALOG" in caplog.text


def private_mounts() -> str | None:
    """Why mounts cannot be made here (they need root in a private mount namespace), or None when they can."""
    if shutil.which("unshare") is None:
        return "no `unshare` on this machine"
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "tmpfs", "/mnt"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot mount in a private namespace ({probe.stderr.strip()})"


needs_mounts = pytest.mark.skipif(private_mounts() is not None, reason=str(private_mounts()))


def commands_in_namespace(setup: str, data: Path, catalog: Path) -> dict[str, tuple[int, str]]:
    """Run `setup` (mounts, seen by no other process) then each command on `data`; {command: (exit code, output)}."""
    cli = f"{sys.executable} -m sketchtext.cli --data-dir {data}"
    model = f"--model {TINY_SPEC}"
    commands = {
        "ingest": f"{cli} ingest {catalog} {model}",
        "search": f"{cli} search --text red {model}",
        "verify": f"{cli} verify {catalog} {model}",
        "store info": f"{cli} store info",
        "status": f"{cli} status",
    }
    script = "set -e\n" + setup + "\nset +e\n"
    for name, line in commands.items():
        script += f"echo '=== {name}'; {line} 2>&1; echo \"=== rc $?\"\n"
    done = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out: dict[str, tuple[int, str]] = {}
    blocks = done.stdout.split("=== ")[1:]  # "NAME\nOUTPUT", then "rc CODE\n", for each command
    for head, tail in zip(blocks[::2], blocks[1::2], strict=True):
        name, _, output = head.partition("\n")
        out[name] = (int(tail.split()[1]), output)
    return out


@pytest.mark.slow
@needs_mounts
def test_a_read_only_data_dir_is_named_and_nothing_crashes(catalog: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert ingest(data, catalog).exit_code == 0
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    outcomes = commands_in_namespace(f"mount --bind {data} {data}\nmount -o remount,bind,ro {data}", data, catalog)
    for name in ("ingest", "search", "verify", "store info"):
        code, text = outcomes[name]
        assert code == 1 and "Traceback" not in text, (name, text)
        assert f"Cannot open the embedded store {data / 'qdrant' / 'edge'}: Read-only file system" in text, name
        assert "make the folder writable" in text, name
    code, text = outcomes["status"]
    assert code == 1 and f"its folder {data} must be writable" in text, text
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


@pytest.mark.slow
@needs_mounts
def test_a_full_disk_is_named_before_the_store_opens_never_sigbus(catalog: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert ingest(data, catalog).exit_code == 0
    disk = tmp_path / "disk"
    disk.mkdir()
    setup = (
        f"mount -t tmpfs -o size=160m tmpfs {disk}\ncp -a {data} {disk}/data\n"
        f"dd if=/dev/zero of={disk}/fill bs=1M 2>/dev/null || true"
    )
    outcomes = commands_in_namespace(setup, disk / "data", catalog)
    for name in ("ingest", "search", "verify", "store info"):
        code, text = outcomes[name]
        assert code == 1, (name, code, text)  # 135 was SIGBUS
        assert f"The disk holding the embedded store {disk / 'data' / 'qdrant' / 'edge'} has 0 MiB free" in text, name
        assert "free some space there" in text, name
    code, text = outcomes["status"]
    assert code == 1 and f"its folder {disk / 'data'} must be writable and have free space" in text, text
