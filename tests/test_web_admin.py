"""The back office's write routes in-process: ingest runs in the server (start, follow, busy, cancel), deletes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from PIL import Image, ImageFile
from starlette.testclient import TestClient

from sketchtext.plugin.settings import WebSettings
from sketchtext.plugin.web.app import create_app
from tests.conftest import draw_product
from tests.test_web import build_world

TOKEN = "admin-token"
REACHED, GO = threading.Event(), threading.Event()


class HeldImageFile(ImageFile.ImageFile):
    """A catalogue file the decoder holds on until the test says go (then it fails, like a broken photo)."""

    format = "HOLD"
    format_description = "waits for the test"

    def _open(self) -> None:
        REACHED.set()
        GO.wait(120)
        raise NotImplementedError("a held test file")


Image.register_open(HeldImageFile.format, HeldImageFile, lambda prefix: prefix.startswith(b"HOLD-FOR-TEST"))


@pytest.fixture
def world(tmp_path: Path, tiny_encoder):
    plugin, settings, root = build_world(tmp_path, tiny_encoder)
    settings = settings.model_copy(update={"web": WebSettings(token=TOKEN)})  # type: ignore[arg-type]
    client = TestClient(create_app(plugin, settings), headers={"Authorization": f"Bearer {TOKEN}"})
    yield plugin, client, root
    GO.set()
    plugin.close()


def follow(client: TestClient, run_id: int) -> dict:
    deadline = time.monotonic() + 120
    while True:
        job = client.get(f"/api/ingest/{run_id}").json()
        if job["state"] in ("completed", "interrupted", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_ingest_runs_in_the_server_one_at_a_time_and_cancels(world) -> None:
    plugin, client, root = world
    REACHED.clear()
    GO.clear()
    draw_product(root / "shoes" / "new.png", 9, "teal")
    (root / "zz-hold.png").write_bytes(b"HOLD-FOR-TEST")
    started = client.post("/api/ingest", json={})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    assert started.headers["location"] == f"/api/ingest/{run_id}"
    assert REACHED.wait(120)  # the run holds on the file: searches answer, a second run is refused
    assert client.post("/api/search", json={"text": "a red shoe"}).status_code == 200
    busy = client.post("/api/ingest", json={"catalog": str(root)})
    assert busy.status_code == 409 and f"already running ingest run {run_id}" in busy.json()["error"]
    assert client.delete(f"/api/ingest/{run_id}").status_code == 202
    GO.set()
    job = follow(client, run_id)
    assert job["state"] == "interrupted" and "was cancelled" in job["error"], job
    listed = client.get("/api/ingest").json()
    assert listed["runs"][0]["run_id"] == run_id and listed["runs"][0]["status"] == "interrupted"
    (root / "zz-hold.png").unlink()
    again = follow(client, client.post("/api/ingest", json={"prune": True}).json()["run_id"])
    assert again["state"] == "completed" and again["summary"]["total"] == 9, again
    assert plugin.verify(root) == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"catalog": "relative/folder"}, "must be an absolute folder path"),
        ({"catalog": "/no/such/folder"}, "does not exist on the server"),
        ({"folder": "/tmp"}, "an ingest takes 'catalog' and 'prune'"),
        ({"prune": "yes"}, "'prune' must be true or false"),
    ],
)
def test_bad_ingest_requests_are_422(world, body: dict, says: str) -> None:
    _, client, _ = world
    answer = client.post("/api/ingest", json=body)
    assert answer.status_code == 422 and says in answer.json()["error"]


def test_an_empty_folder_is_refused_with_the_usual_message(world, tmp_path: Path) -> None:
    _, client, _ = world
    (tmp_path / "empty").mkdir()
    answer = client.post("/api/ingest", json={"catalog": str(tmp_path / "empty")})
    assert answer.status_code == 422 and "nothing to ingest" in answer.json()["error"]


def test_delete_an_asset_through_the_api(world) -> None:
    plugin, client, root = world
    hit = client.post("/api/search", json={"text": "a red shoe", "limit": 8}).json()["hits"][0]
    assert client.delete(f"/api/assets/{hit['asset_id']}", headers={"Authorization": ""}).status_code == 401
    removed = client.delete(f"/api/assets/{hit['asset_id']}")
    assert removed.status_code == 200 and removed.json() == {"removed": [hit["key"]]}
    assert client.delete(f"/api/assets/{hit['asset_id']}").status_code == 404
    assert client.delete("/api/assets/not-a-uuid").status_code == 404
    keys = [h["key"] for h in client.post("/api/search", json={"text": "a red shoe", "limit": 8}).json()["hits"]]
    assert hit["key"] not in keys and len(keys) == 7
    assert [(d.kind, d.key) for d in plugin.verify(root)] == [("not_ingested", hit["key"])]


def test_delete_where_through_the_api(world) -> None:
    plugin, client, root = world
    hits = client.post("/api/search", json={"text": "a red shoe", "limit": 8}).json()["hits"]
    sku = next(h["sku"] for h in hits if h["sku"])
    anonymous = client.post("/api/assets/delete", json={"where": {"sku": sku}}, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    for bad in ({}, {"nope": 1}, {"keys": "x"}, {"where": ["sku"]}):
        assert client.post("/api/assets/delete", json=bad).status_code == 422, bad
    assert client.post("/api/assets/delete", json={"keys": ["x"]}).status_code == 404  # the CLI's own message
    assert client.post("/api/assets/delete", json={"where": {"sku": "no-such-sku"}}).status_code == 422
    removed = client.post("/api/assets/delete", json={"where": {"sku": sku}})
    assert removed.status_code == 200
    gone = removed.json()["removed"]
    assert gone and all(plugin.db.assets_by_key(plugin.collection, gone).get(k) is None for k in gone)
    assert sorted(d.key for d in plugin.verify(root) if d.kind == "not_ingested") == sorted(gone)
