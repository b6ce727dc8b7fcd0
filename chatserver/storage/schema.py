"""The database schema as SQLAlchemy Core tables, shared by SQLite and PostgreSQL.

Alembic migrations in chatserver/migrations/ create exactly these; a test compares them.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False, default=""),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=True),  # anonymous visitors have none
    Column("customer_id", String(64), nullable=True),
    Column("groups", JSON, nullable=False, default=list),  # advisor skill groups
    Column("licences", JSON, nullable=False, default=list),
    Column("team", String(64), nullable=True),
    Column("capacity", Integer, nullable=True),  # None: the default from settings
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
)

customers = Table(
    "customers",
    metadata,
    Column("id", String(64), primary_key=True),  # the firm's CRM customer id
    Column("name", String(128), nullable=False),
    Column("star", Integer, nullable=False, default=1),  # 1-5 (五星)
    Column("risk_level", String(2), nullable=False, default="C1"),  # C1-C5
    # The four mandatory tag families (四标签).
    Column("tags_risk", JSON, nullable=False, default=list),
    Column("tags_qualification", JSON, nullable=False, default=list),
    Column("tags_preference", JSON, nullable=False, default=list),
    Column("tags_value", JSON, nullable=False, default=list),
    Column("dedicated_advisor", String(128), nullable=True),  # advisor username
    Column("team", String(64), nullable=True),
    Column("phone_masked", String(32), nullable=True),
    Column("updated_at", Float, nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("investor_id", String(64), ForeignKey("users.id"), nullable=False),
    Column("customer_id", String(64), nullable=True),
    Column("channel", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # bot | queued | assigned | closed
    Column("group_name", String(64), nullable=True),
    Column("advisor_id", String(64), nullable=True),
    Column("intent", String(64), nullable=True),
    Column("bot_state", JSON, nullable=True),
    Column("last_seq", BigInteger, nullable=False, default=0),
    Column("last_hash", String(64), nullable=False, default=""),
    Column("legal_hold", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("closed_at", Float, nullable=True),
    Index("ix_conversations_investor", "investor_id", "state"),
    Index("ix_conversations_advisor", "advisor_id", "state"),
    Index("ix_conversations_state", "state"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(64), ForeignKey("conversations.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("sender_id", String(64), nullable=False),
    Column("sender_role", String(16), nullable=False),  # investor | advisor | bot | system
    Column("sender_name", String(128), nullable=False, default=""),
    Column("client_id", String(64), nullable=True),
    Column("kind", String(16), nullable=False),  # text | bot | system | note | leave_message
    Column("text", Text, nullable=False),
    Column("verdict", String(8), nullable=False, default="pass"),  # pass | info | warn | block
    Column("meta", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
    UniqueConstraint("sender_id", "client_id", name="uq_messages_sender_client"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(64), nullable=False),
    Column("message_id", String(32), nullable=True),
    Column("sender_id", String(64), nullable=False),
    Column("sender_role", String(16), nullable=False),
    Column("rule_id", String(64), nullable=False),
    Column("category", String(32), nullable=False),
    Column("tier", String(8), nullable=False),
    Column("span_start", Integer, nullable=False),
    Column("span_end", Integer, nullable=False),
    Column("matched", Text, nullable=False),
    Column("state", String(16), nullable=False, default="open"),  # open | acknowledged | resolved
    Column("disposition", String(32), nullable=True),
    Column("notes", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("acknowledged_by", String(64), nullable=True),
    Column("acknowledged_at", Float, nullable=True),
    Column("resolved_by", String(64), nullable=True),
    Column("resolved_at", Float, nullable=True),
    Index("ix_alerts_state", "state", "created_at"),
)

ratings = Table(
    "ratings",
    metadata,
    Column("conversation_id", String(64), primary_key=True),
    Column("investor_id", String(64), nullable=False),
    Column("advisor_id", String(64), nullable=True),
    Column("score", Integer, nullable=False),
    Column("comment", Text, nullable=True),
    Column("created_at", Float, nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("chain", String(64), nullable=False),  # conversation id, or "global"
    Column("chain_seq", BigInteger, nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("action", String(64), nullable=False),
    Column("detail", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("chain", "chain_seq", name="uq_audit_chain_seq"),
)

channels = Table(
    "channels",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("secret", String(256), nullable=False),
    Column("callback_url", Text, nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("updated_at", Float, nullable=False),
)

channel_deliveries = Table(
    "channel_deliveries",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("message_id", String(32), nullable=False),
    Column("conversation_id", String(64), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("status", String(16), nullable=False, default="pending"),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", Float, nullable=True),
    Index("ix_deliveries_status", "status", "next_attempt_at"),
)

channel_users = Table(
    "channel_users",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("external_id", String(128), primary_key=True),
    Column("user_id", String(64), nullable=False),
)

kb_versions = Table(
    "kb_versions",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("jsonl", Text, nullable=False),
    Column("created_by", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("comment", Text, nullable=True),
)

rule_versions = Table(
    "rule_versions",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("jsonl", Text, nullable=False),
    Column("created_by", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("comment", Text, nullable=True),
)

quick_replies = Table(
    "quick_replies",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner_id", String(64), nullable=True),  # advisor's own template
    Column("team", String(64), nullable=True),  # team template; both None: everyone
    Column("title", String(128), nullable=False),
    Column("text", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

unanswered = Table(
    "unanswered",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(64), nullable=False),
    Column("message_id", String(32), nullable=False),
    Column("question", Text, nullable=False),
    Column("advisor_reply", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("resolved", Boolean, nullable=False, default=False),
)

holds = Table(
    "holds",
    metadata,
    Column("message_id", String(32), primary_key=True),
    Column("conversation_id", String(64), nullable=False),
    Column("state", String(16), nullable=False, default="pending"),  # pending | approved | rejected
    Column("decided_by", String(64), nullable=True),
    Column("decided_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
)
