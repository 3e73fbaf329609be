"""Connecting to the metadata database: engines for SQLite and PostgreSQL, what their failures mean, Alembic."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import (
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from sketchtext.plugin.errors import DatabaseError, DatabaseUnavailableError


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the CLI read progress while a writer works; the busy timeout makes writers wait, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# SQLite's result codes for a file that is not a database, or one whose pages are broken (truncated, overwritten).
DAMAGE = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}


def unavailable_message(where: str, doing: str, exc: OperationalError) -> str:
    name = str(getattr(exc.orig, "sqlite_errorname", ""))
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_FULL", "SQLITE_IOERR")):
        folder = Path(where).parent
        return (
            f"Cannot {doing or 'use'} the metadata database at {where} ({exc.orig}): its folder {folder} must be "
            "writable and have free space; make it so, or point SKETCHTEXT_DATA_DIR (or SKETCHTEXT_DB__URL) elsewhere."
        )
    return (
        f"The metadata database at {where} is unreachable or locked ({exc.orig}); "
        "check that it runs and SKETCHTEXT_DB__URL points at it."
    )


def make_engine(url: str) -> Engine:
    """An engine for a SQLAlchemy URL; `postgresql://` is taken to mean psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).expanduser().absolute().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailableError(
                f"Cannot create the folder {folder} for the metadata database ({exc.strerror or exc}); make it "
                "writable, or point SKETCHTEXT_DATA_DIR (or SKETCHTEXT_DB__URL) elsewhere."
            ) from exc
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise DatabaseError(f"Invalid database URL {url!r}: {exc}. Use sqlite:///PATH or postgresql://…") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    with resources.as_file(resources.files("sketchtext.migrations")) as folder:
        config.set_main_option("script_location", str(folder))
    config.attributes["engine"] = engine
    return config
