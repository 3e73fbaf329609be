"""The SQL tables (SQLAlchemy 2 models): assets, ingest runs, staff marks; and the asset id both stores share."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Fixed namespace so that asset ids (and Qdrant point ids) are the same on every machine and every retry.
# The catalogue's own fields: a column each in SQL and a filterable payload field in Qdrant; every other sidecar
# field lands in `extra`. The one list of them.
CATALOG_FIELDS = ("sku", "title", "category", "scene", "host_id")
ASSET_NAMESPACE = uuid.UUID("7d0c3a52-5f38-4c1e-9a8e-3b1f1c0d5e21")


def asset_id(collection: str, key: str) -> uuid.UUID:
    """The deterministic id of an asset, shared by its SQL row and its Qdrant point."""
    return uuid.uuid5(ASSET_NAMESPACE, f"{collection}\x00{key}")


def utcnow() -> datetime:
    return datetime.now(UTC)


class AssetStatus(enum.StrEnum):
    PENDING = "pending"
    EMBEDDED = "embedded"
    FAILED = "failed"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("collection", "key", name="uq_assets_collection_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    collection: Mapped[str] = mapped_column(String(255), index=True)
    key: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str | None] = mapped_column(String(255), index=True)
    scene: Mapped[str | None] = mapped_column(String(255))
    sku: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(Text)
    host_id: Mapped[str | None] = mapped_column(String(255))
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[AssetStatus] = mapped_column(
        Enum(
            AssetStatus,
            name="asset_status",
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=AssetStatus.PENDING,
        index=True,
    )
    error: Mapped[str | None] = mapped_column(Text)
    model_fingerprint: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    embedded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def as_dict(self) -> dict[str, Any]:
        """The row as a host or the search page sees it, beside a hit."""
        return {
            "key": self.key,
            **{name: getattr(self, name) for name in CATALOG_FIELDS},
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "status": self.status.value,
            "extra": self.extra,
        }

    def is_current(self, sha256: str, fingerprint: str) -> bool:
        """Whether this file's content is embedded by the model `fingerprint` (nothing to do on a re-ingest)."""
        return self.status == AssetStatus.EMBEDDED and self.sha256 == sha256 and self.model_fingerprint == fingerprint


class IngestRun(Base):
    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(Text)
    model_fingerprint: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    total: Mapped[int] = mapped_column(Integer, default=0)
    embedded: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    pruned: Mapped[int] = mapped_column(Integer, default=0)


class Feedback(Base):
    """A staff mark on a hit ("this is it" or "wrong") with the query that found it (see plugin/web/feedback.py)."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(255), index=True)
    asset_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    key: Mapped[str] = mapped_column(Text)  # kept: the asset may be deleted later
    mark: Mapped[str] = mapped_column(String(8))  # "match" or "wrong"
    text: Mapped[str | None] = mapped_column(Text)
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sketch_png: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
