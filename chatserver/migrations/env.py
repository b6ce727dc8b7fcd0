"""Alembic environment: migrations run on the connection the hub hands over (see storage/migrate.py)."""

from __future__ import annotations

from alembic import context

from chatserver.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through chatserver.storage.migrate (it passes a connection)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
