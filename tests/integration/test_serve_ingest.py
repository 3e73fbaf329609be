"""Ingest while serving: a real `sketchtext serve` on the embedded default takes `sketchtext ingest`'s job and keeps
answering searches; a second serve refuses; Ctrl-C on the ingest cancels the server's run.

The server's decoder pauses on a PAUSE file (tests/integration/paused_ingest.py) until the test says go, so the
searches, the second serve and the Ctrl-C all land while the server's run is under way, however busy the machine."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY_SPEC, draw_product

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAUSED = Path(__file__).with_name("paused_ingest.py")
TOKEN = "serve-ingest-token"


def wait_for(path: Path, process: subprocess.Popen[str], what: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, f"{what}: the process ended: {process.communicate()}"
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def search(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url + "api/search",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Searcher(threading.Thread):
    """A client that searches again and again until told to stop, keeping every status."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.statuses, self.stop = url, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.statuses.append(search(self.url, {"text": "a red shoe", "limit": 5})[0])


def test_ingest_hands_off_to_the_server_which_keeps_searching(tmp_path: Path) -> None:
    catalog, data = tmp_path / "catalog", tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKETCHTEXT_")}
    env.update(
        SKETCHTEXT_TEST_PAUSED=str(tmp_path / "paused"),
        SKETCHTEXT_TEST_RESUME=str(tmp_path / "go"),
        SKETCHTEXT_WEB__TOKEN=TOKEN,
        SKETCHTEXT_MODEL__SPEC=TINY_SPEC,
        SKETCHTEXT_MODEL__DEVICE="cpu",
        SKETCHTEXT_MODEL__BATCH_SIZE="2",
        PYTHONUNBUFFERED="1",
    )

    def cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "sketchtext.cli", "--data-dir", str(data), *args]
        return subprocess.run(command, env=kwargs.pop("env", env), capture_output=True, text=True, timeout=300)

    for i in range(4):
        draw_product(catalog / ("shoes" if i % 2 else "bags") / f"item{i}.png", i, "red")
    assert cli("ingest", str(catalog)).returncode == 0
    serve_log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, str(PAUSED), "--data-dir", str(data), "serve", "--port", "0"],
        env=env,
        stdout=serve_log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    searcher = None
    try:
        wait_for(data / "serve.json", server, "the server never announced itself")
        url = json.loads((data / "serve.json").read_text())["url"]
        assert json.loads((data / "serve.json").read_text())["token_required"] is True
        searcher = Searcher(url)
        searcher.start()
        for i in range(4, 8):  # new photos, then a file the server's decoder pauses on
            draw_product(catalog / "new" / f"item{i}.png", i, ["blue", "green", "purple", "black"][i - 4])
        (catalog / "zz-pause.png").write_bytes(b"PAUSE until the test says go")
        ingest = subprocess.Popen(
            [sys.executable, "-m", "sketchtext.cli", "--data-dir", str(data), "ingest", str(catalog), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(tmp_path / "paused", ingest, "the server's ingest never reached the paused file")
        # The run is under way in the server, holding the store: searches answer, a second server refuses.
        during = [search(url, {"text": "a blue bag", "limit": 3}) for _ in range(5)]
        assert [status for status, _ in during] == [200] * 5, during
        second = cli("serve", "--port", "0")
        assert second.returncode == 1 and f"is already served by `sketchtext serve` at {url}" in second.stderr
        no_token = {k: v for k, v in env.items() if k != "SKETCHTEXT_WEB__TOKEN"}
        refused = cli("ingest", str(catalog), env=no_token)
        assert refused.returncode == 1 and "needs its token; set SKETCHTEXT_WEB__TOKEN" in refused.stderr
        (tmp_path / "go").touch()
        out, err = ingest.communicate(timeout=300)
        assert ingest.returncode == 0, err
        report = json.loads(out)
        assert (report["embedded"], report["unchanged"], report["failed"], report["total"]) == (4, 4, 1, 9)
        searcher.stop.set()
        searcher.join(120)
        assert searcher.statuses and set(searcher.statuses) == {200}, searcher.statuses
        # The new photos are found: each one's own picture brings it first.
        for i in range(4, 8):
            photo = (catalog / "new" / f"item{i}.png").read_bytes()
            status, found = search(url, {"sketch": "data:image/png;base64," + base64.b64encode(photo).decode()})
            assert status == 200 and found["hits"][0]["key"] == f"new/item{i}.png", found

        # A delete is handed to the server too: the asset is gone from its searches at once.
        deleted = cli("delete", "new/item5.png", "--json")
        assert deleted.returncode == 0 and json.loads(deleted.stdout)["removed"] == ["new/item5.png"], deleted.stderr
        unknown = cli("delete", "new/nope.png")
        assert unknown.returncode == 1 and "Not in collection 'sketchtext': new/nope.png" in unknown.stderr
        status, found = search(url, {"text": "a green shoe", "limit": 50})
        assert status == 200 and "new/item5.png" not in [hit["key"] for hit in found["hits"]]

        # Ctrl-C on a handed-off ingest cancels the server's run after the batch under way.
        (tmp_path / "paused").unlink()
        (tmp_path / "go").unlink()
        for i in range(6):  # after the paused file; the batches from the third on are never reached
            draw_product(catalog / "zzz" / f"late{i}.png", 10 + i, "yellow")
        ingest = subprocess.Popen(
            [sys.executable, "-m", "sketchtext.cli", "--data-dir", str(data), "ingest", str(catalog)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(tmp_path / "paused", ingest, "the second ingest never reached the paused file")
        ingest.send_signal(signal.SIGINT)
        (tmp_path / "go").touch()
        out, err = ingest.communicate(timeout=300)
        assert ingest.returncode == 1 and "was cancelled; run the same ingest again to finish" in err, err
        request = urllib.request.Request(url + "api/ingest", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            runs = json.loads(response.read())["runs"]
        assert [run["status"] for run in runs[:2]] == ["interrupted", "completed"], runs
        status, found = search(url, {"text": "a yellow thing", "limit": 50})  # more than there are assets
        assert status == 200 and "zzz/late5.png" not in [hit["key"] for hit in found["hits"]]
    finally:
        if searcher is not None:
            searcher.stop.set()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        finally:
            server.kill()
            serve_log.close()
    assert not (data / "serve.json").exists()  # a stopped server leaves no record behind
    rerun = cli("ingest", str(catalog), "--json")  # with the server gone, the CLI ingests itself and finishes the run
    assert rerun.returncode == 0 and json.loads(rerun.stdout)["failed"] == 1, rerun.stdout + rerun.stderr
    assert "new/item5.png" in [
        h["key"] for h in json.loads(cli("search", "--text", "x", "--limit", "50", "--json").stdout)
    ]
    verify = cli("verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout) == [], verify.stdout + verify.stderr
