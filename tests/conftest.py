"""Shared fixtures: the tiny model, settings in a temporary data dir, real SQLite and PostgreSQL databases."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from sketchtext.plugin.settings import Settings

TINY_SPEC = "open_clip:sketchtext-tiny"
POSTGRES_ENV = "SKETCHTEXT_TEST_POSTGRES_URL"
REDIS_ENV = "SKETCHTEXT_TEST_REDIS_URL"

# A suite started in the background by a non-interactive shell inherits SIGINT ignored, and so would every command a
# test starts, so the Ctrl-C tests would see their signal dropped (the ingest then simply finishes). A handler of our
# own is reset to the default in each child, which then turns SIGINT into KeyboardInterrupt as a terminal would.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def docker_answers() -> bool:
    """True when a Docker engine is reachable (testcontainers can start services)."""
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def tiny_encoder():
    from sketchtext.plugin.model.factory import load_encoder

    return load_encoder(TINY_SPEC, device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One int8 export folder for the session (auto picks int8 on CPUs without native bf16): each model exports once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    model = {"spec": TINY_SPEC, "device": "cpu", "batch_size": 4, "models_dir": models_dir}
    return Settings(data_dir=tmp_path / "data", model=model)


def _admin_url() -> str:
    return os.environ[POSTGRES_ENV]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server URL: $SKETCHTEXT_TEST_POSTGRES_URL, else testcontainers, else skip."""
    if os.environ.get(POSTGRES_ENV):
        yield os.environ[POSTGRES_ENV]
        return
    if not docker_answers():
        pytest.skip(f"no PostgreSQL: set {POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test) or run Docker")
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver="psycopg") as container:
        yield container.get_connection_url()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(postgres_server.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"sketchtext_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    return request.getfixturevalue("postgres_url")


def draw_product(path: Path, shape: int, colour: str, size: tuple[int, int] = (160, 120)) -> Path:
    """A distinct little product photo: a coloured shape on white."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    w, h = size
    box = (w * 0.15, h * 0.2, w * (0.55 + 0.1 * (shape % 4)), h * (0.5 + 0.1 * (shape % 5)))
    if shape % 3 == 0:
        draw.ellipse(box, fill=colour, outline="black", width=3)
    elif shape % 3 == 1:
        draw.rectangle(box, fill=colour, outline="black", width=3)
    else:
        draw.polygon([(box[0], box[3]), ((box[0] + box[2]) / 2, box[1]), (box[2], box[3])], fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """A small catalog: two categories, a sidecar with sku and scene."""
    root = tmp_path / "catalog"
    colours = ["red", "blue", "green", "orange", "purple", "black"]
    rows = ["path,sku,scene,colour"]
    for i, colour in enumerate(colours):
        category = "shoes" if i % 2 == 0 else "bags"
        key = f"{category}/item{i}.jpg" if i % 3 else f"{category}/item{i}.png"
        draw_product(root / key, i, colour)
        rows.append(f"{key},SKU-{i},{'beach' if i < 3 else 'street'},{colour}")
    (root / "catalog.csv").write_text("\n".join(rows) + "\n")
    return root
