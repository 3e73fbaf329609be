"""Alembic environment: runs against the engine sketchtext hands over (never a URL from an ini file)."""

from __future__ import annotations

from alembic import context

from sketchtext.plugin.db import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
