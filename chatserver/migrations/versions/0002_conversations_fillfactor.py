"""conversations: leave room on each page for the head's new versions (PostgreSQL)

Every committed message moves its conversation's head (last_seq, last_hash). Neither column is
indexed, so PostgreSQL can write the new row version on the same page (a HOT update, no index
entries) and prune the dead ones whenever it reads the page, with or without autovacuum. A page
filled to the brim has no room for that: each update then lands on another page with new
entries in all four indexes, and the dead versions stay until a vacuum. A fill factor of 50
keeps half of each page free for those versions. It applies to pages written from now on; an
existing table gets it for all its rows after `VACUUM FULL conversations` (optional).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 13:20:00
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FILLFACTOR = 50


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE conversations SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE conversations RESET (fillfactor)")
