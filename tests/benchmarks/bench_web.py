"""Search latency through the web API (`sketchtext serve`'s app under uvicorn, over loopback HTTP), and optionally a
screenshot of the search page with real results, both on the generated demo catalogue.

    python tests/benchmarks/bench_web.py --requests 20
    python tests/benchmarks/bench_web.py --screenshot plugin/web/static/search-page.png   # the README's picture

Each request is one sketch + text + category search (a sketch of the demo world sent as a PNG data URL). Prints one
JSON object: client-side p50/p90 of the whole HTTP round trip and the server's own `took_ms` p50, when idle and while
the server runs an ingest of a copy of the catalogue (`POST /api/ingest`, as `sketchtext ingest` hands it over), with
their ratio.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from PIL import Image

from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.miniature.generate import generate_world
from sketchtext.plugin.settings import Settings
from sketchtext.plugin.web.app import create_app

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def serve(app: object) -> tuple[str, uvicorn.Server]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: asyncio sets NODELAY
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def latency(base: str, body: dict, requests: int) -> dict[str, float]:
    # http.client sends headers and body in one write, as browsers do (httpx's two writes meet delayed ACKs: +40 ms).
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    payload = json.dumps(body).encode()

    def post() -> dict:
        connection.request("POST", "/api/search", payload, {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"search failed: {response.status} {data}")
        return data

    post()  # warm-up
    round_trips, server = [], []
    for _ in range(requests):
        started = time.perf_counter()
        server.append(post()["took_ms"])
        round_trips.append((time.perf_counter() - started) * 1000)
    connection.close()
    round_trips.sort()
    return {
        "requests": requests,
        "p50_ms": round(statistics.median(round_trips), 1),
        "p90_ms": round(round_trips[int(0.9 * (len(round_trips) - 1))], 1),
        "server_p50_ms": round(statistics.median(server), 1),
    }


def copy_catalogue(catalog: Path, out: Path) -> int:
    """The catalogue's photos under new keys (so every one needs embedding): out/<category>/copy-<name>."""
    count = 0
    for photo in sorted(p for p in catalog.glob("*/*") if p.is_file()):
        target = out / photo.parent.name / f"copy-{photo.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
        count += 1
    return count


def latency_during_ingest(base: str, body: dict, catalog: Path, requests: int) -> dict[str, object]:
    """Searches while the server ingests `catalog`: only those that ended while the run was still going count."""
    host, port = base.removeprefix("http://").split(":")
    control = http.client.HTTPConnection(host, int(port), timeout=60)

    def call(method: str, path: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        control.request(method, path, data, {"Content-Type": "application/json"})
        response = control.getresponse()
        return json.loads(response.read())

    job = call("POST", "/api/ingest", {"catalog": str(catalog)})
    if "run_id" not in job:
        raise RuntimeError(f"the server refused the ingest: {job}")
    search = http.client.HTTPConnection(host, int(port), timeout=60)
    payload = json.dumps(body).encode()
    round_trips, statuses = [], []
    started = time.perf_counter()
    while len(round_trips) < requests:
        t0 = time.perf_counter()
        search.request("POST", "/api/search", payload, {"Content-Type": "application/json"})
        response = search.getresponse()
        response.read()
        elapsed = (time.perf_counter() - t0) * 1000
        state = call("GET", f"/api/ingest/{job['run_id']}")
        if state["state"] != "running":
            break
        statuses.append(response.status)
        round_trips.append(elapsed)
    while state["state"] == "running":
        time.sleep(0.2)
        state = call("GET", f"/api/ingest/{job['run_id']}")
    search.close()
    control.close()
    round_trips.sort()
    return {
        "requests": len(round_trips),
        "non_200": sum(1 for s in statuses if s != 200),
        "p50_ms": round(statistics.median(round_trips), 1) if round_trips else None,
        "p90_ms": round(round_trips[int(0.9 * (len(round_trips) - 1))], 1) if round_trips else None,
        "ingest": {k: state["summary"][k] for k in ("embedded", "seconds")} if state["summary"] else state["error"],
        "measured_over_s": round(time.perf_counter() - started, 1),
    }


def screenshot(base: str, sketch: Path, text: str, category: str, out: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        page.goto(base + "/")
        page.wait_for_function("() => document.querySelectorAll('#category option').length > 1")
        page.set_input_files("#upload", str(sketch))
        page.fill("#text", text)
        page.select_option("#category", category)
        page.click("#search")
        page.wait_for_function("() => /results? ·/.test(document.querySelector('#status').textContent)")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#grid .card img')].slice(0, 10).every(i => i.naturalWidth > 0)"
        )
        shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
        browser.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    shot.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, help="A generated world (default: generate one in a temp folder).")
    parser.add_argument("--model", default="open_clip:sketchtext-tiny")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--sketch", default="sketches/boot", help="A sketch file, or a folder to take the first of.")
    parser.add_argument("--text", default="in red")
    parser.add_argument("--category", default="boot")
    parser.add_argument("--screenshot", type=Path, help="Also save a screenshot of the page with results here.")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--no-ingest", action="store_true", help="Skip the searches during a running ingest.")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-web-"))
    world = args.world or scratch / "world"
    if not (world / "catalog").is_dir():
        generate_world(world, seed=0)
    sketch = world / args.sketch
    sketch = sorted(sketch.glob("*.png"))[0] if sketch.is_dir() else sketch
    settings = Settings(data_dir=scratch / "data", model={"spec": args.model, "device": "cpu", "precision": "fp32"})
    with SketchTextPlugin(settings) as plugin:
        started = time.perf_counter()
        summary = plugin.ingest(world / "catalog")
        ingest_s = time.perf_counter() - started
        base, server = serve(create_app(plugin, settings))
        body = {
            "sketch": "data:image/png;base64," + base64.b64encode(sketch.read_bytes()).decode(),
            "text": args.text,
            "category": args.category,
            "limit": 24,
        }
        result = {
            "model": args.model,
            "photos": summary.as_dict()["total"],
            "ingest_s": round(ingest_s, 1),
            "search": latency(base, body, args.requests),
        }
        if not args.no_ingest:
            copies = copy_catalogue(world / "catalog", scratch / "more")
            during = latency_during_ingest(base, body, scratch / "more", args.requests)
            result["search_during_ingest"] = {"photos": copies, **during}
            if during["p50_ms"]:
                result["p50_ratio_during_vs_idle"] = round(during["p50_ms"] / result["search"]["p50_ms"], 2)
        if args.screenshot:
            screenshot(base, sketch, args.text, args.category, args.screenshot, args.chromium)
            result["screenshot"] = str(args.screenshot)
        server.should_exit = True
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
