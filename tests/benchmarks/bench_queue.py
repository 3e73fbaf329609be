"""Queue overhead: images/s of `sketchtext ingest` inline vs `ingest --queue` with one worker, same machine and model.

    python tests/benchmarks/bench_queue.py --images 200 --model open_clip:sketchtext-tiny

Both paths use the same database (PostgreSQL from $SKETCHTEXT_TEST_POSTGRES_URL when set, else a SQLite file),
the same kind of embedded Qdrant folder, batch size and generated catalogue. The worker (`--pool solo`, idle while
inline runs go) is warmed up first, as inline runs load their model before their clock starts; inline and queued
runs alternate, each into a new collection. `seconds` is the ingest's own clock (scan to last batch), `wall_s` the
command's. The load average is reported because other work on the machine skews both. Prints one JSON object.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.conftest import draw_product  # noqa: E402
from tests.integration.processes import Worker, queue_environment, sketchtext_command  # noqa: E402

COLOURS = ["red", "blue", "green", "orange", "purple", "black", "yellow", "brown"]


def make_catalog(root: Path, count: int) -> Path:
    for i in range(count):
        draw_product(root / f"c{i % 4}" / f"item{i:05d}.jpg", i, COLOURS[i % len(COLOURS)], size=(320, 240))
    return root


def database(tmp: Path) -> tuple[str, str, object]:
    """A fresh database URL, its kind, and a function that drops it."""
    admin_url = os.environ.get("SKETCHTEXT_TEST_POSTGRES_URL")
    if not admin_url:
        return f"sqlite:///{tmp / 'bench.db'}", "sqlite", lambda: None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(admin_url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"sketchtext_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return server.set(database=name).render_as_string(hide_password=False), "postgresql", drop


def ingest(env: dict[str, str], catalog: Path, collection: str, *extra: str) -> dict:
    env = {**env, "SKETCHTEXT_STORE__COLLECTION": collection}
    started = time.perf_counter()
    done = subprocess.run(
        sketchtext_command("ingest", str(catalog), "--json", *extra), env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    report = json.loads(done.stdout)
    work = report["read_s"] + report["encode_s"] + report["write_s"]
    return {
        "seconds": report["seconds"],
        "images_per_s": report["images_per_s"],
        "wall_s": round(wall, 3),
        "batch_work_s": round(work, 3),  # read + encode + write, summed over batches (the same work either way)
        "outside_batches_s": round(report["seconds"] - work, 3),  # scanning, planning, queueing, waiting
    }


def summary(runs: list[dict]) -> dict:
    return {
        "images_per_s_median": round(statistics.median(r["images_per_s"] for r in runs), 2),
        "seconds_median": round(statistics.median(r["seconds"] for r in runs), 3),
        "outside_batches_s_median": round(statistics.median(r["outside_batches_s"] for r in runs), 3),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--model", default="open_clip:sketchtext-tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--broker", default=os.environ.get("SKETCHTEXT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-queue-") as folder:
        tmp = Path(folder)
        catalog = make_catalog(tmp / "catalog", args.images)
        db_url, db_kind, drop = database(tmp)
        env = queue_environment(
            broker_url=args.broker,
            db_url=db_url,
            data_dir=tmp / "data",
            model_spec=args.model,
            batch_size=args.batch_size,
        )
        subprocess.run(sketchtext_command("db", "upgrade"), env=env, check=True, capture_output=True)
        # The worker holds its embedded store while inline runs go, so they get a folder of their own.
        inline_env = {**env, "SKETCHTEXT_STORE__PATH": str(tmp / "data" / "qdrant-inline")}
        load_before = os.getloadavg()[0]
        inline: list[dict] = []
        queued: list[dict] = []
        try:
            worker = Worker(env, tmp / "worker.log")
            try:
                worker.wait_ready()
                ingest(env, catalog, "warm-up", "--queue")  # loads the worker's model, as inline runs do first
                # Alternate the two, so that a change in the machine's load hits both alike.
                for i in range(args.repeat):
                    inline.append(ingest(inline_env, catalog, f"inline-{i}"))
                    queued.append(ingest(env, catalog, f"queued-{i}", "--queue"))
            finally:
                worker.stop()
        finally:
            drop()
    batches = -(-args.images // args.batch_size)
    pairs = zip(queued, inline, strict=True)
    outside = statistics.median(q["outside_batches_s"] - i["outside_batches_s"] for q, i in pairs)
    inline_rate = summary(inline)["images_per_s_median"]
    queued_rate = summary(queued)["images_per_s_median"]
    print(
        json.dumps(
            {
                "images": args.images,
                "model": args.model,
                "batch_size": args.batch_size,
                "database": db_kind,
                "broker": args.broker.split("://")[0],
                "worker": "sketchtext worker --pool solo (one process)",
                "cpu_count": os.cpu_count(),
                "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "inline": summary(inline),
                "queued": summary(queued),
                "queued_over_inline": round(queued_rate / inline_rate, 3),
                # time outside the batches' own work, queued minus inline, per batch (median of the pairs)
                "queue_overhead_ms_per_batch": round(1000 * outside / batches, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
