"""SQL metadata (SQLAlchemy 2): what was ingested, from which file, with which model. The source of truth.

`schema` holds the tables, `engine` the connection; `MetadataDB` is what the rest of sketchtext uses."""

from __future__ import annotations

import fcntl
import hashlib
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from sketchtext.plugin.db.engine import DAMAGE, alembic_config, make_engine, unavailable_message
from sketchtext.plugin.db.schema import (
    ASSET_NAMESPACE,
    CATALOG_FIELDS,
    Asset,
    AssetStatus,
    Base,
    Feedback,
    IngestRun,
    asset_id,
    utcnow,
)
from sketchtext.plugin.errors import DatabaseDamagedError, DatabaseError, DatabaseUnavailableError, IngestBusyError

__all__ = [
    "ASSET_NAMESPACE",
    "CATALOG_FIELDS",
    "DAMAGE",
    "Asset",
    "AssetStatus",
    "Base",
    "Feedback",
    "IngestRun",
    "MetadataDB",
    "alembic_config",
    "asset_id",
    "make_engine",
    "unavailable_message",
    "utcnow",
]


def busy_message(name: str) -> str:
    return f"Another process holds {name}; wait for it to finish (`sketchtext status` shows runs) and try again."


class MetadataDB:
    """Asset and run metadata in a SQL database (SQLite file or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def where(self) -> str:
        """The database as a message names it: the SQLite file, or the URL without its password."""
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            return str(Path(self.engine.url.database).expanduser().absolute())
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def errors(self, doing: str = "") -> Iterator[None]:
        """Driver errors as the project's: damage, unreachable (with what to check), anything else."""
        try:
            yield
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlite_errorname", None) in DAMAGE:
                raise DatabaseDamagedError(
                    f"The metadata database at {self.where} is damaged ({exc.orig}): restore it, or move it aside "
                    "(with its -wal and -shm files) and run `sketchtext verify --repair CATALOG` to rebuild it from "
                    "the store and the catalogue."
                ) from exc
            if isinstance(exc, OperationalError):
                raise DatabaseUnavailableError(unavailable_message(self.where, doing, exc)) from exc
            raise DatabaseError(f"Database error: {exc}") from exc
        except SQLAlchemyError as exc:
            raise DatabaseError(f"Database error: {exc}") from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error; driver errors become DatabaseError."""
        with self.errors():
            session = self._sessions()
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold a lock named `name` across processes for the block (PostgreSQL advisory lock, or a lock file beside
        a SQLite database); raise IngestBusyError at once if another process holds it. A dead holder releases it."""
        if self.engine.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            with self.engine.connect() as connection:
                if not connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                    raise IngestBusyError(busy_message(name))
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            return
        database = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not database or database == ":memory:":
            yield
            return
        lock_path = Path(f"{database}.{hashlib.sha256(name.encode()).hexdigest()[:16]}.lock")
        with lock_path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IngestBusyError(busy_message(name)) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- schema
    def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to `revision`."""
        from alembic import command

        with self.errors("migrate"):
            command.upgrade(alembic_config(self.engine), revision)

    def downgrade(self, revision: str) -> None:
        from alembic import command

        command.downgrade(alembic_config(self.engine), revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.errors("connect to"), self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(alembic_config(self.engine)).get_current_head()

    def ensure_schema(self, *, auto_upgrade: bool) -> None:
        """Upgrade when allowed (the embedded SQLite default), else insist the schema is current."""
        if self.current_revision() == self.head_revision():
            return
        if auto_upgrade:
            self.upgrade()
            return
        raise DatabaseError(
            f"The database schema at {self.engine.url.render_as_string(hide_password=True)} is not current; "
            "run `sketchtext db upgrade` first."
        )

    # -- assets
    def assets_by_key(self, collection: str, keys: Sequence[str]) -> dict[str, Asset]:
        with self.session() as session:
            ids = [asset_id(collection, key) for key in keys]
            rows = session.scalars(select(Asset).where(Asset.id.in_(ids))).all()
            return {row.key: row for row in rows}

    def save_assets(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or update asset rows given as column dicts (each with `collection` and `key`)."""
        if not rows:
            return
        with self.session() as session:
            existing = {
                a.id: a
                for a in session.scalars(
                    select(Asset).where(Asset.id.in_([asset_id(r["collection"], r["key"]) for r in rows]))
                )
            }
            for row in rows:
                ident = asset_id(row["collection"], row["key"])
                asset = existing.get(ident)
                if asset is None:
                    session.add(Asset(id=ident, **row))
                else:
                    for name, value in row.items():
                        setattr(asset, name, value)

    def mark_embedded(self, collection: str, keys: Sequence[str], fingerprint: str) -> None:
        if not keys:
            return
        now = utcnow()
        with self.session() as session:
            for asset in session.scalars(select(Asset).where(Asset.id.in_([asset_id(collection, k) for k in keys]))):
                asset.status = AssetStatus.EMBEDDED
                asset.error = None
                asset.model_fingerprint = fingerprint
                asset.embedded_at = now

    def all_assets(self, collection: str) -> list[Asset]:
        with self.session() as session:
            return list(session.scalars(select(Asset).where(Asset.collection == collection)))

    def mark_pending(self, collection: str, keys: Sequence[str]) -> None:
        """Forget that these assets are embedded, so the next ingest embeds them again."""
        if not keys:
            return
        with self.session() as session:
            for asset in session.scalars(select(Asset).where(Asset.id.in_([asset_id(collection, k) for k in keys]))):
                asset.status = AssetStatus.PENDING

    def keys_by_host_id(self, collection: str, host_ids: Sequence[str]) -> dict[str, str]:
        """Which asset key holds each of these host ids (assets that are not failed)."""
        if not host_ids:
            return {}
        with self.session() as session:
            rows = session.execute(
                select(Asset.host_id, Asset.key).where(
                    Asset.collection == collection,
                    Asset.host_id.in_(list(host_ids)),
                    Asset.status != AssetStatus.FAILED,
                )
            )
            return {str(host_id): str(key) for host_id, key in rows}

    def keys_by_sku(self, collection: str, skus: Sequence[str]) -> dict[str, list[str]]:
        """The asset keys of each of these skus (skus with none are left out)."""
        with self.session() as session:
            rows = session.execute(
                select(Asset.sku, Asset.key).where(Asset.collection == collection, Asset.sku.in_(list(skus)))
            )
            found: dict[str, list[str]] = {}
            for sku, key in rows:
                found.setdefault(str(sku), []).append(str(key))
            return found

    def asset(self, collection: str, ident: uuid.UUID) -> Asset | None:
        """One asset of the collection by its id, or None."""
        with self.session() as session:
            row = session.get(Asset, ident)
            return row if row is not None and row.collection == collection else None

    def facets(self, collection: str) -> dict[str, list[str]]:
        """The distinct categories and scenes of the collection's embedded assets, sorted."""
        out: dict[str, list[str]] = {}
        with self.session() as session:
            for name, column in (("categories", Asset.category), ("scenes", Asset.scene)):
                values = session.scalars(
                    select(column)
                    .where(Asset.collection == collection, Asset.status == AssetStatus.EMBEDDED, column.is_not(None))
                    .distinct()
                    .order_by(column)
                )
                out[name] = [str(value) for value in values]
        return out

    def keys(self, collection: str) -> set[str]:
        with self.session() as session:
            return set(session.scalars(select(Asset.key).where(Asset.collection == collection)))

    def delete_assets(self, collection: str, keys: Sequence[str]) -> None:
        if not keys:
            return
        with self.session() as session:
            session.execute(delete(Asset).where(Asset.id.in_([asset_id(collection, k) for k in keys])))

    def status_counts(self, collection: str) -> dict[str, int]:
        from sqlalchemy import func

        with self.session() as session:
            rows = session.execute(
                select(Asset.status, func.count()).where(Asset.collection == collection).group_by(Asset.status)
            )
            return {str(status.value): int(count) for status, count in rows}

    # -- runs
    def start_run(self, collection: str, source: str, fingerprint: str, total: int) -> int:
        with self.session() as session:
            run = IngestRun(collection=collection, source=source, model_fingerprint=fingerprint, total=total)
            session.add(run)
            session.flush()
            return run.id

    def finish_run(self, run_id: int, status: str, **counts: int) -> None:
        with self.session() as session:
            run = session.get(IngestRun, run_id)
            if run is None:
                raise DatabaseError(f"Ingest run {run_id} does not exist.")
            run.status = status
            run.finished_at = utcnow()
            for name, value in counts.items():
                setattr(run, name, value)

    def latest_source(self, collection: str) -> Path | None:
        """The catalog folder of the collection's latest ingest run."""
        with self.session() as session:
            source = session.scalar(
                select(IngestRun.source).where(IngestRun.collection == collection).order_by(IngestRun.id.desc())
            )
            return Path(source) if source else None

    def latest_runs(self, limit: int = 10, collection: str | None = None) -> list[IngestRun]:
        query = select(IngestRun).order_by(IngestRun.id.desc()).limit(limit)
        if collection is not None:
            query = query.where(IngestRun.collection == collection)
        with self.session() as session:
            return list(session.scalars(query))
